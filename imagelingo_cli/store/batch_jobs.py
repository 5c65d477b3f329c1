"""The `batch_jobs` table and the attempts of the variations inside each job.

A job is recorded, with its unique display name and one attempt per variation (trigger
`batch`, open until the job's outcome is imported), in one transaction before anything is
uploaded: from then on the variations are `batched`, held by the job rather than a run. The
run waiting for a job or importing it holds it (`collector_run_id`) while its lease lives, so
two processes never import the same job at once.

The rows live in `batch_job_rows` (runs referred to by number); `batch_jobs` is the view that
reads them whole. Writes to variations and attempts go through `Store._writing`, so the stats
tallies move with them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from imagelingo_cli.states import GenerationStatus, JobState, Trigger
from imagelingo_cli.store import RUN_SEQ, AttemptId, Store, new_id, now_iso, tallies
from imagelingo_cli.store.encoding import TRIGGERS, now_ms

__all__ = [
    "DISPLAY_PREFIX",
    "Member",
    "attempt_of",
    "claim_job",
    "find_jobs",
    "hold_members",
    "job",
    "job_holding",
    "job_seq",
    "jobs",
    "mark_imported",
    "open_attempts",
    "open_attempts_among",
    "open_count",
    "out_dirs",
    "record_job",
    "release_job",
    "set_created",
    "set_uploaded",
    "unimported_jobs",
    "update_job",
    "variations",
]

DISPLAY_PREFIX = "imagelingo-"
Member = tuple[str, str | None]  # a variation's generation id, and the model asked if not its own


def record_job(
    store: Store,
    *,
    run_id: str,
    model: str,
    backend: str,
    base_url: str | None,
    members: Sequence[Member],
    input_bytes: int,
) -> dict[str, Any]:
    """Record a job about to be uploaded and created, and start an attempt for each member.
    Returns the job's row (its `display_name` is unique: how the job is found again)."""
    job_id = new_id()
    stamp, stamp_ms = now_iso(), now_ms()
    with store.transaction():
        (job_seq,) = store.db.execute(
            "INSERT INTO batch_job_rows (id, display_name, run_seq, model, backend, base_url,"
            f" state, requests, input_bytes, created_at, updated_at)"
            f" VALUES (?, ?, {RUN_SEQ}, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            [
                job_id,
                DISPLAY_PREFIX + job_id,
                run_id,
                model,
                backend,
                base_url,
                JobState.SUBMITTING,
                len(members),
                input_bytes,
                stamp,
                stamp,
            ],
        ).fetchone()
        seqs = [store._seq(generation_id) for generation_id, _ in members]
        change = tallies.Change(store.db, seqs)
        (run_seq,) = store.db.execute("SELECT seq FROM runs WHERE id = ?", [run_id]).fetchone()
        store.db.executemany(
            "INSERT INTO attempt_rows (generation_seq, attempt_number, run_seq, trigger_code,"
            " started_ms, model_ref, batch_job_seq)"
            " SELECT seq, attempt_count + 1, ?, ?, ?, ?, ? FROM generation_rows WHERE seq = ?",
            (
                (run_seq, TRIGGERS[Trigger.BATCH], stamp_ms, store._text(asked), job_seq, seq)
                for seq, (_, asked) in zip(seqs, members, strict=True)
            ),
        )
        store.db.executemany(
            "UPDATE generation_rows SET status = ?, attempt_count = attempt_count + 1,"
            " retry_count = attempt_count,"
            " last_retry_ms = CASE WHEN attempt_count > 0 THEN ? ELSE last_retry_ms END,"
            " updated_ms = ? WHERE seq = ?",
            ((GenerationStatus.BATCHED, stamp_ms, stamp_ms, seq) for seq in seqs),
        )
        change.apply()
    return job(store, job_id)


def job(store: Store, job_id: str) -> dict[str, Any]:
    row = store._row("SELECT * FROM batch_jobs WHERE id = ?", [job_id])
    if row is None:
        raise KeyError(job_id)
    return row


def job_seq(store: Store, job_id: str) -> int:
    row = store.db.execute("SELECT seq FROM batch_job_rows WHERE id = ?", [job_id]).fetchone()
    if row is None:
        raise KeyError(job_id)
    return int(row[0])


