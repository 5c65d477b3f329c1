"""`imagelingo report`: an offline HTML page of the translations and the error analytics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import fail_setup, read_db, stderr
from imagelingo_cli.cli.when import HELP as SINCE_HELP
from imagelingo_cli.cli.when import parse_since

DEFAULT_OUT = Path("imagelingo-report.html")


def report(
    run: str | None = typer.Option(
        None,
        "--run",
        metavar="RUN",
        help="The variations this run worked on (id or unique prefix).",
    ),
    since: str | None = typer.Option(None, "--since", metavar="WHEN", help=SINCE_HELP),
    errors: bool = typer.Option(
        False,
        "--errors",
        help="Only variations that did not complete (failed, abandoned, interrupted).",
    ),
    out: Path = typer.Option(
        DEFAULT_OUT,
        "--out",
        "-o",
        metavar="FILE",
        help="The HTML file to write; thumbnails go in the folder <name>_files beside it.",
    ),
    open_it: bool = typer.Option(False, "--open", help="Open the report in the web browser."),
    self_contained: bool = typer.Option(
        False, "--self-contained", help="Embed the thumbnails: one file, no folder beside it."
    ),
    db: Path | None = options.DB,
) -> None:
    """Write an HTML report: originals and translations side by side, each failure with its
    attempts and the command that retries it, and the error analytics. It works offline and
    fetches nothing. Default: the last run.

    The path of the report is printed on stdout.

    \b
    Examples:
      imagelingo report --open                  # the last run, in the browser
      imagelingo report --run 01m8q0 --errors -o failures.html
      imagelingo report --since 7d --self-contained -o week.html
    """
    from imagelingo_cli.cli.wording import resolve_run
    from imagelingo_cli.report import NothingToReport, ReportError, Scope, write_report

    try:
        since_stamp = parse_since(since) if since is not None else None
    except ValueError as exc:
        fail_setup(str(exc))
    store = read_db(db)
    try:
        scope = Scope(run_id=resolve_run(store, run), since=since_stamp, errors_only=errors)
        with _thumbnail_progress() as progress:
            written = write_report(
                store, scope, out, self_contained=self_contained, progress=progress
            )
    except NothingToReport as exc:
        stderr().print(f"Nothing to report: {exc}.")
        raise typer.Exit(0) from None
    except ReportError as exc:
        fail_setup(f"{exc}; choose another file with -o FILE")
    finally:
        store.close()
    path = written.path.absolute()
    typer.echo(str(path))
    if open_it:
        import webbrowser

        if not webbrowser.open(path.as_uri()):
            stderr().print("No web browser could be started: open the file above yourself.")


@contextmanager
def _thumbnail_progress() -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr while thumbnails are made (none when stderr is no terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = stderr()
    columns = (TextColumn("Thumbnails"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task("thumbnails", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
