"""The local SQLite database: schema, migrations, and every read and write of it.

Tables (open the file with `sqlite3` and they explain themselves):
    runs         one row per `process` / `retry-failed` invocation
    generations  one row per variation, keyed by (image_sha256, target_language, model,
                 variation, backend); holds the approved error record
    attempts     one row per request to the model, written when it starts and when it ends
    error_logs   view: one row per failed attempt (the approved audit trail)

All calls are synchronous and short; the engine makes them from the event-loop thread.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagelingo_cli.errors import TranslationError

BUSY_TIMEOUT_S = 30.0
ACTIVE_STATUSES = ("pending", "running", "retrying")


class StoreError(Exception):
    """The database cannot be used (not SQLite, newer schema, unwritable)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id() -> str:
    """A ULID in lower case: 48 bits of milliseconds then 80 random bits, so ids sort by time
    and ids made in the same millisecond still differ early enough for a short prefix."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def default_db_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("imagelingo")) / "imagelingo.db"


# The migrations this version knows, in order (their code is in `schema`, imported only when
# a database needs them, so that read commands start fast). Never edit one once released.
SCHEMA = ("m001_initial", "m002_rate_not_retried")


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationKey:
    image_sha256: str
    target_language: str
    model: str
    variation: int
    backend: str


@dataclass(frozen=True)
class Claim:
    """What `claim_generation` decided for one variation."""

    # "send"; "completed" (done earlier); "done_in_run" (this run did it for an identical
    # image); "abandoned"; "busy" (another live run has it)
    kind: str
    row: dict[str, Any]


class Store:
    def __init__(self, db: sqlite3.Connection, path: Path | None) -> None:
        self.db = db
        self.path = path

    # -- runs --

    def start_run(
        self,
        command: str,
        *,
        target_language: str | None,
        model: str | None,
        backend: str | None,
        options: dict[str, Any],
    ) -> str:
        run_id = new_id()
        self.db.execute(
            "INSERT INTO runs (id, command, started_at, status, target_language, model, backend,"
            " options, pid, host) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                command,
                now_iso(),
                target_language,
                model,
                backend,
                json.dumps(options, sort_keys=True),
                os.getpid(),
                socket.gethostname(),
            ],
        )
        return run_id

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
            [status, now_iso(), json.dumps(summary, sort_keys=True) if summary else None, run_id],
        )

    def other_live_runs(self) -> int:
        """Runs of other processes still working on this database."""
        rows = self.db.execute("SELECT pid, host FROM runs WHERE status = 'running'").fetchall()
        here = socket.gethostname()
        return sum(1 for pid, host in rows if pid != os.getpid() and _alive(pid, host, here))

    def count_runs(self) -> int:
        (count,) = self.db.execute("SELECT COUNT(*) FROM runs").fetchone()
        return int(count)

    def recover_dead_runs(self) -> int:
        """Runs left `running` by a process that no longer exists become `interrupted`, with
        their in-flight attempts and active variations. Returns how many runs were recovered."""
        host = socket.gethostname()
        rows = self.db.execute("SELECT id, pid, host FROM runs WHERE status = 'running'").fetchall()
        dead = [run_id for run_id, pid, run_host in rows if not _alive(pid, run_host, host)]
        for run_id in dead:
            with self.transaction():
                stamp = now_iso()
                self.db.execute(
                    "UPDATE attempts SET outcome = 'interrupted', finished_at = ?"
                    " WHERE run_id = ? AND outcome IS NULL",
                    [stamp, run_id],
                )
                self.db.execute(
                    "UPDATE generations SET status = 'interrupted', updated_at = ?"
                    " WHERE run_id = ? AND status IN ('pending', 'running', 'retrying')",
                    [stamp, run_id],
                )
                self.db.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE id = ?",
                    [stamp, run_id],
                )
        return len(dead)

    # -- generations --

    def claim_generation(
        self,
        key: GenerationKey,
        *,
        run_id: str,
        source_path: str,
        relative_path: str,
        out_dir: str,
        base_url: str | None,
        force: bool = False,
    ) -> Claim:
        """Atomically take a variation for this run, unless it is done or another live run has it."""
        with self.transaction(immediate=True):
            row = self._row(
                "SELECT * FROM generations WHERE image_sha256 = ? AND target_language = ?"
                " AND model = ? AND variation = ? AND backend = ?",
                [key.image_sha256, key.target_language, key.model, key.variation, key.backend],
            )
            stamp = now_iso()
            if row is None:
                generation_id = new_id()
                self.db.execute(
                    "INSERT INTO generations (id, run_id, source_path, relative_path,"
                    " image_sha256, variation, target_language, model, backend, base_url, out_dir,"
                    " status, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    [
                        generation_id,
                        run_id,
                        source_path,
                        relative_path,
                        key.image_sha256,
                        key.variation,
                        key.target_language,
                        key.model,
                        key.backend,
                        base_url,
                        out_dir,
                        stamp,
                        stamp,
                    ],
                )
                return Claim("send", self.generation(generation_id))
            if row["run_id"] == run_id and row["status"] != "pending":
                return Claim("done_in_run", row)  # same content met again in this run
            active = row["status"] in ACTIVE_STATUSES and row["run_id"] != run_id
            if active and self._run_alive(row["run_id"]):
                return Claim("busy", row)
            if row["status"] == "completed" and not force:
                return Claim("completed", row)
            if row["status"] == "abandoned" and not force:
                return Claim("abandoned", row)
            self.db.execute(
                "UPDATE generations SET run_id = ?, status = 'pending', source_path = ?,"
                " relative_path = ?, out_dir = ?, base_url = ?, updated_at = ? WHERE id = ?",
                [run_id, source_path, relative_path, out_dir, base_url, stamp, row["id"]],
            )
            return Claim("send", self.generation(row["id"]))

    def claim_for_retry(self, generation_id: str, run_id: str) -> Claim:
        """Take a failed or interrupted variation for a retry-failed run."""
        with self.transaction(immediate=True):
            row = self.generation(generation_id)
            if row["status"] in ACTIVE_STATUSES and self._run_alive(row["run_id"]):
                return Claim("busy", row)
            if row["status"] == "completed":
                return Claim("completed", row)
            if row["status"] == "abandoned":
                return Claim("abandoned", row)
            self.db.execute(
                "UPDATE generations SET run_id = ?, status = 'pending', updated_at = ?"
                " WHERE id = ?",
                [run_id, now_iso(), generation_id],
            )
            return Claim("send", self.generation(generation_id))

    def select_for_retry(
        self,
        *,
        ids: list[str],
        run_id: str | None,
        codes: list[str],
        transient_only: bool,
    ) -> list[dict[str, Any]]:
        """Failed or interrupted, not abandoned variations, oldest first. `ids` may be prefixes."""
        where = ["status IN ('failed', 'interrupted')"]
        params: list[Any] = []
        if ids:
            where.append("(" + " OR ".join("id LIKE ?" for _ in ids) + ")")
            params += [f"{i.lower()}%" for i in ids]
        if run_id:
            where.append(
                "id IN (SELECT generation_id FROM attempts WHERE run_id LIKE ?"
                " UNION SELECT id FROM generations WHERE run_id LIKE ?)"
            )
            params += [f"{run_id.lower()}%", f"{run_id.lower()}%"]
        if codes:
            where.append("error_code IN (" + ", ".join("?" for _ in codes) + ")")
            params += [c.upper() for c in codes]
        if transient_only:
            where.append("is_retryable = 1")
        sql = f"SELECT * FROM generations WHERE {' AND '.join(where)} ORDER BY created_at, id"
        cursor = self.db.execute(sql, params)
        names = [c[0] for c in cursor.description]
        return [_native_paths(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]

    def generation(self, generation_id: str) -> dict[str, Any]:
        row = self._row("SELECT * FROM generations WHERE id = ?", [generation_id])
        if row is None:
            raise KeyError(generation_id)
        return row

    def output_owner(self, path: str) -> str | None:
        """The generation whose recorded output is `path`, if any."""
        row = self.db.execute(
            "SELECT id FROM generations WHERE output_path = ? LIMIT 1", [path]
        ).fetchone()
        return str(row[0]) if row else None

    def fail_unsent(self, generation_id: str, error: TranslationError) -> None:
        """A variation that failed without a request (bad file, or the run stopped sending)."""
        stamp = now_iso()
        self.db.execute(
            "UPDATE generations SET status = 'failed', error_code = ?, error_message = ?,"
            " is_retryable = ?, first_error_at = COALESCE(first_error_at, ?), updated_at = ?"
            " WHERE id = ?",
            [error.code.value, error.message, int(error.transient), stamp, stamp, generation_id],
        )

    def mark_interrupted(self, generation_id: str) -> None:
        self.db.execute(
            "UPDATE generations SET status = 'interrupted', updated_at = ? WHERE id = ?"
            " AND status IN ('pending', 'running', 'retrying')",
            [now_iso(), generation_id],
        )

    # -- attempts --

    def start_attempt(self, generation_id: str, run_id: str, trigger: str) -> tuple[str, int]:
        """Record a request about to be sent; returns (attempt id, attempt number)."""
        attempt_id = new_id()
        stamp = now_iso()
        with self.transaction():
            (number,) = self.db.execute(
                "SELECT attempt_count + 1 FROM generations WHERE id = ?", [generation_id]
            ).fetchone()
            self.db.execute(
                "INSERT INTO attempts (id, generation_id, run_id, attempt_number, trigger,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?)",
                [attempt_id, generation_id, run_id, number, trigger, stamp],
            )
            self.db.execute(
                "UPDATE generations SET status = 'running', attempt_count = ?, retry_count = ?,"
                " last_retry_at = CASE WHEN ? > 1 THEN ? ELSE last_retry_at END, updated_at = ?"
                " WHERE id = ?",
                [number, number - 1, number, stamp, stamp, generation_id],
            )
        return attempt_id, number

    def attempt_failed(
        self,
        attempt_id: str,
        generation_id: str,
        error: TranslationError,
        *,
        duration_ms: int,
        retry_in_ms: int | None,
        not_retried: str | None = None,
    ) -> None:
        """Record a failed attempt; `retry_in_ms` is the wait before the next one (None: final),
        `not_retried` why a retry the policy allows was not made."""
        stamp = now_iso()
        with self.transaction():
            self.db.execute(
                "UPDATE attempts SET outcome = 'failed', finished_at = ?, duration_ms = ?,"
                " error_code = ?, error_message = ?, http_status = ?, api_status = ?,"
                " retry_after_ms = ?, wait_before_next_ms = ?, not_retried = ? WHERE id = ?",
                [
                    stamp,
                    duration_ms,
                    error.code.value,
                    error.message,
                    error.http_status,
                    error.api_status,
                    error.retry_after_ms,
                    retry_in_ms,
                    not_retried,
                    attempt_id,
                ],
            )
            self.db.execute(
                "UPDATE generations SET status = ?, error_code = ?, error_message = ?,"
                " is_retryable = ?, first_error_at = COALESCE(first_error_at, ?), updated_at = ?"
                " WHERE id = ?",
                [
                    "failed" if retry_in_ms is None else "retrying",
                    error.code.value,
                    error.message,
                    int(error.transient),
                    stamp,
                    stamp,
                    generation_id,
                ],
            )

    def attempt_succeeded(
        self,
        attempt_id: str,
        generation_id: str,
        *,
        duration_ms: int,
        output_path: str,
        model_version: str | None,
        prompt_tokens: int | None,
        output_tokens: int | None,
        total_tokens: int | None,
    ) -> bool:
        """Record success. The variation's one credit is charged on its first success only;
        returns whether this success charged it."""
        stamp = now_iso()
        with self.transaction():
            (charged_before,) = self.db.execute(
                "SELECT credits_charged FROM generations WHERE id = ?", [generation_id]
            ).fetchone()
            self.db.execute(
                "UPDATE attempts SET outcome = 'succeeded', finished_at = ?, duration_ms = ?,"
                " prompt_tokens = ?, output_tokens = ?, total_tokens = ?, model_version = ?"
                " WHERE id = ?",
                [
                    stamp,
                    duration_ms,
                    prompt_tokens,
                    output_tokens,
                    total_tokens,
                    model_version,
                    attempt_id,
                ],
            )
            self.db.execute(
                "UPDATE generations SET status = 'completed', output_path = ?, error_code = NULL,"
                " error_message = NULL, is_retryable = NULL, credits_charged = 1,"
                " completed_at = ?, updated_at = ? WHERE id = ?",
                [output_path, stamp, stamp, generation_id],
            )
        return not charged_before

    def attempt_interrupted(self, attempt_id: str, *, duration_ms: int) -> None:
        self.db.execute(
            "UPDATE attempts SET outcome = 'interrupted', finished_at = ?, duration_ms = ?"
            " WHERE id = ? AND outcome IS NULL",
            [now_iso(), duration_ms, attempt_id],
        )

    def check_writable(self) -> None:
        """StoreError unless the database can be written: a read-only file opens and reads
        fine, and would only fail at the run's first write, after requests were sent."""
        try:
            with self.transaction():
                (version,) = self.db.execute("PRAGMA user_version").fetchone()
                self.db.execute(f"PRAGMA user_version = {int(version)}")  # a real write
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot write to the database at {self.path}: {exc}") from None

    # -- plumbing --

    @contextmanager
    def transaction(self, *, immediate: bool = True) -> Iterator[None]:
        """One short write transaction. IMMEDIATE takes the write lock up front: a deferred
        transaction that reads and then writes fails at once with "database is locked" (no
        busy wait) when another process wrote in between, which two runs on one database do."""
        conn = self.db
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _row(self, sql: str, params: list[Any]) -> dict[str, Any] | None:
        cursor = self.db.execute(sql, params)
        found = cursor.fetchone()
        if found is None:
            return None
        return _native_paths(dict(zip([c[0] for c in cursor.description], found, strict=True)))

    def _run_alive(self, run_id: str | None) -> bool:
        if run_id is None:
            return False
        row = self._row("SELECT status, pid, host FROM runs WHERE id = ?", [run_id])
        if row is None or row["status"] != "running":
            return False
        return _alive(row["pid"], row["host"], socket.gethostname())

    def close(self) -> None:
        self.db.close()


