"""`imagelingo db info|vacuum`: what the database file holds, and giving back unused space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import fail_setup, open_db, read_db
from imagelingo_cli.cli.options import PlainHelp
from imagelingo_cli.cli.params import PlainGroup

app = typer.Typer(
    help="The database file: what it holds (info), giving back unused space (vacuum).",
    no_args_is_help=True,
    cls=PlainGroup,
)


@app.command(cls=PlainHelp)
def info(
    db: Path | None = options.DB,
    json_output: bool = typer.Option(
        False, "--json", help="One JSON object on stdout, nothing else."
    ),
) -> None:
    """The file's path and size, the rows of each table, the oldest and newest run, and the
    free space inside that `imagelingo db vacuum` gives back.

    \b
    Examples:
      imagelingo db info
      imagelingo db info --json | jq .rows
    """
    from imagelingo_cli.store import upkeep

    store = read_db(db)
    try:
        found = upkeep.info(store)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps(found.as_json(), indent=2))
        return
    rows = " · ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in found.rows.items())
    lines = [
        ("Database", str(found.path) if found.path else "none yet (nothing recorded)"),
        (
            "Size",
            f"{_bytes(found.file_bytes + found.wal_bytes)}"
            + (f" (write-ahead log {_bytes(found.wal_bytes)})" if found.wal_bytes else "")
            + f" · free inside {_bytes(found.free_bytes)}",
        ),
        ("Rows", rows),
        ("Oldest run", _run(found.oldest_run)),
        ("Newest run", _run(found.newest_run)),
        ("Schema", found.schema),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        typer.echo(f"{name:<{width}}  {value}")


@app.command(cls=PlainHelp)
def vacuum(
    db: Path | None = options.DB,
    json_output: bool = typer.Option(
        False, "--json", help="One JSON object on stdout, nothing else."
    ),
) -> None:
    """Rewrite the database without its free pages and say how much space that gave back.
    Refused while a run is working on the database.

    \b
    Examples:
      imagelingo db vacuum
      imagelingo db vacuum --db ./project.db
    """
    from imagelingo_cli.store import StoreError, upkeep

    store = open_db(db, create=False)
    try:
        before, after = upkeep.vacuum(store)
    except StoreError as exc:
        fail_setup(str(exc))
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps({"before_bytes": before, "after_bytes": after}))
        return
    if after < before:
        typer.echo(f"Reclaimed {_bytes(before - after)}: {_bytes(before)} → {_bytes(after)}.")
    else:
        typer.echo(f"Nothing to reclaim: the database takes {_bytes(after)}.")


def _run(run: dict[str, Any] | None) -> str:
    if run is None:
        return "—"
    from imagelingo_cli.cli.wording import local

    return f"{run['id']} ({run['command']}, {local(run['started_at'])})"


def _bytes(count: int) -> str:
    """`812 bytes`, `12.3 KB`, `45.6 MB`, `1.2 GB`."""
    if count < 1024:
        return f"{count:,} bytes"
    size, unit = count / 1024, "KB"
    for larger in ("MB", "GB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{size:.1f} {unit}"
