"""A database of the schema before the compact history (m001…m006) opens with this version and
reads the same: the same story is recorded once by this version and once in the old tables as
the old code wrote them; after the upgrade, history, show and stats say the same of both."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from sqlite_utils import Database
from test_history import CONFIG, QUOTA, RATE, TIMEOUT, Recorder

from imagelingo_cli.answers import Usage
from imagelingo_cli.states import Trigger
from imagelingo_cli.store import GenerationKey, batch_jobs, new_id, open_store, queries, tallies
from imagelingo_cli.store.schema import migrations

RUN_COLUMNS = (
    "id, command, started_at, finished_at, status, target_language, model, backend, options,"
    " summary, pid, host, heartbeat_at"
)
GENERATION_COLUMNS = (
    "id, run_id, source_path, relative_path, image_sha256, variation, target_language, model,"
    " backend, base_url, out_dir, status, output_path, error_code, error_message, retry_count,"
    " attempt_count, first_error_at, last_retry_at, is_retryable, credits_charged, created_at,"
    " updated_at, completed_at, pending_output, pending_output_sha256, output_sha256"
)
ATTEMPT_COLUMNS = (
    "generation_id, run_id, attempt_number, trigger, started_at, finished_at, duration_ms,"
    " outcome, error_code, error_message, http_status, api_status, retry_after_ms,"
    " wait_before_next_ms, prompt_tokens, output_tokens, thoughts_tokens, total_tokens,"
    " model_version, model, not_retried, batch_job_id"
)
JOB_COLUMNS = (
    "id, display_name, name, run_id, model, backend, base_url, state, api_state, requests,"
    " input_bytes, input_file, result_file, succeeded_requests, failed_requests, error_code,"
    " error_message, collector_run_id, created_at, submitted_at, ended_at, imported_at,"
    " updated_at"
)


def record_story(path: Path) -> None:
    """Two runs of variations in folders, with every ending, a base URL, a model asked on a
    retry, tokens, an output being written, hex and non-hex digests, a retry not made and why,
    and a Batch API job with one variation imported and one still waiting in it."""
    rec = Recorder(path)
    store = rec.store
    first = rec.run()
    ids = []
    names = ("menus/a.png", "menus/b.png", "signs/c.jpg", "d.webp", "e.png", "f.png", "g.png")
    for index, name in enumerate(names):
        key = GenerationKey(f"{index:064x}" if index % 2 else name, "es", "m", 1, "gemini")
        claim = store.claim_generation(
            key, run_id=first, source_path=f"/home/ana/imgs/{name}", relative_path=name,
            out_dir="/home/ana/out", base_url="http://127.0.0.1:9/" if index == 4 else None,
        )  # fmt: skip
        ids.append(str(claim.row["id"]))
    a, b, c, d, e, f, g = ids
    rec.succeed(a, first)
    for wait in (2000, 4000, None):
        rec.fail(b, first, RATE, wait_ms=wait)
    rec.fail(c, first, TIMEOUT, wait_ms=2000)
    rec.fail(c, first, CONFIG)
    store.fail_unsent(d, QUOTA)
    store.intend_outputs([(e, "/home/ana/out/e.es.v1.png", "cd" * 32)])
    rec.interrupt(e, first)
    attempt, _ = store.start_attempt(f, first, Trigger.AUTO)
    store.attempt_failed(
        attempt, f, RATE, duration_ms=300, retry_in_ms=None, not_retried="the run was stopped"
    )
    job = batch_jobs.record_job(
        store, run_id=first, model="m", backend="gemini", base_url=None,
        members=[(f, None), (g, "other-model")], input_bytes=2048,
    )  # fmt: skip
    batch_jobs.set_created(store, job["id"], "batches/abc")
    opened = batch_jobs.open_attempts_among(store, job["id"], [f])[f]
    store.attempt_succeeded(
        batch_jobs.attempt_of(opened), f, duration_ms=60_000,
        output_path="/home/ana/out/f.es.v1.png", output_sha256="ab" * 32,
        usage=Usage(prompt_tokens=1, output_tokens=2, total_tokens=3, model_version="m-001"),
    )  # fmt: skip
    store.finish_run(first, "failed")
    later = rec.run("retry-failed")
    rec.retry_round(b, later)
    attempt, _ = store.start_attempt(b, later, Trigger.MANUAL, model="other-model")
    store.attempt_succeeded(
        attempt, b, duration_ms=900, output_path="/home/ana/out/menus/b.es.v1.jpg",
        output_sha256="ef" * 32,
        usage=Usage(prompt_tokens=5, output_tokens=6, thoughts_tokens=7, total_tokens=18,
                    model_version="m-001"),
    )  # fmt: skip
    queries.abandon(store, [c])
    store.finish_run(later, "completed")
    store.close()


def as_old_schema(recorded: Path, old: Path) -> None:
    """`recorded`'s rows written into a database of the schema before m005, as the old code
    kept them: every text in its row, ISO times, hex digests, attempts with their own ids."""
    conn = sqlite3.connect(old)
    migrations.apply(Database(conn), stop_before="m007_compact_history")
    conn.execute("ATTACH DATABASE ? AS recorded", [str(recorded)])
    conn.create_function("new_id", 0, new_id)
    conn.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) SELECT {RUN_COLUMNS} FROM recorded.runs ORDER BY seq"
    )
    conn.execute(
        f"INSERT INTO generations ({GENERATION_COLUMNS})"
        f" SELECT {GENERATION_COLUMNS} FROM recorded.generations"
    )
    conn.execute(
        f"INSERT INTO batch_jobs ({JOB_COLUMNS}) SELECT {JOB_COLUMNS} FROM recorded.batch_jobs"
    )
    conn.execute(
        f"INSERT INTO attempts (id, {ATTEMPT_COLUMNS})"
        f" SELECT new_id(), {ATTEMPT_COLUMNS} FROM recorded.attempts"
    )
    conn.commit()
    conn.close()


def readings(cli: Cli, db: Path) -> dict[str, Any]:
    """What the read commands print as JSON about the database at `db`."""

    def run(*args: str) -> Any:
        result = cli(*args, "--db", str(db), "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    runs = [row[0] for row in sqlite3.connect(db).execute("SELECT id FROM runs ORDER BY id")]
    history = run("history", "--limit", "0")
    found: dict[str, Any] = {
        "history": history,
        "errors": run("history", "--errors"),
        "code": run("history", "--code", "RATE_LIMIT", "--code", "QUOTA_EXHAUSTED"),
        "stats": run("stats"),
        "since": run("stats", "--since", "2026-11-28T20:00:01Z"),
    }
    for number, run_id in enumerate(runs):
        found[f"run {number}"] = run("history", "--run", run_id)
        found[f"stats run {number}"] = run("stats", "--run", run_id)
    for row in history:
        found[row["id"]] = run("show", row["id"])
    return found


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "recorded.db"
    record_story(path)
    return path


def test_an_old_database_upgrades_and_reads_the_same(
    cli: Cli, recorded: Path, tmp_path: Path
) -> None:
    """history (filters), show and stats (all, per run, since) of the upgraded database equal
    those of the same story recorded by this version, and so do the tables' own rows."""
    old = tmp_path / "old.db"
    as_old_schema(recorded, old)
    before = readings(cli, recorded)
    after = readings(cli, old)  # the first read migrates the old file
    assert after == before
    assert after["stats"]["variations"]["variations"] == 7 and after["stats"]["by_code"]
    assert {row["status"] for row in after["history"]} >= {"batched", "abandoned", "completed"}
    upgraded, fresh = sqlite3.connect(old), sqlite3.connect(recorded)
    for table in ("generations", "error_logs", "batch_jobs"):
        rows = f"SELECT * FROM {table} ORDER BY 1, 2"
        assert upgraded.execute(rows).fetchall() == fresh.execute(rows).fetchall(), table
    attempts = f"SELECT {ATTEMPT_COLUMNS} FROM attempts ORDER BY 1, 3"
    assert upgraded.execute(attempts).fetchall() == fresh.execute(attempts).fetchall()


def test_the_upgrade_keeps_texts_once_and_counts_the_tallies(
    recorded: Path, tmp_path: Path
) -> None:
    """After the upgrade each folder, model and message is one row of `texts`, and the
    tallies are the count of the history."""
    old = tmp_path / "old.db"
    as_old_schema(recorded, old)
    store = open_store(old)
    try:
        texts = [text for (text,) in store.db.execute("SELECT text FROM texts")]
        assert len(texts) == len(set(texts))
        assert {"/home/ana/imgs/", "/home/ana/out", "m", RATE.message} <= set(texts)
        assert tallies.stored(store.db) == tallies.recount(store.db)
    finally:
        store.close()
