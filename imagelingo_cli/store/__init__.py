"""The local SQLite database: schema, migrations, and every read and write of it.

Tables (open the file with `sqlite3` and they explain themselves):
    runs         one row per `process` / `retry-failed` / `batch collect` invocation
    generations  one row per variation, keyed by (image_sha256, target_language, model,
                 variation, backend); holds the approved error record
    attempts     one row per request to the model, written when it starts and when it ends
    batch_jobs   one row per Batch API job (`batch_jobs` module)
    texts        each folder, model, backend and message once; the rows refer to them
    tallies, code_tallies   the stats of each run and of all runs, kept current by each write
Views: generations, attempts and batch_jobs (a row whole, its texts in place), error_logs
(one row per failed attempt: the approved audit trail). How values are kept small: `encoding`.

All calls are synchronous and short; the engine makes them from the event-loop thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from imagelingo_cli.errors import TranslationError
from imagelingo_cli.pathtext import decode_path
from imagelingo_cli.states import AttemptOutcome, GenerationStatus, RunStatus, Trigger
from imagelingo_cli.store import encoding, tallies
from imagelingo_cli.store.connection import (
    SCHEMA,
    StoreError,
    connect,
    connect_empty,
    connect_read_only,
    write_transaction,
)
from imagelingo_cli.store.encoding import OUTCOMES, TRIGGERS, now_ms
from imagelingo_cli.store.liveness import run_alive

__all__ = [
    "SCHEMA",
    "AttemptId",
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


class AttemptId(NamedTuple):
    """One attempt: the variation's id and the attempt's number."""

    generation_id: str
    number: int


RUN_SEQ = "(SELECT seq FROM runs WHERE id = ?)"  # a run's number, from its id


def variations_of(run_id: str | None) -> tuple[str, list[Any]]:
    """The FROM clause of a read of `generation_rows g` (SQL, parameters): all of them, or
    those a run worked on (it holds them now, or made an attempt for them), found through the
    run's indexes first, never by walking the history for them."""
    if run_id is None:
        return "generation_rows g", []
    members = (
        f"(SELECT seq FROM generation_rows WHERE run_seq = {RUN_SEQ}"
        f" UNION SELECT generation_seq FROM attempt_rows WHERE run_seq = {RUN_SEQ}) members"
    )
    return f"{members} CROSS JOIN generation_rows g ON g.seq = members.seq", [run_id, run_id]


def retryable(
    *,
    ids: Sequence[str] = (),
    run_id: str | None = None,
    codes: Sequence[str] = (),
    languages: Sequence[str] = (),
    transient_only: bool = False,
) -> tuple[str, list[Any]]:
    """The query (SQL, parameters) for `Store.select_for_retry`: whole rows, oldest first."""
    source, params = variations_of(run_id or None)
    where = ["g.status IN ('failed', 'interrupted')"]
    if ids:
        where.append(f"g.id IN ({', '.join('?' * len(ids))})")
        params += list(ids)
    if codes:
        where.append(f"g.error_code IN ({', '.join('?' * len(codes))})")
        params += list(codes)
    if languages:
        where.append(f"g.target_language IN ({', '.join('?' * len(languages))})")
        params += list(languages)
    if transient_only:
        where.append("g.is_retryable = 1")
    sql = (
        f"SELECT d.* FROM {source} JOIN generations d ON d.id = g.id"
        f" WHERE {' AND '.join(where)} ORDER BY g.created_ms, g.seq"
    )
    return sql, params