# Paths are stored as UTF-8 text, each byte that is not UTF-8 written `\xNN` (images.printable).
_ESCAPED_BYTE = re.compile(r"(\\x[89a-f][0-9a-f])")


def _native_path(text: str) -> str:
    r"""A stored path as the file system names it: each `\xNN` escape becomes its byte again
    (held by Python as a surrogate, as os.listdir gives it)."""
    parts = _ESCAPED_BYTE.split(text)
    raw = b"".join(
        bytes([int(part[2:], 16)]) if index % 2 else part.encode("utf-8")
        for index, part in enumerate(parts)
    )
    return os.fsdecode(raw)


def _native_paths(row: dict[str, Any]) -> dict[str, Any]:
    """A row's paths that were stored with escaped non-UTF-8 bytes get those bytes back, so the
    source can be read again and the output found (resume, retry-failed). A path that exists
    exactly as written (a name that really holds a backslash) is left alone."""
    for column in ("source_path", "out_dir", "output_path"):
        value = row.get(column)
        if isinstance(value, str) and _ESCAPED_BYTE.search(value) and not os.path.lexists(value):
            row[column] = _native_path(value)
            if column == "source_path" and isinstance(row.get("relative_path"), str):
                row["relative_path"] = _native_path(row["relative_path"])
    return row


def _alive(pid: int | None, run_host: str | None, this_host: str) -> bool:
    """Whether the process that owns a run still exists. On another host we cannot tell: assume so."""
    if run_host != this_host:
        return True
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _applied_migrations(conn: sqlite3.Connection) -> list[str]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlite_migrations'"
    ).fetchone()
    if not exists:
        return []
    rows = conn.execute(
        "SELECT name FROM _sqlite_migrations WHERE migration_set = 'imagelingo' ORDER BY rowid"
    ).fetchall()
    return [str(name) for (name,) in rows]


def open_store(path: Path) -> Store:
    """Open (creating if needed) and migrate the database. Raises StoreError with a reason."""
    path = path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        if created:
            os.chmod(path, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create the database at {path}: {exc.strerror or exc}") from None
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database at {path}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        applied = _applied_migrations(conn)
        unknown = [name for name in applied if name not in SCHEMA]
        if unknown:
            raise StoreError(
                f"{path} was written by a newer imagelingo (schema {unknown[-1]}); upgrade imagelingo"
            )
        store = Store(conn, path)
        if set(SCHEMA) - set(applied):
            from imagelingo_cli.store.schema import migrate

            with store.transaction(immediate=True):  # two first runs must not both migrate
                migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path} is not an imagelingo database ({exc})") from None
    except StoreError:
        conn.close()
        raise
    return store
