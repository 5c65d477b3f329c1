"""Looking after the database file: what it holds, and giving back the space it no longer uses.

    info(store) -> DatabaseInfo     size, rows per table, oldest and newest run, free space
    vacuum(store) -> (before, after)  the file rewritten without its free pages; sizes in bytes

Neither reads the history row by row: the variations and attempts are counted by the tallies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagelingo_cli.store import SCHEMA, Store, StoreError, tallies

__all__ = ["DatabaseInfo", "info", "vacuum"]


@dataclass(frozen=True)
class DatabaseInfo:
    path: Path | None
    file_bytes: int  # the database file
    wal_bytes: int  # its write-ahead log, folded into the file at the next checkpoint
    free_bytes: int  # pages inside the file that hold nothing (what `vacuum` gives back)
    rows: dict[str, int]  # runs, variations, attempts, Batch API jobs, texts, output folders
    oldest_run: dict[str, Any] | None  # id, command, started_at
    newest_run: dict[str, Any] | None
    schema: str  # the last migration applied

    def as_json(self) -> dict[str, Any]:
        return {
            "path": None if self.path is None else str(self.path),
            "file_bytes": self.file_bytes,
            "wal_bytes": self.wal_bytes,
            "free_bytes": self.free_bytes,
            "rows": self.rows,
            "oldest_run": self.oldest_run,
            "newest_run": self.newest_run,
            "schema": self.schema,
        }


def info(store: Store) -> DatabaseInfo:
    db = store.db
    totals = tallies.read(db).totals[tallies.ALL_RUNS]
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    (free_pages,) = db.execute("PRAGMA freelist_count").fetchone()
    rows = {
        "runs": _count(store, "runs"),
        "variations": int(totals["variations"]),
        "attempts": int(totals["attempts"]),
        "batch_jobs": _count(store, "batch_job_rows"),
        "texts": _count(store, "texts"),
        "output_folders": _count(store, "output_folders"),
    }
    return DatabaseInfo(
        path=store.path,
        file_bytes=_size(store.path),
        wal_bytes=_size(_wal(store.path)),
        free_bytes=int(page_size) * int(free_pages),
        rows=rows,
        oldest_run=_run(store, "ASC"),
        newest_run=_run(store, "DESC"),
        schema=SCHEMA[-1],
    )


def vacuum(store: Store) -> tuple[int, int]:
    """Rewrite the file without its free pages; returns its size before and after, the
    write-ahead log folded into it both times. StoreError while another run is working on it."""
    if store.other_live_runs():
        raise StoreError("a run is working on this database; vacuum it when the run is done")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _size(store.path)
    store.db.execute("VACUUM")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return before, _size(store.path)


def _count(store: Store, table: str) -> int:
    (count,) = store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(count)


def _run(store: Store, order: str) -> dict[str, Any] | None:
    row = store.db.execute(
        f"SELECT id, command, started_at FROM runs ORDER BY seq {order} LIMIT 1"
    ).fetchone()
    return None if row is None else dict(zip(("id", "command", "started_at"), row, strict=True))


def _wal(path: Path | None) -> Path | None:
    return None if path is None else path.with_name(path.name + "-wal")


def _size(path: Path | None) -> int:
    try:
        return 0 if path is None else path.stat().st_size
    except FileNotFoundError:
        return 0