class Store:
    def __init__(self, db: sqlite3.Connection, path: Path | None) -> None:
        self.db = db
        self.path = path
        self._text_ids: dict[str, int] = {}  # texts seen by this connection (see `_text`)
        self._together: set[int] | None = None  # the variations of a `together` block

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
        import socket  # here, not at the top: the read commands never need it

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
            "SELECT 1 FROM generation_rows WHERE output_digest IS NOT NULL"
            " AND substr(output_digest, 1, 8) = substr(?1, 1, 8) AND output_digest = ?1 LIMIT 1",
            [encoding.digest(sha256)],
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
        dead = [(run["seq"], run["id"]) for run in runs if not run_alive(run)]
        for run_seq, run_id in dead:
            with self.transaction():
                unfinished = self.db.execute(
                    "SELECT seq FROM generation_rows WHERE run_seq = ?1"
                    " AND status IN ('pending', 'running', 'retrying')"
                    " UNION SELECT generation_seq FROM attempt_rows WHERE run_seq = ?1"
                    " AND outcome_code IS NULL AND trigger_code != ?2",
                    [run_seq, TRIGGERS[Trigger.BATCH]],
                ).fetchall()
                change = tallies.Change(self.db, (seq for (seq,) in unfinished))
                stamp = now_ms()
                self.db.execute(
                    "UPDATE attempt_rows SET outcome_code = ?, finished_ms = ?"
                    " WHERE run_seq = ? AND outcome_code IS NULL AND trigger_code != ?",
                    [OUTCOMES[AttemptOutcome.INTERRUPTED], stamp, run_seq, TRIGGERS[Trigger.BATCH]],
                )
                self.db.execute(
                    "UPDATE generation_rows SET updated_ms = ?, status = CASE WHEN output_name IS NULL"
                    " THEN 'interrupted' ELSE 'completed' END"
                    " WHERE run_seq = ? AND status IN ('pending', 'running', 'retrying')",
                    [stamp, run_seq],
                )
                change.apply()
                self.db.execute(
                    "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                    [RunStatus.INTERRUPTED, now_iso(), run_id],
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
            place = [
                self._text(encoding.source_folder(source_path, relative_path)),
                relative_path,
                self._text(out_dir),
                self._text(base_url),
            ]
            row = self.find_generation(key)
            stamp = now_ms()
            if row is None:
                generation_id = new_id()
                (seq,) = self.db.execute(
                    "INSERT INTO generation_rows (id, run_seq, source_folder_ref, relative_path,"
                    " out_dir_ref, base_url_ref, image_digest, variation, target_language,"
                    " model_ref, backend_ref, status, created_ms, updated_ms)"
                    f" VALUES (?, {RUN_SEQ}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                    [
                        generation_id,
                        run_id,
                        *place,
                        encoding.digest(key.image_sha256),
                        key.variation,
                        key.target_language,
                        self._text(key.model),
                        self._text(key.backend),
                        GenerationStatus.PENDING,
                        stamp,
                        stamp,
                    ],
                ).fetchone()
                tallies.Change(self.db, ()).apply(seq)
                return Claim(ClaimKind.SEND, self.generation(generation_id))
            kind = self.claim_decision(row, run_id=run_id, force=force)
            if kind is not ClaimKind.SEND:
                return Claim(kind, row)
            seq = self._seq(row["id"])
            change = tallies.Change(self.db, [seq])
            self.db.execute(
                f"UPDATE generation_rows SET run_seq = {RUN_SEQ}, status = ?, source_folder_ref = ?,"
                " relative_path = ?, out_dir_ref = ?, base_url_ref = ?, updated_ms = ?"
                " WHERE seq = ?",
                [run_id, GenerationStatus.PENDING, *place, stamp, seq],
            )
            change.apply()
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
        """The variation with this content key, if one was ever recorded (through the key's
        index: texts not recorded yet mean no such variation)."""
        model, backend = self._known_text(key.model), self._known_text(key.backend)
        if model is None or backend is None:
            return None
        return self._row(
            "SELECT * FROM generations WHERE id = (SELECT id FROM generation_rows"
            " WHERE image_digest = ? AND target_language = ? AND model_ref = ?"
            " AND variation = ? AND backend_ref = ?)",
            [encoding.digest(key.image_sha256), key.target_language, model, key.variation, backend],
        )

    def claim_for_retry(self, generation_id: str, run_id: str) -> Claim:
        """Take a failed or interrupted variation for a retry-failed run."""
        with self.transaction():
            row = self.generation(generation_id)
            kind = self.claim_decision(row, run_id=run_id, force=False)
            if kind is not ClaimKind.SEND:
                return Claim(kind, row)
            seq = self._seq(generation_id)
            change = tallies.Change(self.db, [seq])
            self.db.execute(
                f"UPDATE generation_rows SET run_seq = {RUN_SEQ}, status = ?, updated_ms = ?"
                " WHERE seq = ?",
                [run_id, GenerationStatus.PENDING, now_ms(), seq],
            )
            change.apply()
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
        return self._rows(
            *retryable(
                ids=ids,
                run_id=run_id,
                codes=codes,
                languages=languages,
                transient_only=transient_only,
            )
        )

    def generation(self, generation_id: str) -> dict[str, Any]:
        row = self._row("SELECT * FROM generations WHERE id = ?", [generation_id])
        if row is None:
            raise KeyError(generation_id)
        return row

    def output_owner(self, path: str) -> str | None:
        """The generation whose output is `path`, recorded or about to be written, if any."""
        folder, name = encoding.split_path(path)
        row = self.db.execute(
            "SELECT id FROM generation_rows WHERE (output_name = ? AND output_folder_ref ="
            " (SELECT id FROM texts WHERE text = ?))"
            " OR (pending_output = ? AND pending_output IS NOT NULL) LIMIT 1",
            [name, folder, path],
        ).fetchone()
        return str(row[0]) if row else None

    def fail_unsent(self, generation_id: str, error: TranslationError) -> None:
        """A variation that failed without a request (bad file, or the run stopped sending).
        One that was completed before keeps its status and output."""
        with self._writing(generation_id) as seq:
            stamp = now_ms()
            self._record_error(seq, error, GenerationStatus.FAILED, stamp)
            self._settle(seq, stamp)

    def mark_interrupted(self, generation_id: str) -> None:
        """The variation's run (or Batch API job) stopped before it finished."""
        with self._writing(generation_id) as seq:
            stamp = now_ms()
            self.db.execute(
                "UPDATE generation_rows SET status = ?, updated_ms = ? WHERE seq = ?"
                " AND status IN ('pending', 'running', 'retrying', 'batched')"
                " AND output_name IS NULL",
                [GenerationStatus.INTERRUPTED, stamp, seq],
            )
            self._settle(seq, stamp)

    def _record_error(
        self, seq: int, error: TranslationError, status: GenerationStatus, stamp: int
    ) -> None:
        """The approved error record of a variation that has no output (one that has keeps
        its record clean: the failure stays on the attempt)."""
        self.db.execute(
            "UPDATE generation_rows SET status = ?, error_code = ?, error_message_ref = ?,"
            " is_retryable = ?, first_error_ms = COALESCE(first_error_ms, ?), updated_ms = ?,"
            " pending_output = NULL, pending_output_sha256 = NULL"
            " WHERE seq = ? AND output_name IS NULL",
            [
                status,
                error.code.value,
                self._text(error.message),
                int(error.transient),
                stamp,
                stamp,
                seq,
            ],
        )

    def _settle(self, seq: int, stamp: int) -> None:
        """A variation that was completed before this run took it (a forced redo) stays
        completed with its output, whatever became of the redo."""
        self.db.execute(
            "UPDATE generation_rows SET status = ?, pending_output = NULL,"
            " pending_output_sha256 = NULL, updated_ms = ? WHERE seq = ?"
            " AND output_name IS NOT NULL AND status != ?",
            [GenerationStatus.COMPLETED, stamp, seq, GenerationStatus.COMPLETED],
        )

    # -- attempts --

    def start_attempt(
        self, generation_id: str, run_id: str, trigger: Trigger, *, model: str | None = None
    ) -> tuple[AttemptId, int]:
        """Record a request about to be sent; returns (attempt id, attempt number). `model`:
        the model asked, when not the variation's own (retry-failed --model)."""
        stamp = now_ms()
        with self._writing(generation_id) as seq:
            (number,) = self.db.execute(
                "SELECT attempt_count + 1 FROM generation_rows WHERE seq = ?", [seq]
            ).fetchone()
            self.db.execute(
                "INSERT INTO attempt_rows (generation_seq, attempt_number, run_seq, trigger_code,"
                f" started_ms, model_ref) VALUES (?, ?, {RUN_SEQ}, ?, ?, ?)",
                [seq, number, run_id, TRIGGERS[trigger], stamp, self._text(model)],
            )
            self.db.execute(
                "UPDATE generation_rows SET status = ?, attempt_count = ?, retry_count = ?,"
                " last_retry_ms = CASE WHEN ? > 1 THEN ? ELSE last_retry_ms END, updated_ms = ?"
                " WHERE seq = ?",
                [GenerationStatus.RUNNING, number, number - 1, number, stamp, stamp, seq],
            )
        return AttemptId(generation_id, number), number

    def attempt_failed(
        self,
        attempt: AttemptId,
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
        stamp = now_ms()
        with self._writing(generation_id) as seq:
            self.db.execute(
                "UPDATE attempt_rows SET outcome_code = ?, finished_ms = ?, duration_ms = ?,"
                " error_code = ?, error_message_ref = ?, http_status = ?, api_status = ?,"
                " retry_after_ms = ?, wait_before_next_ms = ?, not_retried_ref = ?"
                " WHERE generation_seq = ? AND attempt_number = ?",
                [
                    OUTCOMES[AttemptOutcome.FAILED],
                    stamp,
                    duration_ms,
                    error.code.value,
                    self._text(error.message),
                    error.http_status,
                    error.api_status,
                    error.retry_after_ms,
                    retry_in_ms,
                    self._text(not_retried),
                    seq,
                    attempt.number,
                ],
            )
            if error.usage is not None:
                self._record_usage(seq, attempt.number, error.usage)
            status = GenerationStatus.FAILED if retry_in_ms is None else GenerationStatus.RETRYING
            self._record_error(seq, error, status, stamp)
            if retry_in_ms is None:
                self._settle(seq, stamp)
            else:  # a forced redo of a completed variation that will retry
                self.db.execute(
                    "UPDATE generation_rows SET status = ?, updated_ms = ? WHERE seq = ?"
                    " AND output_name IS NOT NULL",
                    [GenerationStatus.RETRYING, stamp, seq],
                )

    def attempt_succeeded(
        self,
        attempt: AttemptId,
        generation_id: str,
        *,
        duration_ms: int,
        output_path: str,
        output_sha256: str,
        usage: Usage,
    ) -> bool:
        """Record success. The variation's one credit is charged on its first success only;
        returns whether this success charged it."""
        stamp = now_ms()
        with self._writing(generation_id) as seq:
            (charged_before,) = self.db.execute(
                "SELECT credits_charged FROM generation_rows WHERE seq = ?", [seq]
            ).fetchone()
            self.db.execute(
                "UPDATE attempt_rows SET outcome_code = ?, finished_ms = ?, duration_ms = ?"
                " WHERE generation_seq = ? AND attempt_number = ?",
                [OUTCOMES[AttemptOutcome.SUCCEEDED], stamp, duration_ms, seq, attempt.number],
            )
            self._record_usage(seq, attempt.number, usage)
            self._complete(seq, output_path, output_sha256, stamp)
        return not charged_before

    def intend_outputs(self, outputs: Sequence[tuple[str, str, str]]) -> None:
        """Before outputs are written, (generation id, path, SHA-256) each: where it goes and
        what it holds, so that a run killed between the write and `attempt_succeeded` leaves a
        file the next run can adopt."""
        with self.transaction():
            self.db.executemany(
                "UPDATE generation_rows SET pending_output = ?, pending_output_sha256 = ?"
                " WHERE id = ?",
                [(path, sha256, generation_id) for generation_id, path, sha256 in outputs],
            )

    def adopt_output(self, generation_id: str) -> bool:
        """Complete a variation with the output an earlier run wrote but did not record (the
        caller checked the file against its digest); its last attempt, cut short by the
        crash, is what produced it. Returns whether the variation's credit was charged now."""
        stamp = now_ms()
        with self._writing(generation_id) as seq:
            (charged_before, attempts, path, sha256) = self.db.execute(
                "SELECT credits_charged, attempt_count, pending_output, pending_output_sha256"
                " FROM generation_rows WHERE seq = ?",
                [seq],
            ).fetchone()
            self.db.execute(
                "UPDATE attempt_rows SET outcome_code = ?, finished_ms = COALESCE(finished_ms, ?)"
                " WHERE generation_seq = ? AND attempt_number = ?"
                " AND (outcome_code IS NULL OR outcome_code = ?)",
                [
                    OUTCOMES[AttemptOutcome.SUCCEEDED],
                    stamp,
                    seq,
                    attempts,
                    OUTCOMES[AttemptOutcome.INTERRUPTED],
                ],
            )
            self._complete(seq, path, sha256, stamp)
        return not charged_before

    def _complete(self, seq: int, output_path: str, sha256: str, stamp: int) -> None:
        """The variation completed with its output, its credit charged."""
        folder, name = encoding.split_path(output_path)
        self.db.execute(
            "UPDATE generation_rows SET status = ?, output_folder_ref = ?, output_name = ?,"
            " output_digest = ?, error_code = NULL, error_message_ref = NULL,"
            " is_retryable = NULL, credits_charged = 1, pending_output = NULL,"
            " pending_output_sha256 = NULL, completed_ms = ?, updated_ms = ? WHERE seq = ?",
            [
                GenerationStatus.COMPLETED,
                self._text(folder),
                name,
                encoding.digest(sha256),
                stamp,
                stamp,
                seq,
            ],
        )

    def _record_usage(self, seq: int, number: int, usage: Usage) -> None:
        self.db.execute(
            "UPDATE attempt_rows SET prompt_tokens = ?, output_tokens = ?, thoughts_tokens = ?,"
            " total_tokens = ?, model_version_ref = ? WHERE generation_seq = ? AND attempt_number = ?",
            [
                usage.prompt_tokens,
                usage.output_tokens,
                usage.thoughts_tokens,
                usage.total_tokens,
                self._text(usage.model_version),
                seq,
                number,
            ],
        )

    def attempt_interrupted(self, attempt: AttemptId, *, duration_ms: int) -> None:
        with self._writing(attempt.generation_id) as seq:
            self.db.execute(
                "UPDATE attempt_rows SET outcome_code = ?, finished_ms = ?, duration_ms = ?"
                " WHERE generation_seq = ? AND attempt_number = ? AND outcome_code IS NULL",
                [OUTCOMES[AttemptOutcome.INTERRUPTED], now_ms(), duration_ms, seq, attempt.number],
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
    def transaction(self) -> Iterator[None]:
        """One short write transaction (see `connection.write_transaction`)."""
        try:
            with write_transaction(self.db):
                yield
        except BaseException:
            self._text_ids.clear()  # texts added in it are gone with it
            raise

    @contextmanager
    def together(self, generation_ids: Iterable[str]) -> Iterator[None]:
        """The writes to these variations made in the block, in one transaction that moves the
        tallies once by what they changed together (a Batch API job's results: counting the
        tallies for each write would cost more than the write)."""
        with self.transaction():
            seqs = {self._seq(generation_id) for generation_id in generation_ids}
            change = tallies.Change(self.db, seqs)
            self._together = seqs
            try:
                yield
            finally:
                self._together = None
            change.apply()

    @contextmanager
    def _writing(self, generation_id: str) -> Iterator[int]:
        """One write transaction to a variation (its seq yielded) that moves the tallies by
        exactly what it changed; inside `together`, a part of its transaction."""
        if self._together is not None:
            seq = self._seq(generation_id)
            if seq not in self._together:
                raise ValueError(f"{generation_id} is not among the variations written together")
            yield seq
            return
        with self.transaction():
            seq = self._seq(generation_id)
            change = tallies.Change(self.db, [seq])
            yield seq
            change.apply()

    def _known_text(self, value: str) -> int | None:
        """The id of `value` in `texts`, or None when no row holds it yet (no write)."""
        found = self._text_ids.get(value)
        if found is None:
            row = self.db.execute("SELECT id FROM texts WHERE text = ?", [value]).fetchone()
            if row is None:
                return None
            found = self._text_ids[value] = int(row[0])
        return found

    def _text(self, value: str | None) -> int | None:
        """The id of `value` in `texts`, added if new (inside a write transaction)."""
        if value is None:
            return None
        found = self._known_text(value)
        if found is None:
            (row_id,) = self.db.execute(
                "INSERT INTO texts (text) VALUES (?) RETURNING id", [value]
            ).fetchone()
            found = self._text_ids[value] = int(row_id)
        return found

    def _seq(self, generation_id: str) -> int:
        row = self.db.execute(
            "SELECT seq FROM generation_rows WHERE id = ?", [generation_id]
        ).fetchone()
        if row is None:
            raise KeyError(generation_id)
        return int(row[0])

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
