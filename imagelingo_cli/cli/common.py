"""What every command shares: exit codes, setup errors, the database. Kept light: `--help`
and the read commands import this, so rich and the store are imported only when used."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from imagelingo_cli import events as ev
    from imagelingo_cli.store import Store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@cache
def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fail_setup(message: str) -> NoReturn:
    """A usage or setup error: one line on stderr, exit 2, nothing sent."""
    stderr().print(f"[bold red]Error:[/] {message}", soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def db_path(option: Path | None) -> Path:
    if option is not None:
        return option
    env = os.environ.get("IMAGELINGO_DB")
    if env:
        return Path(env)
    from imagelingo_cli.store import default_db_path

    return default_db_path()


def open_db(option: Path | None, *, writable: bool = False) -> Store:
    """The database, or exit 2 saying why not; `writable`: refuse one we could only read
    (commands that send, before they send)."""
    from imagelingo_cli.store import StoreError, open_store

    try:
        store = open_store(db_path(option))
    except StoreError as exc:
        fail_setup(str(exc))
    if writable:
        try:
            store.check_writable()
        except StoreError as exc:
            store.close()
            fail_setup(str(exc))
    return store


def exit_code(summary: ev.Summary) -> int:
    """0 all requested variations done, 1 some failed, 130 interrupted."""
    if summary.status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK
