"""Opening the database file, safely when any number of processes do it at the same moment.

    connect(path) -> sqlite3.Connection   WAL, busy timeout, schema migrated; StoreError if not
    connect_read_only(path)              an existing database, for reading (migrated if older)
    write_transaction(conn)              BEGIN IMMEDIATE ... COMMIT, waiting out lock errors
    retry_busy(action)                   run `action`, waiting out lock errors SQLite returns
                                         without calling its busy handler

SQLite waits for a lock (the busy handler) only when a connection asks for it from no
transaction at all. A connection that already reads and then asks to write gets
SQLITE_BUSY at once, as a reader could otherwise wait for a writer that waits for it.
`PRAGMA journal_mode = WAL` on a file still in rollback mode is such a case: it reads the
header, then writes it. So a new database is built under a private name, in WAL mode and
migrated, and linked into place only when whole (a second process finds the first one's
file, or its own link fails and it uses the first one's); every other statement that may
meet such a lock error is retried within the busy timeout.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

BUSY_TIMEOUT_S = 30.0
MIGRATION_SET = "imagelingo"

# The migrations this version knows, in order (their code is in `schema`, imported only when
# a database needs them, so that read commands start fast). Never edit one once released.
SCHEMA = (
    "m001_initial",
    "m002_output_intent",
    "m003_answer_thoughts_tokens",
    "m004_run_leases",
    "m005_rate_not_retried",
    "m006_batch_jobs",
    "m007_compact_history",
    "m008_tallies",
)

T = TypeVar("T")


class StoreError(Exception):
    """The database cannot be used (not an imagelingo database, newer schema, unwritable, busy)."""


def is_busy(exc: BaseException) -> bool:
    """A lock error: SQLITE_BUSY or SQLITE_LOCKED, with any extended code."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.OperationalError) and isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return False


def retry_busy(action: Callable[[], T], *, timeout: float = BUSY_TIMEOUT_S) -> T:
    """`action()`, called again after a short randomised pause while it fails with a lock
    error, for up to `timeout` seconds; then the lock error is raised."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause * random.uniform(1.0, 2.0))
        pause = min(pause * 2, 0.1)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction. IMMEDIATE takes the write lock before the first read, so the
    busy handler waits for it; a deferred one that reads, then writes, would fail at once."""
    retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    retry_busy(lambda: conn.execute("COMMIT"))


def connect(path: Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """The database at `path`, created if missing, in WAL mode, migrated to `SCHEMA`; lock
    errors are waited out for `busy_timeout` seconds."""
    path = path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _create(path)
        conn = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None)
    except OSError as exc:
        raise StoreError(f"cannot create the database at {path}: {exc.strerror or exc}") from None
    except sqlite3.Error as exc:
        raise _refusal(path, exc, busy_timeout) from None
    try:
        retry_busy(lambda: _prepare(conn, path, busy_timeout), timeout=busy_timeout)
    except StoreError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _refusal(path, exc, busy_timeout) from None
    return conn


def connect_read_only(path: Path) -> sqlite3.Connection:
    """The existing database at `path`, opened for reading only. A database of an older
    schema is migrated first (the one write a read command may make)."""
    path = path.expanduser()
    uri = f"file:{quote(os.fspath(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        applied = retry_busy(lambda: _applied_migrations(conn))
    except sqlite3.DatabaseError as exc:
        raise _refusal(path, exc, BUSY_TIMEOUT_S) from None
    unknown = [name for name in applied if name not in SCHEMA]
    if unknown:
        conn.close()
        raise StoreError(
            f"{path} was written by a newer imagelingo (schema {unknown[-1]}); upgrade imagelingo"
        )
    if list(SCHEMA) != applied:
        conn.close()
        connect(path).close()
        return connect_read_only(path)
    return conn


def connect_empty() -> sqlite3.Connection:
    """A database in memory with the whole schema and nothing recorded: what a read command
    reads when there is no database yet."""
    from imagelingo_cli.store.schema import migrate

    conn = sqlite3.connect(":memory:", isolation_level=None)
    with write_transaction(conn):
        migrate(conn)
    return conn


def _create(path: Path) -> None:
    """Build a new database under a private name and link it into place once whole; if
    another process got there first, its file is used and ours is dropped."""
    import secrets  # here, not at the top: only a new database needs it

    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
    try:
        conn = sqlite3.connect(str(temp), isolation_level=None)
        try:
            os.chmod(temp, 0o600)
            _prepare(conn, temp, BUSY_TIMEOUT_S)
        finally:
            conn.close()  # the last connection: the WAL is checkpointed into the file
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: migrate in place instead
            if not path.exists():
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{temp}{suffix}")


def _prepare(conn: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
    """Pragmas, WAL, and the pending migrations; idempotent, so it can be retried whole."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    if str(mode).lower() != "wal":  # WAL is recorded in the file: only a new file needs this
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN")  # one snapshot: another process may be migrating right now
    try:
        applied = _applied_migrations(conn)
        foreign = [] if applied else _tables(conn)
    finally:
        conn.execute("COMMIT")
    unknown = [name for name in applied if name not in SCHEMA]
    if unknown:
        raise StoreError(
            f"{path} was written by a newer imagelingo (schema {unknown[-1]}); upgrade imagelingo"
        )
    if foreign:
        raise StoreError(
            f"{path} is not an imagelingo database (it holds other tables: "
            f"{', '.join(foreign[:5])}); choose another --db"
        )
    if set(SCHEMA) - set(applied):
        from imagelingo_cli.store.schema import migrate

        with write_transaction(conn):  # applies only what is still missing once locked
            migrate(conn)


def _applied_migrations(conn: sqlite3.Connection) -> list[str]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'"
    ).fetchone()
    if not exists:
        return []
    rows = conn.execute(
        "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid",
        [MIGRATION_SET],
    ).fetchall()
    return [str(name) for (name,) in rows]


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
        " AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [str(name) for (name,) in rows]


def _refusal(path: Path, exc: sqlite3.Error, busy_timeout: float) -> StoreError:
    """Why the file cannot be used, in the words of what is wrong with it."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if is_busy(exc):
        return StoreError(
            f"the database at {path} stayed locked for {busy_timeout:g} s by another "
            f"process; try again when it is done ({exc})"
        )
    if code == sqlite3.SQLITE_NOTADB:
        return StoreError(f"{path} is not an imagelingo database ({exc})")
    if code == sqlite3.SQLITE_CORRUPT:
        return StoreError(f"the database at {path} is damaged ({exc})")
    return StoreError(f"cannot open the database at {path}: {exc}")
