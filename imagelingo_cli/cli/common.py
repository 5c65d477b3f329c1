"""What every command shares: exit codes, setup errors, the database. Kept light: `--help`
and the read commands import this, so rich and the store are imported only when used."""

from __future__ import annotations

import os
import sys
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


def silence_stdout() -> None:
    """Stdout's reader is gone (`| head`): point it at /dev/null, so that nothing written
    later, nor Python's flush at exit, raises BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def db_path(option: Path | None) -> tuple[Path, bool]:
    """The database's path, and whether it was named on the command line (--db)."""
    if option is not None:
        return option, True
    env = os.environ.get("IMAGELINGO_DB")
    if env:
        return Path(env), False
    from imagelingo_cli.store import default_db_path

    return default_db_path(), False


def open_db(option: Path | None, *, create: bool = True) -> Store:
    """The database for a command that writes it: created if missing (unless `create` is
    False: then exit 2, nothing is recorded yet), refused (exit 2, nothing sent) if it
    cannot be written."""
    from imagelingo_cli.store import StoreError, open_store

    path, _named = db_path(option)
    if not create and not path.expanduser().exists():
        fail_setup(f"nothing is recorded yet: no database at {path}")
    try:
        store = open_store(path)
        store.check_writable()
    except StoreError as exc:
        fail_setup(str(exc))
    return store


def read_db(option: Path | None) -> Store:
    """The database for a command that only reads it, opened read-only and never created:
    with none at the default place (or IMAGELINGO_DB) yet, an empty one in memory: nothing is
    recorded. One named with --db must exist: a typo must not read as an empty history."""
    from imagelingo_cli.store import StoreError, open_empty_store, open_store_read_only

    path, named = db_path(option)
    if not path.expanduser().exists():
        if named:
            fail_setup(f"no database at {path} (check --db)")
        return open_empty_store()
    try:
        return open_store_read_only(path)
    except StoreError as exc:
        fail_setup(str(exc))


def exit_code(summary: ev.Summary) -> int:
    """0 all requested variations done, 1 some failed, 130 interrupted."""
    if summary.status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK
