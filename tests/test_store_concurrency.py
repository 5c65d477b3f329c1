"""Opening, creating and migrating one database from many connections at the same instant:
no lock error slips past the busy timeout, and only a file that is not ours is called so."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagelingo_cli.store import StoreError, open_store
from imagelingo_cli.store.connection import connect

ROOT = Path(__file__).resolve().parent.parent

# A child: wait for the shared start instant, open the database, record one run.
OPEN_AND_WRITE = """
import sys, time
from pathlib import Path
from imagelingo_cli.store import open_store
path, start = Path(sys.argv[1]), float(sys.argv[2])
while time.time() < start:
    pass
store = open_store(path)
store.start_run("process", target_language="es", model="m", backend="b", options={})
store.close()
"""


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Two busy loops beside the test, as on a loaded CI machine: the windows get wider."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def open_in_threads(path: Path, count: int) -> list[BaseException]:
    """`count` threads open the database (each its own connection) at one barrier and write."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def one() -> None:
        barrier.wait()
        try:
            store = open_store(path)
            store.start_run("process", target_language="es", model="m", backend="b", options={})
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def runs(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM runs").fetchone()
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    assert mode == "wal"
    return int(count)


def test_eight_processes_open_and_write_one_fresh_database_at_the_same_instant(
    tmp_path: Path, busy_cores: None
) -> None:
    """8 processes, one missing database file, the same start instant, repeated: every one
    opens, migrates and writes; none is told the file is locked or not an imagelingo one."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for round_ in range(3):
        path = tmp_path / f"round{round_}" / "imagelingo.db"
        start = time.time() + 1.5  # past every child's start-up, even on a loaded machine
        children = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AND_WRITE, str(path), str(start)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(8)
        ]
        outputs = [child.communicate(timeout=120)[0].decode() for child in children]
        assert [child.returncode for child in children] == [0] * 8, outputs
        assert runs(path) == 8
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".new")]


@pytest.mark.parametrize("start", ["missing", "empty file"])
def test_many_connections_open_one_new_database_at_one_barrier(
    tmp_path: Path, start: str, busy_cores: None
) -> None:
    """8 connections in threads, released together, 30 times over: a missing file (built
    aside and linked into place) or an empty one (switched to WAL in place, where SQLite
    does not wait for the lock by itself) opens for all of them."""
    for round_ in range(30):
        path = tmp_path / f"{round_}.db"
        if start == "empty file":
            path.touch()
        errors = open_in_threads(path, 8)
        assert errors == [], errors
        assert runs(path) == 8


def test_a_database_locked_longer_than_the_busy_timeout_is_called_busy_not_foreign(
    tmp_path: Path,
) -> None:
    """Another connection holds an exclusive lock on a new file: after the busy timeout the
    error says the database stayed locked, not that it is not an imagelingo database."""
    path = tmp_path / "imagelingo.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE placeholder (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError) as caught:
            connect(path, busy_timeout=0.3)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "stayed locked" in str(caught.value)
    assert "not an imagelingo database" not in str(caught.value)


def test_another_programs_sqlite_database_is_refused_not_migrated_into(tmp_path: Path) -> None:
    """A SQLite file with someone else's tables is not an imagelingo database: nothing is
    added to it."""
    path = tmp_path / "notes.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"not an imagelingo database.*notes"):
        open_store(path)
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert tables == {"notes"}
