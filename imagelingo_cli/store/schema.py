"""The database schema as sqlite-utils migrations: named functions, applied in order, each in
a transaction and recorded in `_sqlite_migrations`. Never edit one once released; add the next
(and its name to `store.SCHEMA`)."""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("imagelingo")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,           -- running, completed, failed, interrupted
            target_language TEXT,
            model TEXT,
            backend TEXT,                   -- gemini | simulator:<profile>
            options TEXT,                   -- JSON of the options that shaped the run
            summary TEXT,                   -- JSON: counts, credits, what the rate limit did
            pid INTEGER,
            host TEXT
        );
        CREATE TABLE generations (
            id TEXT PRIMARY KEY,
            run_id TEXT REFERENCES runs(id),   -- the run that last worked on it
            source_path TEXT NOT NULL,
            relative_path TEXT NOT NULL,
            image_sha256 TEXT NOT NULL,
            variation INTEGER NOT NULL,
            target_language TEXT NOT NULL,
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            base_url TEXT,
            out_dir TEXT NOT NULL,
            status TEXT NOT NULL,  -- pending running retrying completed failed interrupted abandoned
            output_path TEXT,
            error_code TEXT,
            error_message TEXT,
            retry_count INTEGER NOT NULL DEFAULT 0,
            attempt_count INTEGER NOT NULL DEFAULT 0,
            first_error_at TEXT,
            last_retry_at TEXT,
            is_retryable INTEGER,
            credits_charged INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            completed_at TEXT
        );
        CREATE UNIQUE INDEX generations_key ON generations
            (image_sha256, target_language, model, variation, backend);
        CREATE INDEX generations_updated ON generations (updated_at);
        CREATE INDEX generations_status ON generations (status, updated_at);
        CREATE INDEX generations_failed_code ON generations (error_code) WHERE status = 'failed';
        CREATE INDEX generations_run ON generations (run_id);
        CREATE INDEX generations_output ON generations (output_path);
        CREATE TABLE attempts (
            id TEXT PRIMARY KEY,
            generation_id TEXT NOT NULL REFERENCES generations(id),
            run_id TEXT NOT NULL REFERENCES runs(id),
            attempt_number INTEGER NOT NULL,
            trigger TEXT NOT NULL,          -- auto (process) | manual (retry-failed)
            started_at TEXT NOT NULL,
            finished_at TEXT,
            duration_ms INTEGER,
            outcome TEXT,                   -- NULL while in flight; succeeded failed interrupted
            error_code TEXT,
            error_message TEXT,
            http_status INTEGER,
            api_status TEXT,
            retry_after_ms INTEGER,
            wait_before_next_ms INTEGER,
            prompt_tokens INTEGER,
            output_tokens INTEGER,
            total_tokens INTEGER,
            model_version TEXT
        );
        CREATE UNIQUE INDEX attempts_generation ON attempts (generation_id, attempt_number);
        CREATE INDEX attempts_run ON attempts (run_id);
        CREATE INDEX attempts_code ON attempts (error_code) WHERE outcome = 'failed';
        CREATE VIEW error_logs AS
            SELECT id, generation_id, run_id, error_code, error_message, attempt_number,
                   retry_after_ms, finished_at AS created_at
            FROM attempts WHERE outcome = 'failed';
        """
    )


@migrations()
def m002_output_intent(db: Database) -> None:
    # Where a variation's output is being written and the digest of its bytes, committed
    # before the write: a run killed between the write and its record leaves a file that the
    # next run adopts instead of paying for the translation again. The digest of a written
    # output, and the folders outputs go to, keep imagelingo from taking its own outputs as
    # inputs.
    db.executescript(
        """
        ALTER TABLE generations ADD COLUMN pending_output TEXT;
        ALTER TABLE generations ADD COLUMN pending_output_sha256 TEXT;
        ALTER TABLE generations ADD COLUMN output_sha256 TEXT;
        CREATE INDEX generations_pending_output ON generations (pending_output)
            WHERE pending_output IS NOT NULL;
        CREATE INDEX generations_output_sha256 ON generations (output_sha256)
            WHERE output_sha256 IS NOT NULL;
        CREATE TABLE output_folders (
            path TEXT PRIMARY KEY,
            first_used_at TEXT NOT NULL
        ) WITHOUT ROWID;
        INSERT OR IGNORE INTO output_folders (path, first_used_at)
            SELECT out_dir, MIN(created_at) FROM generations GROUP BY out_dir;
        """
    )


@migrations()
def m003_answer_thoughts_tokens(db: Database) -> None:
    """Thinking tokens of an answer, billed apart from its output tokens."""
    db.execute("ALTER TABLE attempts ADD COLUMN thoughts_tokens INTEGER")


@migrations()
def m004_run_leases(db: Database) -> None:
    # A run renews heartbeat_at while it works; one whose heartbeat is old is dead wherever it
    # ran. An attempt records the model it asked when that is not its variation's own.
    db.executescript(
        """
        ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
        ALTER TABLE attempts ADD COLUMN model TEXT;
        """
    )


@migrations()
def m005_rate_not_retried(db: Database) -> None:
    # Why a failed attempt the policy would retry was not retried ("retry budget of 18 spent
    # in this run"), so that no skipped retry is silent.
    db.execute("ALTER TABLE attempts ADD COLUMN not_retried TEXT")


@migrations()
def m006_batch_jobs(db: Database) -> None:
    # A Batch API job: recorded, with a unique display name, before it is created (creation
    # is not idempotent; after an ambiguous failure the job is found again by that name).
    # Each variation sent in a job has an attempt (trigger `batch`) that names the job.
    db.executescript(
        """
        CREATE TABLE batch_jobs (
            id TEXT PRIMARY KEY,
            display_name TEXT NOT NULL UNIQUE,  -- imagelingo-<id>: how the job is found again
            name TEXT UNIQUE,                   -- batches/<id>, once Google has it
            run_id TEXT NOT NULL REFERENCES runs(id),  -- the run that submitted it
            model TEXT NOT NULL,
            backend TEXT NOT NULL,              -- gemini | simulator:<profile>
            base_url TEXT,
            state TEXT NOT NULL,    -- submitting pending running succeeded failed cancelled
                                    -- expired unknown not_submitted gone
            api_state TEXT,                     -- the state as the API last said it
            requests INTEGER NOT NULL,
            input_bytes INTEGER NOT NULL,
            input_file TEXT,                    -- files/<id> of the uploaded JSONL
            result_file TEXT,                   -- files/batch-<id> of the results
            succeeded_requests INTEGER,         -- batchStats as last seen
            failed_requests INTEGER,
            error_code TEXT,                    -- why the job itself failed, classified
            error_message TEXT,
            collector_run_id TEXT REFERENCES runs(id),  -- the run waiting for it or importing it
            created_at TEXT NOT NULL,
            submitted_at TEXT,                  -- Google accepted it
            ended_at TEXT,                      -- Google finished it
            imported_at TEXT,                   -- its outcome is in the database
            updated_at TEXT NOT NULL
        );
        CREATE INDEX batch_jobs_unimported ON batch_jobs (created_at) WHERE imported_at IS NULL;
        ALTER TABLE attempts ADD COLUMN batch_job_id TEXT REFERENCES batch_jobs(id);
        CREATE INDEX attempts_batch_job ON attempts (batch_job_id, generation_id)
            WHERE batch_job_id IS NOT NULL;
        """
    )


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the pending migrations (the caller holds the write lock)."""
    migrations.apply(Database(conn))
