"""`imagelingo settings show|set|path`: user defaults in a TOML file."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import typer

from imagelingo_cli.cli.common import fail_setup, stdout_console
from imagelingo_cli.cli.options import PlainHelp
from imagelingo_cli.errors import SetupError
from imagelingo_cli.settings import (
    KEYS,
    resolve,
    set_value,
    settings_path,
    shown,
    unset_value,
)

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Defaults for language, model, concurrency, auto-retry and rpm (a TOML file).",
    no_args_is_help=True,
)


@app.command(cls=PlainHelp)
def show(
    json_output: bool = typer.Option(
        False, "--json", help="One JSON object on stdout, nothing else."
    ),
) -> None:
    """Each setting, its effective value and where it comes from (environment, file, default).

    \b
    Examples:
      imagelingo settings show
      imagelingo settings show --json | jq .settings.language
    """
    from rich.table import Table

    try:
        settings = resolve()
    except SetupError as exc:
        fail_setup(str(exc))
    values = {name: getattr(settings, name) for name in KEYS}
    if json_output:
        payload = {
            "path": str(settings_path()),
            "settings": {
                name: {
                    "value": list(value) if isinstance(value, tuple) else value,
                    "source": settings.sources[name],
                    "environment_variable": f"IMAGELINGO_{name.upper()}",
                }
                for name, value in values.items()
            },
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    console = stdout_console()
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("Key", "Value", "From", "What"):
        table.add_column(column, overflow="fold")
    for name, value in values.items():
        table.add_row(
            name, shown(value), settings.sources[name], f"{KEYS[name].help} ({KEYS[name].flag})"
        )
    console.print(table)
    console.print(f"Settings file: {settings_path()}")
    console.print("Change one: imagelingo settings set KEY VALUE (environment: IMAGELINGO_<KEY>)")


@app.command("set", cls=PlainHelp)
def set_(
    key: str = typer.Argument(..., metavar="KEY", help=f"One of: {', '.join(KEYS)}."),
    value: str = typer.Argument(
        ..., metavar="VALUE", help="The new value (codes: comma-separated)."
    ),
) -> None:
    """Store a default in the settings file (created with mode 0600).

    \b
    Examples:
      imagelingo settings set language pt-BR
      imagelingo settings set concurrency 8
      imagelingo settings set auto_retry_codes RATE_LIMIT,TIMEOUT,SERVER_ERROR
    """
    from rich.console import Console

    name = key.strip().lower()
    try:
        stored = set_value(name, value)
    except (ValueError, SetupError) as exc:
        fail_setup(f"invalid {name}: {exc}" if name in KEYS else str(exc))
    console = Console(highlight=False)
    console.print(f"{name} = {shown(stored)} (saved in {settings_path()})")
    env_name = f"IMAGELINGO_{name.upper()}"
    if os.environ.get(env_name):
        console.print(f"Note: {env_name} is set in the environment and takes precedence.")


@app.command(cls=PlainHelp)
def unset(
    key: str = typer.Argument(..., metavar="KEY", help=f"One of: {', '.join(KEYS)}."),
) -> None:
    """Remove a default from the settings file: the built-in default applies again.

    \b
    Example:
      imagelingo settings unset concurrency
    """
    name = key.strip().lower()
    try:
        removed = unset_value(name)
    except (ValueError, SetupError) as exc:
        fail_setup(str(exc))
    default = shown(KEYS[name].default)
    if removed:
        typer.echo(f"{name} unset: back to the default ({default})")
    else:
        typer.echo(f"{name} was not set in {settings_path()} (default: {default})")


@app.command(cls=PlainHelp)
def path() -> None:
    """Print the settings file's path (IMAGELINGO_CONFIG overrides it).

    \b
    Example:
      cat "$(imagelingo settings path)"
    """
    typer.echo(str(settings_path()))
