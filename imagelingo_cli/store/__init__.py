"""The local SQLite database: schema, migrations, and every read and write of it.

Tables (open the file with `sqlite3` and they explain themselves):
    runs         one row per `process` / `retry-failed` / `batch collect` invocation
    generations  one row per variation, keyed by (image_sha256, target_language, model,
                 variation, backend); holds the approved error record
    attempts     one row per request to the model, written when it starts and when it ends
    batch_jobs   one row per Batch API job (`batch_jobs` module)
    error_logs   view: one row per failed attempt (the approved audit trail)

All calls are synchronous and short; the engine makes them from the event-loop thread.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagelingo_cli.errors import TranslationError
from imagelingo_cli.pathtext import decode_path
from imagelingo_cli.states import AttemptOutcome, GenerationStatus, RunStatus, Trigger
from imagelingo_cli.store.connection import (
    SCHEMA,
    StoreError,
    connect,
    connect_empty,
    connect_read_only,
    write_transaction,
)
from imagelingo_cli.store.liveness import run_alive

__all__ = [
    "SCHEMA",
    "Claim",
    "ClaimKind",
    "GenerationKey",
    "Store",
    "StoreError",
    "new_id",
    "open_empty_store",
    "open_store",
    "open_store_read_only",
]

if TYPE_CHECKING:
    from imagelingo_cli.answers import Usage


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


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationKey:
    image_sha256: str
    target_language: str
    model: str
    variation: int
    backend: str


class ClaimKind(StrEnum):
    SEND = "send"  # taken by this run: send it
    COMPLETED = "completed"  # done earlier
    DONE_IN_RUN = "done_in_run"  # this run did it already, for an identical image
    ABANDONED = "abandoned"
    BUSY = "busy"  # another live run has it
    IN_BATCH = "in_batch"  # it waits in a Batch API job: the job's result decides it


@dataclass(frozen=True)
class Claim:
    """What a claim decided for one variation, and its row as it stands."""

    kind: ClaimKind
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
        stamp = now_iso()
        self.db.execute(
            "INSERT INTO runs (id, command, started_at, heartbeat_at, status, target_language,"
            " model, backend, options, pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                command,
                stamp,
                stamp,
                RunStatus.RUNNING,
                target_language,
                model,
                backend,
                json.dumps(options, sort_keys=True),
                os.getpid(),
                socket.gethostname(),
            ],
        )
        return run_id

    def renew_lease(self, run_id: str) -> None:
        """The run's heartbeat: it is working (see `liveness`)."""
        self.db.execute(
            "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = ?",
            [now_iso(), run_id, RunStatus.RUNNING],
        )

    def finish_run(
        self, run_id: str, status: RunStatus, summary: dict[str, Any] | None = None
    ) -> None:
        self.db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
            [status, now_iso(), json.dumps(summary, sort_keys=True) if summary else None, run_id],
        )

    def register_output_folder(self, folder: str) -> None:
        """A folder this run writes outputs into: no later run takes what is in it as input."""
        self.db.execute(
            "INSERT OR IGNORE INTO output_folders (path, first_used_at) VALUES (?, ?)",
            [folder, now_iso()],
        )

    def output_folders(self) -> list[str]:
        rows = self.db.execute("SELECT path FROM output_folders ORDER BY path").fetchall()
        return [decode_path(str(path)) for (path,) in rows]

    def is_recorded_output(self, sha256: str) -> bool:
        """Whether content with this digest is an output imagelingo wrote."""
        row = self.db.execute(
            "SELECT 1 FROM generations WHERE output_sha256 = ? LIMIT 1", [sha256]
        ).fetchone()
        return row is not None

    def other_live_runs(self) -> int:
        """Runs of other processes still working on this database."""
        rows = self._rows("SELECT * FROM runs WHERE status = ?", [RunStatus.RUNNING])
        return sum(1 for run in rows if run["pid"] != os.getpid() and run_alive(run))

    def count_runs(self) -> int:
        (count,) = self.db.execute("SELECT COUNT(*) FROM runs").fetchone()
        return int(count)

    def recover_dead_runs(self) -> int:
        """Runs left `running` by a process that is gone (its lease expired) become
        `interrupted`, with their in-flight attempts; their unfinished variations become
        `interrupted`, or `completed` again when they were completed before (a forced redo
        cut short keeps the output it had). Variations waiting in a Batch API job, and their
        attempts, are the job's, not the run's: they stay as they are. Returns how many runs
        were recovered."""
        runs = self._rows("SELECT * FROM runs WHERE status = ?", [RunStatus.RUNNING])
        dead = [run["id"] for run in runs if not run_alive(run)]
        for run_id in dead:
            with self.transaction():
                stamp = now_iso()
                self.db.execute(
                    "UPDATE attempts SET outcome = ?, finished_at = ?"
                    " WHERE run_id = ? AND outcome IS NULL AND trigger != ?",
                    [AttemptOutcome.INTERRUPTED, stamp, run_id, Trigger.BATCH],
                )
                self.db.execute(
                    "UPDATE generations SET updated_at = ?, status = CASE WHEN output_path IS NULL"
                    " THEN 'interrupted' ELSE 'completed' END"
                    " WHERE run_id = ? AND status IN ('pending', 'running', 'retrying')",
                    [stamp, run_id],
                )
                self.db.execute(
                    "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                    [RunStatus.INTERRUPTED, stamp, run_id],
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
        with self.transaction():
            row = self.find_generation(key)
            stamp = now_iso()
            if row is None:
                generation_id = new_id()
                self.db.execute(
                    "INSERT INTO generations (id, run_id, source_path, relative_path,"
                    " image_sha256, variation, target_language, model, backend, base_url, out_dir,"
                    " status, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        GenerationStatus.PENDING,
                        stamp,
                        stamp,
                    ],
                )
                return Claim(ClaimKind.SEND, self.generation(generation_id))
            kind = self.claim_decision(row, run_id=run_id, force=force)
            if kind is not ClaimKind.SEND:
                return Claim(kind, row)
            self.db.execute(
                "UPDATE generations SET run_id = ?, status = ?, source_path = ?,"
                " relative_path = ?, out_dir = ?, base_url = ?, updated_at = ? WHERE id = ?",
                [
                    run_id,
                    GenerationStatus.PENDING,
                    source_path,
                    relative_path,
                    out_dir,
                    base_url,
                    stamp,
                    row["id"],
                ],
            )
            return Claim(ClaimKind.SEND, self.generation(row["id"]))

    def claim_decision(self, row: dict[str, Any], *, run_id: str | None, force: bool) -> ClaimKind:
        """Whether a run may take this existing variation, and if not, why: done in this run
        (an identical image), waiting in a Batch API job, held by another live run, completed,
        or abandoned (unless forced). `run_id` None: asking before any run started (a preview)."""
        status = GenerationStatus(row["status"])
        if (
            run_id is not None
            and row["run_id"] == run_id
            and status is not GenerationStatus.PENDING
        ):
            return ClaimKind.DONE_IN_RUN
        if status is GenerationStatus.BATCHED:  # never two requests for one variation
            return ClaimKind.IN_BATCH
        if status.active and row["run_id"] != run_id and self._run_alive(row["run_id"]):
            return ClaimKind.BUSY
        if status is GenerationStatus.COMPLETED and not force:
            return ClaimKind.COMPLETED
        if status is GenerationStatus.ABANDONED and not force:
            return ClaimKind.ABANDONED
        return ClaimKind.SEND

    def find_generation(self, key: GenerationKey) -> dict[str, Any] | None:
        """The variation with this content key, if one was ever recorded."""
        return self._row(
            "SELECT * FROM generations WHERE image_sha256 = ? AND target_language = ?"
            " AND model = ? AND variation = ? AND backend = ?",
            [key.image_sha256, key.target_language, key.model, key.variation, key.backend],
        )

    def claim_for_retry(self, generation_id: str, run_id: str) -> Claim:
        """Take a failed or interrupted variation for a retry-failed run."""
        with self.transaction():
            row = self.generation(generation_id)
            kind = self.claim_decision(row, run_id=run_id, force=False)
            if kind is not ClaimKind.SEND:
                return Claim(kind, row)
            self.db.execute(
                "UPDATE generations SET run_id = ?, status = ?, updated_at = ? WHERE id = ?",
                [run_id, GenerationStatus.PENDING, now_iso(), generation_id],
            )
            return Claim(ClaimKind.SEND, self.generation(generation_id))

    def select_for_retry(
        self,
        *,
        ids: Sequence[str] = (),
        run_id: str | None = None,
        codes: Sequence[str] = (),
        languages: Sequence[str] = (),
        transient_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Failed or interrupted, not abandoned variations, oldest first: those with these
        exact `ids`, and/or that `run_id` worked on, and/or whose last error has one of the
        `codes`, and/or in one of the `languages`."""
        where = ["g.status IN ('failed', 'interrupted')"]
        params: list[Any] = []
        if ids:
            where.append(f"g.id IN ({', '.join('?' * len(ids))})")
            params += list(ids)
        if run_id:
            where.append(
                "(g.run_id = ? OR g.id IN (SELECT generation_id FROM attempts WHERE run_id = ?))"
            )
            params += [run_id, run_id]
        if codes:
            where.append(f"g.error_code IN ({', '.join('?' * len(codes))})")
            params += list(codes)
        if languages:
            where.append(f"g.target_language IN ({', '.join('?' * len(languages))})")
            params += list(languages)
        if transient_only:
            where.append("g.is_retryable = 1")
        return self._rows(
            f"SELECT g.* FROM generations g WHERE {' AND '.join(where)} ORDER BY g.created_at, g.id",
            params,
        )

    def generation(self, generation_id: str) -> dict[str, Any]:
        row = self._row("SELECT * FROM generations WHERE id = ?", [generation_id])
        if row is None:
            raise KeyError(generation_id)
        return row

    def output_owner(self, path: str) -> str | None:
        """The generation whose output is `path`, recorded or about to be written, if any."""
        row = self.db.execute(
            "SELECT id FROM generations WHERE output_path = ? OR pending_output = ? LIMIT 1",
            [path, path],
        ).fetchone()
        return str(row[0]) if row else None

    def fail_unsent(self, generation_id: str, error: TranslationError) -> None:
        """A variation that failed without a request (bad file, or the run stopped sending).
        One that was completed before keeps its status and output."""
        stamp = now_iso()
        self._record_error(generation_id, error, GenerationStatus.FAILED, stamp)
        self._settle(generation_id, stamp)

    def mark_interrupted(self, generation_id: str) -> None:
        """The variation's run (or Batch API job) stopped before it finished."""
        stamp = now_iso()
        self.db.execute(
            "UPDATE generations SET status = ?, updated_at = ? WHERE id = ?"
            " AND status IN ('pending', 'running', 'retrying', 'batched')"
            " AND output_path IS NULL",
            [GenerationStatus.INTERRUPTED, stamp, generation_id],
        )
        self._settle(generation_id, stamp)

    def _record_error(
        self, generation_id: str, error: TranslationError, status: GenerationStatus, stamp: str
    ) -> None:
        """The approved error record of a variation that has no output (one that has keeps
        its record clean: the failure stays on the attempt)."""
        self.db.execute(
            "UPDATE generations SET status = ?, error_code = ?, error_message = ?,"
            " is_retryable = ?, first_error_at = COALESCE(first_error_at, ?), updated_at = ?,"
            " pending_output = NULL, pending_output_sha256 = NULL"
            " WHERE id = ? AND output_path IS NULL",
            [
                status,
                error.code.value,
                error.message,
                int(error.transient),
                stamp,
                stamp,
                generation_id,
            ],
        )

    def _settle(self, generation_id: str, stamp: str) -> None:
        """A variation that was completed before this run took it (a forced redo) stays
        completed with its output, whatever became of the redo."""
        self.db.execute(
            "UPDATE generations SET status = ?, pending_output = NULL,"
            " pending_output_sha256 = NULL, updated_at = ? WHERE id = ?"
            " AND output_path IS NOT NULL AND status != ?",
            [GenerationStatus.COMPLETED, stamp, generation_id, GenerationStatus.COMPLETED],
        )

    # -- attempts --

    def start_attempt(
        self, generation_id: str, run_id: str, trigger: Trigger, *, model: str | None = None
    ) -> tuple[str, int]:
        """Record a request about to be sent; returns (attempt id, attempt number). `model`:
        the model asked, when not the variation's own (retry-failed --model)."""
        attempt_id = new_id()
        stamp = now_iso()
        with self.transaction():
            (number,) = self.db.execute(
                "SELECT attempt_count + 1 FROM generations WHERE id = ?", [generation_id]
            ).fetchone()
            self.db.execute(
                "INSERT INTO attempts (id, generation_id, run_id, attempt_number, trigger,"
                " started_at, model) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [attempt_id, generation_id, run_id, number, trigger, stamp, model],
            )
            self.db.execute(
                "UPDATE generations SET status = ?, attempt_count = ?, retry_count = ?,"
                " last_retry_at = CASE WHEN ? > 1 THEN ? ELSE last_retry_at END, updated_at = ?"
                " WHERE id = ?",
                [GenerationStatus.RUNNING, number, number - 1, number, stamp, stamp, generation_id],
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
        """Record a failed attempt; `retry_in_ms` is the wait planned before the next one
        (None: it was the last), `not_retried` why a retry the policy allows was not made. A
        variation completed before keeps its output and status; the failure stays on the
        attempt."""
        stamp = now_iso()
        with self.transaction():
            self.db.execute(
                "UPDATE attempts SET outcome = ?, finished_at = ?, duration_ms = ?,"
                " error_code = ?, error_message = ?, http_status = ?, api_status = ?,"
                " retry_after_ms = ?, wait_before_next_ms = ?, not_retried = ? WHERE id = ?",
                [
                    AttemptOutcome.FAILED,
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
            if error.usage is not None:
                self._record_usage(attempt_id, error.usage)
            status = GenerationStatus.FAILED if retry_in_ms is None else GenerationStatus.RETRYING
            self._record_error(generation_id, error, status, stamp)
            if retry_in_ms is None:
                self._settle(generation_id, stamp)
            else:  # a forced redo of a completed variation that will retry
                self.db.execute(
                    "UPDATE generations SET status = ?, updated_at = ? WHERE id = ?"
                    " AND output_path IS NOT NULL",
                    [GenerationStatus.RETRYING, stamp, generation_id],
                )

    def attempt_succeeded(
        self,
        attempt_id: str,
        generation_id: str,
        *,
        duration_ms: int,
        output_path: str,
        output_sha256: str,
        usage: Usage,
    ) -> bool:
        """Record success. The variation's one credit is charged on its first success only;
        returns whether this success charged it."""
        stamp = now_iso()
        with self.transaction():
            (charged_before,) = self.db.execute(
                "SELECT credits_charged FROM generations WHERE id = ?", [generation_id]
            ).fetchone()
            self.db.execute(
                "UPDATE attempts SET outcome = ?, finished_at = ?, duration_ms = ? WHERE id = ?",
                [AttemptOutcome.SUCCEEDED, stamp, duration_ms, attempt_id],
            )
            self._record_usage(attempt_id, usage)
            self.db.execute(
                "UPDATE generations SET status = ?, output_path = ?, output_sha256 = ?,"
                " error_code = NULL, error_message = NULL, is_retryable = NULL,"
                " credits_charged = 1, pending_output = NULL, pending_output_sha256 = NULL,"
                " completed_at = ?, updated_at = ? WHERE id = ?",
                [
                    GenerationStatus.COMPLETED,
                    output_path,
                    output_sha256,
                    stamp,
                    stamp,
                    generation_id,
                ],
            )
        return not charged_before

    def intend_output(self, generation_id: str, path: str, sha256: str) -> None:
        """Before an output is written: where it goes and what it holds, so that a run killed
        between the write and `attempt_succeeded` leaves a file the next run can adopt."""
        self.db.execute(
            "UPDATE generations SET pending_output = ?, pending_output_sha256 = ? WHERE id = ?",
            [path, sha256, generation_id],
        )

    def adopt_output(self, generation_id: str) -> bool:
        """Complete a variation with the output an earlier run wrote but did not record (the
        caller checked the file against its digest); its last attempt, cut short by the
        crash, is what produced it. Returns whether the variation's credit was charged now."""
        stamp = now_iso()
        with self.transaction():
            (charged_before, attempts) = self.db.execute(
                "SELECT credits_charged, attempt_count FROM generations WHERE id = ?",
                [generation_id],
            ).fetchone()
            self.db.execute(
                "UPDATE attempts SET outcome = ?, finished_at = COALESCE(finished_at, ?)"
                " WHERE generation_id = ? AND attempt_number = ?"
                " AND (outcome IS NULL OR outcome = ?)",
                [
                    AttemptOutcome.SUCCEEDED,
                    stamp,
                    generation_id,
                    attempts,
                    AttemptOutcome.INTERRUPTED,
                ],
            )
            self.db.execute(
                "UPDATE generations SET status = ?, output_path = pending_output,"
                " output_sha256 = pending_output_sha256, error_code = NULL, error_message = NULL,"
                " is_retryable = NULL, credits_charged = 1, pending_output = NULL,"
                " pending_output_sha256 = NULL, completed_at = ?, updated_at = ? WHERE id = ?",
                [GenerationStatus.COMPLETED, stamp, stamp, generation_id],
            )
        return not charged_before

    def _record_usage(self, attempt_id: str, usage: Usage) -> None:
        self.db.execute(
            "UPDATE attempts SET prompt_tokens = ?, output_tokens = ?, thoughts_tokens = ?,"
            " total_tokens = ?, model_version = ? WHERE id = ?",
            [
                usage.prompt_tokens,
                usage.output_tokens,
                usage.thoughts_tokens,
                usage.total_tokens,
                usage.model_version,
                attempt_id,
            ],
        )

    def attempt_interrupted(self, attempt_id: str, *, duration_ms: int) -> None:
        self.db.execute(
            "UPDATE attempts SET outcome = ?, finished_at = ?, duration_ms = ?"
            " WHERE id = ? AND outcome IS NULL",
            [AttemptOutcome.INTERRUPTED, now_iso(), duration_ms, attempt_id],
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

    def transaction(self) -> AbstractContextManager[None]:
        """One short write transaction (see `connection.write_transaction`)."""
        return write_transaction(self.db)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, params)
        names = [c[0] for c in cursor.description]
        return [_decode_paths(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]

    def _row(self, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _run_alive(self, run_id: str | None) -> bool:
        if run_id is None:
            return False
        return run_alive(self._row("SELECT * FROM runs WHERE id = ?", [run_id]))

    def close(self) -> None:
        self.db.close()


def _decode_paths(row: dict[str, Any]) -> dict[str, Any]:
    """A row's paths as the file system names them (see `pathtext`), so the source can be read
    again and the output found (resume, retry-failed)."""
    for column in ("source_path", "out_dir", "output_path", "pending_output"):
        value = row.get(column)
        if isinstance(value, str):
            decoded = decode_path(value)
            if column == "source_path" and decoded != value:
                row["relative_path"] = decode_path(str(row["relative_path"]))
            row[column] = decoded
    return row


def open_store(path: Path) -> Store:
    """Open (creating if needed) and migrate the database. Raises StoreError with a reason."""
    path = path.expanduser()
    return Store(connect(path), path)


def open_empty_store() -> Store:
    """A store with nothing in it (in memory), for reading when no database exists yet."""
    return Store(connect_empty(), None)


def open_store_read_only(path: Path) -> Store:
    """Open an existing database for reading only. Raises StoreError with a reason."""
    path = path.expanduser()
    return Store(connect_read_only(path), path)
