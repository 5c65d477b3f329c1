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


FORMATS = ("table", "tsv", "csv", "json")
PIPED_WIDTH = 100_000  # "no width": a record is one line whatever its length


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 variation`, `2 variations`; `words` for an irregular plural."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def skipped_files(counts: dict[str, int]) -> str:
    """What a search passed over: `2 not an image, 1 hidden`, or "" when nothing."""
    ordered = sorted(
        ((n, reason) for reason, n in counts.items() if n), key=lambda x: (-x[0], x[1])
    )
    return ", ".join(f"{n} {reason}" for n, reason in ordered)


def nothing_to_do(words: str, json_output: bool, **fields: object) -> None:
    """A batch command with nothing to send: a sentence on stderr, or one JSON line
    `{"event": "nothing_to_do", "at": …, "reason": …}` on stdout."""
    if json_output:
        import json
        import time

        from imagelingo_cli.cli.records import utc

        record = {"event": "nothing_to_do", "at": utc(time.time()), "reason": words, **fields}
        sys.stdout.write(json.dumps(record) + "\n")
        return
    stderr().print(words, markup=False, soft_wrap=True)


def stdout_console() -> Console:
    """Stdout for tables and text: a terminal's width, or, when piped, no width at all, so
    that each record is one line, never wrapped."""
    from rich.console import Console

    console = Console(highlight=False)
    if console.is_terminal:
        return console
    return Console(highlight=False, width=PIPED_WIDTH, soft_wrap=True)


def output_format(chosen: str, json_flag: bool) -> str:
    """--format, with --json as its short form."""
    if json_flag:
        return "json"
    if chosen not in FORMATS:
        fail_setup(f"unknown format {chosen!r} (valid: {', '.join(FORMATS)})")
    return chosen


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
