"""The `batch_jobs` table and the attempts of the variations inside each job.

A job is recorded, with its unique display name and one attempt per variation (trigger
`batch`, open until the job's outcome is imported), in one transaction before anything is
uploaded: from then on the variations are `batched`, held by the job rather than a run. The
run waiting for a job or importing it holds it (`collector_run_id`) while its lease lives, so
two processes never import the same job at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagelingo_cli.states import GenerationStatus, JobState, Trigger
from imagelingo_cli.store import Store, new_id, now_iso

__all__ = [
    "DISPLAY_PREFIX",
    "Member",
    "claim_job",
    "find_jobs",
    "hold_members",
    "job",
    "job_holding",
    "jobs",
    "mark_imported",
    "open_attempt",
    "open_attempts",
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
    stamp = now_iso()
    with store.transaction():
        store.db.execute(
            "INSERT INTO batch_jobs (id, display_name, run_id, model, backend, base_url, state,"
            " requests, input_bytes, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        )
        store.db.executemany(
            "INSERT INTO attempts (id, generation_id, run_id, attempt_number, trigger,"
            " started_at, model, batch_job_id)"
            " SELECT ?, id, ?, attempt_count + 1, ?, ?, ?, ? FROM generations WHERE id = ?",
            (
                (new_id(), run_id, Trigger.BATCH, stamp, asked, job_id, generation_id)
                for generation_id, asked in members
            ),
        )
        store.db.executemany(
            "UPDATE generations SET status = ?, attempt_count = attempt_count + 1,"
            " retry_count = attempt_count,"
            " last_retry_at = CASE WHEN attempt_count > 0 THEN ? ELSE last_retry_at END,"
            " updated_at = ? WHERE id = ?",
            (
                (GenerationStatus.BATCHED, stamp, stamp, generation_id)
                for generation_id, _ in members
            ),
        )
    return job(store, job_id)


def job(store: Store, job_id: str) -> dict[str, Any]:
    row = store._row("SELECT * FROM batch_jobs WHERE id = ?", [job_id])
    if row is None:
        raise KeyError(job_id)
    return row


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
            "UPDATE batch_jobs SET ended_at = COALESCE(ended_at, ?) WHERE id = ?",
            [now_iso(), job_id],
        )
    _set(store, job_id, **fields)


def _set(store: Store, job_id: str, **fields: object) -> None:
    columns = ", ".join(f"{name} = ?" for name in fields)
    store.db.execute(
        f"UPDATE batch_jobs SET {columns}, updated_at = ? WHERE id = ?",
        [*fields.values(), now_iso(), job_id],
    )


def mark_imported(store: Store, job_id: str) -> None:
    """Every attempt of the job is closed: nothing more to do with it."""
    stamp = now_iso()
    store.db.execute(
        "UPDATE batch_jobs SET imported_at = COALESCE(imported_at, ?), collector_run_id = NULL,"
        " updated_at = ? WHERE id = ?",
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
            "UPDATE batch_jobs SET collector_run_id = ? WHERE id = ?", [run_id, job_id]
        )
    return None


def hold_members(store: Store, job_id: str, run_id: str) -> None:
    """The importing run holds the job's waiting variations, so `history --run` and
    `retry-failed --run` of the run that imported them find them (the attempts stay the
    submitting run's)."""
    store.db.execute(
        "UPDATE generations SET run_id = ? WHERE id IN"
        " (SELECT generation_id FROM attempts WHERE batch_job_id = ? AND outcome IS NULL)",
        [run_id, job_id],
    )


def release_job(store: Store, job_id: str, run_id: str) -> None:
    store.db.execute(
        "UPDATE batch_jobs SET collector_run_id = NULL WHERE id = ? AND collector_run_id = ?",
        [job_id, run_id],
    )


_ATTEMPT_COLUMNS = (
    "a.id AS attempt_id, a.started_at, a.attempt_number, a.model AS asked_model,"
    " g.id AS generation_id, g.source_path, g.relative_path, g.image_sha256, g.variation,"
    " g.target_language, g.model, g.backend, g.out_dir"
)


def open_attempts(store: Store, job_id: str) -> list[dict[str, Any]]:
    """The job's attempts still waiting for an outcome, with their variations, in the order
    they were recorded."""
    return store._rows(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts a JOIN generations g ON g.id = a.generation_id"
        " WHERE a.batch_job_id = ? AND a.outcome IS NULL ORDER BY a.rowid",
        [job_id],
    )


def open_attempt(store: Store, job_id: str, generation_id: str) -> dict[str, Any] | None:
    """The job's open attempt for this variation (a result line's key), if it has one."""
    return store._row(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts a JOIN generations g ON g.id = a.generation_id"
        " WHERE a.batch_job_id = ? AND a.generation_id = ? AND a.outcome IS NULL",
        [job_id, generation_id],
    )


def open_count(store: Store, job_id: str) -> int:
    """How many of the job's variations still wait for an outcome."""
    (count,) = store.db.execute(
        "SELECT COUNT(*) FROM attempts WHERE batch_job_id = ? AND outcome IS NULL", [job_id]
    ).fetchone()
    return int(count)


def job_holding(store: Store, generation_id: str) -> str | None:
    """The job whose open attempt holds this variation."""
    row = store.db.execute(
        "SELECT batch_job_id FROM attempts WHERE generation_id = ? AND outcome IS NULL"
        " AND batch_job_id IS NOT NULL ORDER BY attempt_number DESC LIMIT 1",
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
        "SELECT g.status, COUNT(DISTINCT g.id) FROM attempts a"
        " JOIN generations g ON g.id = a.generation_id WHERE a.batch_job_id = ? GROUP BY g.status",
        [job_id],
    ).fetchall()
    return {str(status): int(count) for status, count in rows}


def out_dirs(store: Store, job_id: str) -> list[str]:
    """The output folders of the job's variations still waiting for an outcome."""
    rows = store._rows(
        "SELECT DISTINCT g.out_dir FROM attempts a JOIN generations g ON g.id = a.generation_id"
        " WHERE a.batch_job_id = ? AND a.outcome IS NULL",
        [job_id],
    )
    return [str(row["out_dir"]) for row in rows]