def set_uploaded(store: Store, job_id: str, input_file: str) -> None:
    _set(store, job_id, input_file=input_file)


def set_created(store: Store, job_id: str, name: str) -> None:
    """Google has the job (its create answered, or a listing found it by display name)."""
    _set(store, job_id, name=name, state=JobState.PENDING, submitted_at=now_iso())


def update_job(store: Store, job_id: str, **fields: object) -> None:
    """Record what was seen of the job (state, api_state, counts, result_file, error…);
    `ended_at` is stamped the first time it is seen ended."""
    state = fields.get("state")
    if isinstance(state, JobState) and state.ended:
        store.db.execute(
            "UPDATE batch_job_rows SET ended_at = COALESCE(ended_at, ?) WHERE id = ?",
            [now_iso(), job_id],
        )
    _set(store, job_id, **fields)


def _set(store: Store, job_id: str, **fields: object) -> None:
    columns = ", ".join(f"{name} = ?" for name in fields)
    store.db.execute(
        f"UPDATE batch_job_rows SET {columns}, updated_at = ? WHERE id = ?",
        [*fields.values(), now_iso(), job_id],
    )


def mark_imported(store: Store, job_id: str) -> None:
    """Every attempt of the job is closed: nothing more to do with it."""
    stamp = now_iso()
    store.db.execute(
        "UPDATE batch_job_rows SET imported_at = COALESCE(imported_at, ?),"
        " collector_run_seq = NULL, updated_at = ? WHERE id = ?",
        [stamp, stamp, job_id],
    )


def claim_job(store: Store, job_id: str, run_id: str) -> str | None:
    """Take the job for this run to wait for and import. None when taken; otherwise the id of
    the live run that holds it."""
    with store.transaction():
        row = job(store, job_id)
        holder = row["collector_run_id"]
        if holder not in (None, run_id) and store._run_alive(holder):
            return str(holder)
        store.db.execute(
            f"UPDATE batch_job_rows SET collector_run_seq = {RUN_SEQ} WHERE id = ?",
            [run_id, job_id],
        )
    return None


def hold_members(store: Store, job_id: str, run_id: str) -> None:
    """The importing run holds the job's waiting variations, so `history --run` and
    `retry-failed --run` of the run that imported them find them (the attempts stay the
    submitting run's)."""
    with store.transaction():
        seqs = _open_seqs(store, job_id)
        change = tallies.Change(store.db, seqs)
        store.db.execute(
            f"UPDATE generation_rows SET run_seq = {RUN_SEQ}"
            " WHERE seq IN (SELECT value FROM json_each(?))",
            [run_id, json.dumps(seqs)],
        )
        change.apply()


def release_job(store: Store, job_id: str, run_id: str) -> None:
    store.db.execute(
        "UPDATE batch_job_rows SET collector_run_seq = NULL"
        f" WHERE id = ? AND collector_run_seq = {RUN_SEQ}",
        [job_id, run_id],
    )


# A job's attempts with their variations (`a`: attempt_rows, `g`: the generations view row).
_ATTEMPT_COLUMNS = (
    "a.started_at, a.attempt_number, asked.text AS asked_model,"
    " g.id AS generation_id, g.source_path, g.relative_path, g.image_sha256, g.variation,"
    " g.target_language, g.model, g.backend, g.out_dir"
)
_ATTEMPTS = (
    "FROM attempt_rows a JOIN generation_rows r ON r.seq = a.generation_seq"
    " JOIN generations g ON g.id = r.id LEFT JOIN texts asked ON asked.id = a.model_ref"
)
_JOB_SEQ = "(SELECT seq FROM batch_job_rows WHERE id = ?)"


def attempt_of(row: Mapping[str, Any]) -> AttemptId:
    """The attempt an `open_attempts` row is about."""
    return AttemptId(str(row["generation_id"]), int(row["attempt_number"]))


def open_attempts(store: Store, job_id: str) -> list[dict[str, Any]]:
    """The job's attempts still waiting for an outcome, with their variations, in the order
    they were recorded."""
    return store._rows(
        f"SELECT {_ATTEMPT_COLUMNS} {_ATTEMPTS} WHERE a.batch_job_seq = {_JOB_SEQ}"
        " AND a.outcome_code IS NULL ORDER BY a.generation_seq",
        [job_id],
    )


