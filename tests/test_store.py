"""The database file: schema from blank, recorded migrations, refusals, WAL, private mode."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from conftest import Cli
from sqlite_utils import Database

from imagelingo_cli.answers import Usage
from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.states import AttemptOutcome, Trigger
from imagelingo_cli.store import SCHEMA, GenerationKey, StoreError, encoding, open_store, tallies
from imagelingo_cli.store.schema import migrations

APPROVED_RECORD = {
    "error_code",
    "error_message",
    "retry_count",
    "first_error_at",
    "last_retry_at",
    "is_retryable",
}


def names(conn: sqlite3.Connection, kind: str) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = ?", [kind]).fetchall()
    return {row[0] for row in rows}


def test_blank_database_gets_the_whole_schema(tmp_path: Path) -> None:
    """Opening a missing file creates the tables, the views that read them whole (generations,
    attempts, batch_jobs, error_logs) and the lookup indexes."""
    path = tmp_path / "new" / "imagelingo.db"
    open_store(path).close()
    conn = sqlite3.connect(path)
    assert names(conn, "table") == {
        "runs",
        "generation_rows",
        "attempt_rows",
        "batch_job_rows",
        "texts",
        "tallies",
        "code_tallies",
        "language_tallies",
        "usage_tallies",
        "output_folders",
        "_sqlite_migrations",
    }
    assert names(conn, "view") == {"generations", "attempts", "batch_jobs", "error_logs"}
    assert {
        "generations_key",
        "generations_updated",
        "generations_failed",
        "generations_code",
        "generations_retryable",
        "generations_run",
        "attempts_run",
        "attempts_batch_job",
        "batch_jobs_unimported",
    } <= names(conn, "index")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(generations)")}
    assert APPROVED_RECORD | {"credits_charged", "updated_at", "output_path", "run_id"} <= columns
    kept = [row[1] for row in conn.execute("PRAGMA table_info(tallies)")]
    assert kept == ["run_seq", *tallies.TOTALS]
    kept = [row[1] for row in conn.execute("PRAGMA table_info(code_tallies)")]
    assert kept == ["run_seq", "error_code", *tallies.CODE_COUNTS]
    kept = [row[1] for row in conn.execute("PRAGMA table_info(language_tallies)")]
    assert kept == ["run_seq", "language", *tallies.LANGUAGE_COUNTS]
    kept = [row[1] for row in conn.execute("PRAGMA table_info(usage_tallies)")]
    assert kept == [*tallies.USAGE_KEYS, *tallies.USAGE_COUNTS]


def test_every_migration_is_recorded_once(tmp_path: Path) -> None:
    """Each named migration appears once in _sqlite_migrations, also after reopening."""
    path = tmp_path / "imagelingo.db"
    open_store(path).close()
    open_store(path).close()
    conn = sqlite3.connect(path)
    recorded = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    assert recorded == [m.name for m in migrations._migrations]
    assert tuple(recorded) == SCHEMA  # the names the store checks without importing the schema
    assert recorded[0] == "m001_initial"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer imagelingo (unknown migration name) raises StoreError."""
    path = tmp_path / "imagelingo.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
            " VALUES ('imagelingo', 'm999_from_the_future', '2030-01-01')"
        )
    with pytest.raises(StoreError, match="newer imagelingo"):
        open_store(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, cli: Cli) -> None:
    """A text file at the database path: StoreError, and exit 2 from a read command."""
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 50)
    with pytest.raises(StoreError, match="not an imagelingo database"):
        open_store(path)
    result = cli("history", "--db", str(path))
    assert result.exit_code == 2 and "not an imagelingo database" in result.output
    assert path.read_text().startswith("these are my notes")


def test_wal_mode_and_private_file(tmp_path: Path) -> None:
    """The database runs in WAL mode and a new file is readable by its owner only."""
    path = tmp_path / "imagelingo.db"
    store = open_store(path)
    try:
        (mode,) = store.db.execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        store.close()


