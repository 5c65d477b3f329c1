"""The command-line client: parses options, calls the library core, renders results."""

from __future__ import annotations

import os
import sys

import typer

from imagelingo_cli import __version__
from imagelingo_cli.cli import (
    abandon_cmd,
    batch_mode_cmd,
    db_cmd,
    history_cmd,
    process_cmd,
    report_cmd,
    retry_cmd,
    settings_cmd,
    show_cmd,
    simulator_cmd,
    stats_cmd,
)
from imagelingo_cli.cli.options import PlainHelp, SettingsDefaults
from imagelingo_cli.cli.params import PlainGroup

app = typer.Typer(
    name="imagelingo",
    help="Translate the text inside images with a Gemini image model, in batches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich would triple the start-up time
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=PlainGroup,
)
app.command(cls=SettingsDefaults)(process_cmd.process)
app.command("retry-failed", cls=SettingsDefaults)(retry_cmd.retry_failed)
app.add_typer(simulator_cmd.app, name="simulator")
app.command(cls=PlainHelp)(history_cmd.history)
app.command(cls=PlainHelp)(show_cmd.show)
app.command(cls=PlainHelp)(stats_cmd.stats)
app.command(cls=PlainHelp)(abandon_cmd.abandon)
app.command(cls=PlainHelp)(report_cmd.report)
app.add_typer(settings_cmd.app, name="settings")
app.add_typer(batch_mode_cmd.app, name="batch")
app.add_typer(db_cmd.app, name="db")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imagelingo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Translate the text inside images with a Gemini image model, in batches."""


def main() -> None:
    """The console script: an unexpected error is one line, its traceback only on request,
    and never with local variables (which could hold the API key)."""
    try:
        app()
    except KeyboardInterrupt:  # before a batch watches signals (start-up) or after it
        print("imagelingo: interrupted.", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `… | head`: the reader went away; as rich does, quietly
        from imagelingo_cli.cli.common import silence_stdout

        silence_stdout()
        sys.exit(1)
    except Exception as exc:
        if os.environ.get("IMAGELINGO_DEBUG"):
            raise
        print(
            f"imagelingo: unexpected error: {type(exc).__name__}: {exc}\n"
            "Set IMAGELINGO_DEBUG=1 to see the traceback.",
            file=sys.stderr,
        )
        sys.exit(1)