def open_attempts_among(
    store: Store, job_id: str, generation_ids: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The job's open attempts for these variations (result lines' keys), by variation."""
    marks = ", ".join("?" * len(generation_ids))
    # Found by their ids: `+` keeps SQLite from walking all the job's attempts instead.
    rows = store._rows(
        f"SELECT {_ATTEMPT_COLUMNS} {_ATTEMPTS} WHERE r.id IN ({marks})"
        f" AND +a.batch_job_seq = {_JOB_SEQ} AND a.outcome_code IS NULL",
        [*generation_ids, job_id],
    )
    return {str(row["generation_id"]): row for row in rows}


def _open_seqs(store: Store, job_id: str) -> list[int]:
    rows = store.db.execute(
        "SELECT generation_seq FROM attempt_rows WHERE batch_job_seq = ? AND outcome_code IS NULL",
        [job_seq(store, job_id)],
    ).fetchall()
    return [int(seq) for (seq,) in rows]


def open_count(store: Store, job_id: str) -> int:
    """How many of the job's variations still wait for an outcome."""
    (count,) = store.db.execute(
        "SELECT COUNT(*) FROM attempt_rows WHERE batch_job_seq = ? AND outcome_code IS NULL",
        [job_seq(store, job_id)],
    ).fetchone()
    return int(count)


def job_holding(store: Store, generation_id: str) -> str | None:
    """The job whose open attempt holds this variation."""
    row = store.db.execute(
        "SELECT j.id FROM attempt_rows a JOIN batch_job_rows j ON j.seq = a.batch_job_seq"
        " WHERE a.generation_seq = (SELECT seq FROM generation_rows WHERE id = ?)"
        " AND a.outcome_code IS NULL ORDER BY a.attempt_number DESC LIMIT 1",
        [generation_id],
    ).fetchone()
    return str(row[0]) if row else None


def unimported_jobs(store: Store) -> list[dict[str, Any]]:
    """Jobs whose outcome is not in the database yet, oldest first."""
    return store._rows(
        "SELECT * FROM batch_jobs WHERE imported_at IS NULL ORDER BY created_at, id", []
    )


def jobs(store: Store, limit: int | None = None) -> list[dict[str, Any]]:
    """Jobs, newest first."""
    suffix = " LIMIT ?" if limit is not None else ""
    return store._rows(
        f"SELECT * FROM batch_jobs ORDER BY created_at DESC, id DESC{suffix}",
        [limit] if limit is not None else [],
    )


def find_jobs(store: Store, given: str) -> list[dict[str, Any]]:
    """Jobs a user may mean by `given`: its name (`batches/…` or the bare id), its display
    name, or a prefix of imagelingo's id for it."""
    text = given.strip()
    bare = text.removeprefix("batches/")
    local = text.lower().removeprefix(DISPLAY_PREFIX)
    return store._rows(
        "SELECT * FROM batch_jobs WHERE name = ? OR display_name = ?"
        " OR (id >= ? AND id < ?) ORDER BY created_at, id",
        [f"batches/{bare}", text, local, local + "~"],
    )


def variations(store: Store, job_id: str) -> dict[str, int]:
    """The job's variations by their status now (each counted once, by its attempt in it)."""
    rows = store.db.execute(
        "SELECT g.status, COUNT(DISTINCT g.seq) FROM attempt_rows a"
        " JOIN generation_rows g ON g.seq = a.generation_seq WHERE a.batch_job_seq = ?"
        " GROUP BY g.status",
        [job_seq(store, job_id)],
    ).fetchall()
    return {str(status): int(count) for status, count in rows}


def out_dirs(store: Store, job_id: str) -> list[str]:
    """The output folders of the job's variations still waiting for an outcome."""
    rows = store._rows(
        "SELECT DISTINCT t.text AS out_dir FROM attempt_rows a"
        " JOIN generation_rows g ON g.seq = a.generation_seq JOIN texts t ON t.id = g.out_dir_ref"
        " WHERE a.batch_job_seq = ? AND a.outcome_code IS NULL",
        [job_seq(store, job_id)],
    )
    return [str(row["out_dir"]) for row in rows]