def test_error_logs_has_one_row_per_failed_attempt(tmp_path: Path) -> None:
    """The approved audit trail: every failed attempt with its number, code and server delay."""
    store = open_store(tmp_path / "imagelingo.db")
    run = store.start_run("process", target_language="es", model="m", backend="b", options={})
    key = GenerationKey("sha", "es", "m", 1, "b")
    gid = store.claim_generation(
        key, run_id=run, source_path="/a.png", relative_path="a.png", out_dir="/o", base_url=None
    ).row["id"]
    error = TranslationError(ErrorCode.RATE_LIMIT, "slow down", 429, "RESOURCE_EXHAUSTED", 17000)
    for wait in (2000, None):
        attempt, _ = store.start_attempt(gid, run, "auto")
        store.attempt_failed(attempt, gid, error, duration_ms=5, retry_in_ms=wait)
    rows = store.db.execute(
        "SELECT attempt_number, error_code, retry_after_ms FROM error_logs ORDER BY attempt_number"
    ).fetchall()
    store.close()
    assert rows == [(1, "RATE_LIMIT", 17000), (2, "RATE_LIMIT", 17000)]


def test_a_database_of_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    """A database holding only m001_initial gets the thoughts_tokens column on open; its
    attempts are kept, and answers are stored with their thinking tokens from then on."""
    path = tmp_path / "imagelingo.db"
    conn = sqlite3.connect(path)
    db = Database(conn)
    migrations.apply(db, stop_before="m002_output_intent")
    stamp = "2026-11-28T20:31:02.123Z"
    conn.execute(
        "INSERT INTO runs (id, command, started_at, status) VALUES ('r', 'process', ?, 'done')",
        [stamp],
    )
    conn.execute(
        "INSERT INTO generations (id, run_id, source_path, relative_path, image_sha256,"
        " variation, target_language, model, backend, out_dir, status, attempt_count,"
        " created_at, updated_at)"
        " VALUES ('g', 'r', '/a.png', 'a.png', 'sha', 1, 'es', 'm', 'b', '/o', 'failed', 1,"
        " ?1, ?1)",
        [stamp],
    )
    conn.execute(
        "INSERT INTO attempts (id, generation_id, run_id, attempt_number, trigger, started_at,"
        " total_tokens) VALUES ('a', 'g', 'r', 1, 'auto', ?, 1356)",
        [stamp],
    )
    conn.commit()
    conn.close()

    store = open_store(path)
    try:
        attempt, _ = store.start_attempt("g", "r", "manual")
        usage = Usage(prompt_tokens=1119, thoughts_tokens=240, total_tokens=1359)
        error = TranslationError(ErrorCode.SAFETY_BLOCKED, "IMAGE_SAFETY: no", 200, usage=usage)
        store.attempt_failed(attempt, "g", error, duration_ms=5, retry_in_ms=None)
        rows = store.db.execute(
            "SELECT attempt_number, total_tokens, thoughts_tokens FROM attempts"
            " ORDER BY attempt_number"
        ).fetchall()
    finally:
        store.close()
    assert rows == [(1, 1356, None), (attempt.number, 1359, 240)]


def test_triggers_and_outcomes_are_numbers_read_as_words(tmp_path: Path) -> None:
    """Every trigger and outcome has the number it is stored as, and the attempts view (and
    the table's generated columns) say it in the word of the enum."""
    assert set(encoding.TRIGGERS) == set(Trigger)
    assert set(encoding.OUTCOMES) == set(AttemptOutcome)
    store = open_store(tmp_path / "imagelingo.db")
    try:
        run = store.start_run("process", target_language="es", model="m", backend="b", options={})
        for trigger in Trigger:
            for outcome in AttemptOutcome:
                key = GenerationKey(f"{trigger}-{outcome}", "es", "m", 1, "b")
                gid = store.claim_generation(
                    key, run_id=run, source_path="/a.png", relative_path="a.png", out_dir="/o",
                    base_url=None,
                ).row["id"]  # fmt: skip
                _, number = store.start_attempt(gid, run, trigger)
                store.db.execute(
                    "UPDATE attempt_rows SET outcome_code = ? WHERE attempt_number = ?"
                    " AND generation_seq = (SELECT seq FROM generation_rows WHERE id = ?)",
                    [encoding.OUTCOMES[outcome], number, gid],
                )
                row = store.db.execute(
                    "SELECT trigger, outcome FROM attempts WHERE generation_id = ?", [gid]
                ).fetchone()
                assert row == (trigger.value, outcome.value)
    finally:
        store.close()
