"""The database schema as sqlite-utils migrations: named functions, applied in order, each in
a transaction and recorded in `_sqlite_migrations`. Never edit one once released; add the next
(and its name to `store.SCHEMA`)."""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from imagelingo_cli.store import encoding, tallies

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


# m007: the history in compact form. Text that repeats (folders, models, backends, messages)
# is kept once in `texts` and referred to by number; rows refer to runs, variations and Batch
# API jobs by number; digests are kept as bytes, times as milliseconds and an attempt's
# trigger and outcome as small numbers, shown as hex, ISO-8601 and words by generated columns.
# The rows live in `generation_rows`, `attempt_rows` and `batch_job_rows`; `generations`,
# `attempts` and `batch_jobs` are views that read them whole, with the columns they always
# had. `runs` is built again under a temporary name (renaming it changes the references to it
# too).
_COMPACT_TABLES = """
CREATE TABLE texts (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE       -- a folder, model, backend, base URL or message, once
);
CREATE TABLE runs_m007 (
    seq INTEGER PRIMARY KEY,        -- what generations and attempts refer to
    id TEXT NOT NULL UNIQUE,
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
    host TEXT,
    heartbeat_at TEXT
);
CREATE TABLE batch_job_rows (
    seq INTEGER PRIMARY KEY,        -- what attempts refer to
    id TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL UNIQUE,  -- imagelingo-<id>: how the job is found again
    name TEXT UNIQUE,                   -- batches/<id>, once Google has it
    run_seq INTEGER NOT NULL REFERENCES runs_m007(seq),  -- the run that submitted it
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
    collector_run_seq INTEGER REFERENCES runs_m007(seq),  -- the run waiting for it or importing it
    created_at TEXT NOT NULL,
    submitted_at TEXT,                  -- Google accepted it
    ended_at TEXT,                      -- Google finished it
    imported_at TEXT,                   -- its outcome is in the database
    updated_at TEXT NOT NULL
);
CREATE TABLE generation_rows (
    seq INTEGER PRIMARY KEY,        -- what attempts refer to
    id TEXT NOT NULL UNIQUE,
    run_seq INTEGER REFERENCES runs_m007(seq),  -- the run that last worked on it
    source_folder_ref INTEGER NOT NULL REFERENCES texts(id),  -- source_path = folder || relative_path
    relative_path TEXT NOT NULL,
    image_digest BLOB NOT NULL,
    image_sha256 TEXT GENERATED ALWAYS AS (CASE WHEN typeof(image_digest) = 'blob'
        THEN lower(hex(image_digest)) ELSE image_digest END) VIRTUAL,
    variation INTEGER NOT NULL,
    target_language TEXT NOT NULL,
    model_ref INTEGER NOT NULL REFERENCES texts(id),
    backend_ref INTEGER NOT NULL REFERENCES texts(id),
    base_url_ref INTEGER REFERENCES texts(id),
    out_dir_ref INTEGER NOT NULL REFERENCES texts(id),
    status TEXT NOT NULL,  -- pending running retrying batched completed failed interrupted abandoned
    output_folder_ref INTEGER REFERENCES texts(id),  -- output_path = folder || output_name
    output_name TEXT,
    output_digest BLOB,
    output_sha256 TEXT GENERATED ALWAYS AS (CASE WHEN typeof(output_digest) = 'blob'
        THEN lower(hex(output_digest)) ELSE output_digest END) VIRTUAL,
    pending_output TEXT,
    pending_output_sha256 TEXT,
    error_code TEXT,
    error_message_ref INTEGER REFERENCES texts(id),
    retry_count INTEGER NOT NULL DEFAULT 0,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    is_retryable INTEGER,
    credits_charged INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    completed_ms INTEGER,
    first_error_ms INTEGER,
    last_retry_ms INTEGER,
    created_at TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', created_ms / 1000.0, 'unixepoch')) VIRTUAL,
    updated_at TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', updated_ms / 1000.0, 'unixepoch')) VIRTUAL,
    completed_at TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', completed_ms / 1000.0, 'unixepoch')) VIRTUAL,
    first_error_at TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', first_error_ms / 1000.0, 'unixepoch')) VIRTUAL,
    last_retry_at TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', last_retry_ms / 1000.0, 'unixepoch')) VIRTUAL
);
CREATE TABLE attempt_rows (
    generation_seq INTEGER NOT NULL REFERENCES generation_rows(seq),
    attempt_number INTEGER NOT NULL,
    run_seq INTEGER NOT NULL REFERENCES runs_m007(seq),
    trigger_code INTEGER NOT NULL,  -- 0: auto (process), 1: manual (retry-failed), 2: batch
    trigger TEXT GENERATED ALWAYS AS (CASE trigger_code WHEN 0 THEN 'auto'
        WHEN 1 THEN 'manual' WHEN 2 THEN 'batch' END) VIRTUAL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    started_at TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', started_ms / 1000.0, 'unixepoch')) VIRTUAL,
    finished_at TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', finished_ms / 1000.0, 'unixepoch')) VIRTUAL,
    duration_ms INTEGER,
    outcome_code INTEGER,           -- NULL while in flight; 0: succeeded, 1: failed, 2: interrupted
    outcome TEXT GENERATED ALWAYS AS (CASE outcome_code WHEN 0 THEN 'succeeded'
        WHEN 1 THEN 'failed' WHEN 2 THEN 'interrupted' END) VIRTUAL,
    error_code TEXT,
    error_message_ref INTEGER REFERENCES texts(id),
    http_status INTEGER,
    api_status TEXT,
    retry_after_ms INTEGER,
    wait_before_next_ms INTEGER,
    prompt_tokens INTEGER,
    output_tokens INTEGER,
    thoughts_tokens INTEGER,
    total_tokens INTEGER,
    model_version_ref INTEGER REFERENCES texts(id),
    model_ref INTEGER REFERENCES texts(id),  -- the model asked, when not the variation's own
    not_retried_ref INTEGER REFERENCES texts(id),  -- why a retry the policy allows was not made
    batch_job_seq INTEGER REFERENCES batch_job_rows(seq),  -- the Batch API job that sent it
    PRIMARY KEY (generation_seq, attempt_number)
) WITHOUT ROWID;
"""

_COPY_OLD_ROWS = """
INSERT INTO runs_m007 (id, command, started_at, finished_at, status, target_language, model,
                       backend, options, summary, pid, host, heartbeat_at)
    SELECT id, command, started_at, finished_at, status, target_language, model, backend,
           options, summary, pid, host, heartbeat_at
    FROM runs ORDER BY rowid;
INSERT OR IGNORE INTO texts (text)
    SELECT source_folder(source_path, relative_path) FROM generations
    UNION SELECT model FROM generations UNION SELECT backend FROM generations
    UNION SELECT base_url FROM generations WHERE base_url IS NOT NULL
    UNION SELECT out_dir FROM generations
    UNION SELECT output_folder(output_path) FROM generations WHERE output_path IS NOT NULL
    UNION SELECT error_message FROM generations WHERE error_message IS NOT NULL
    UNION SELECT error_message FROM attempts WHERE error_message IS NOT NULL
    UNION SELECT model_version FROM attempts WHERE model_version IS NOT NULL
    UNION SELECT model FROM attempts WHERE model IS NOT NULL
    UNION SELECT not_retried FROM attempts WHERE not_retried IS NOT NULL;
INSERT INTO batch_job_rows (id, display_name, name, run_seq, model, backend, base_url, state,
        api_state, requests, input_bytes, input_file, result_file, succeeded_requests,
        failed_requests, error_code, error_message, collector_run_seq, created_at, submitted_at,
        ended_at, imported_at, updated_at)
    SELECT j.id, j.display_name, j.name, (SELECT seq FROM runs_m007 WHERE id = j.run_id), j.model,
           j.backend, j.base_url, j.state, j.api_state, j.requests, j.input_bytes, j.input_file,
           j.result_file, j.succeeded_requests, j.failed_requests, j.error_code, j.error_message,
           (SELECT seq FROM runs_m007 WHERE id = j.collector_run_id), j.created_at,
           j.submitted_at, j.ended_at, j.imported_at, j.updated_at
    FROM batch_jobs j ORDER BY j.created_at, j.id;
INSERT INTO generation_rows (id, run_seq, source_folder_ref, relative_path, image_digest,
        variation, target_language, model_ref, backend_ref, base_url_ref, out_dir_ref, status,
        output_folder_ref, output_name, output_digest, pending_output, pending_output_sha256,
        error_code, error_message_ref, retry_count, attempt_count, is_retryable,
        credits_charged, created_ms, updated_ms, completed_ms, first_error_ms, last_retry_ms)
    SELECT g.id, (SELECT seq FROM runs_m007 WHERE id = g.run_id),
           (SELECT id FROM texts WHERE text = source_folder(g.source_path, g.relative_path)),
           g.relative_path, digest(g.image_sha256), g.variation, g.target_language,
           (SELECT id FROM texts WHERE text = g.model),
           (SELECT id FROM texts WHERE text = g.backend),
           (SELECT id FROM texts WHERE text = g.base_url),
           (SELECT id FROM texts WHERE text = g.out_dir), g.status,
           (SELECT id FROM texts WHERE text = output_folder(g.output_path)),
           output_name(g.output_path), digest(g.output_sha256), g.pending_output,
           g.pending_output_sha256, g.error_code,
           (SELECT id FROM texts WHERE text = g.error_message),
           g.retry_count, g.attempt_count, g.is_retryable, g.credits_charged,
           ms(g.created_at), ms(g.updated_at), ms(g.completed_at), ms(g.first_error_at),
           ms(g.last_retry_at)
    FROM generations g ORDER BY g.rowid;
INSERT INTO attempt_rows (generation_seq, attempt_number, run_seq, trigger_code, started_ms,
        finished_ms, duration_ms, outcome_code, error_code, error_message_ref, http_status,
        api_status, retry_after_ms, wait_before_next_ms, prompt_tokens, output_tokens,
        thoughts_tokens, total_tokens, model_version_ref, model_ref, not_retried_ref,
        batch_job_seq)
    SELECT (SELECT seq FROM generation_rows WHERE id = a.generation_id), a.attempt_number,
           (SELECT seq FROM runs_m007 WHERE id = a.run_id),
           CASE a.trigger WHEN 'auto' THEN 0 WHEN 'manual' THEN 1 WHEN 'batch' THEN 2 END,
           ms(a.started_at),
           ms(a.finished_at), a.duration_ms,
           CASE a.outcome WHEN 'succeeded' THEN 0 WHEN 'failed' THEN 1 WHEN 'interrupted' THEN 2 END,
           a.error_code,
           (SELECT id FROM texts WHERE text = a.error_message), a.http_status, a.api_status,
           a.retry_after_ms, a.wait_before_next_ms, a.prompt_tokens, a.output_tokens,
           a.thoughts_tokens, a.total_tokens,
           (SELECT id FROM texts WHERE text = a.model_version),
           (SELECT id FROM texts WHERE text = a.model),
           (SELECT id FROM texts WHERE text = a.not_retried),
           (SELECT seq FROM batch_job_rows WHERE id = a.batch_job_id)
    FROM attempts a;
DROP VIEW error_logs;
DROP TABLE attempts;
DROP TABLE generations;
DROP TABLE batch_jobs;
DROP TABLE runs;
ALTER TABLE runs_m007 RENAME TO runs;
"""

# Each index serves a read (see queries and tests/test_query_plans.py): none of them walks the
# whole history to show a page, and partial ones hold only the rows their read asks for.
_COMPACT_INDEXES_AND_VIEWS = """
CREATE UNIQUE INDEX generations_key ON generation_rows  -- led by the language: --to reads it
    (target_language, image_digest, model_ref, variation, backend_ref);
CREATE INDEX generations_updated ON generation_rows (updated_ms);
CREATE INDEX generations_failed ON generation_rows (updated_ms) WHERE status = 'failed';
CREATE INDEX generations_code ON generation_rows (error_code, updated_ms) WHERE error_code IS NOT NULL;
CREATE INDEX generations_retryable ON generation_rows (created_ms)
    WHERE status IN ('failed', 'interrupted');
CREATE INDEX generations_run ON generation_rows (run_seq);
CREATE INDEX generations_output ON generation_rows (output_name) WHERE output_name IS NOT NULL;
CREATE INDEX generations_output_digest ON generation_rows (substr(output_digest, 1, 8))
    WHERE output_digest IS NOT NULL;
CREATE INDEX generations_pending_output ON generation_rows (pending_output)
    WHERE pending_output IS NOT NULL;
CREATE INDEX attempts_run ON attempt_rows (run_seq);
CREATE INDEX attempts_batch_job ON attempt_rows (batch_job_seq, generation_seq)
    WHERE batch_job_seq IS NOT NULL;
CREATE INDEX batch_jobs_unimported ON batch_job_rows (created_at) WHERE imported_at IS NULL;
CREATE INDEX batch_jobs_created ON batch_job_rows (created_at);
CREATE VIEW generations AS
    SELECT g.id, r.id AS run_id,
           CASE WHEN substr(source.text, -1) IN ('/', '\\') THEN source.text || g.relative_path
                ELSE source.text END AS source_path,
           g.relative_path, g.image_sha256, g.variation, g.target_language,
           model.text AS model, backend.text AS backend, base_url.text AS base_url,
           out_dir.text AS out_dir, g.status, output.text || g.output_name AS output_path,
           g.error_code, message.text AS error_message, g.retry_count, g.attempt_count,
           g.first_error_at, g.last_retry_at, g.is_retryable, g.credits_charged, g.created_at,
           g.updated_at, g.completed_at, g.pending_output, g.pending_output_sha256,
           g.output_sha256
    FROM generation_rows g
    LEFT JOIN runs r ON r.seq = g.run_seq
    JOIN texts source ON source.id = g.source_folder_ref
    JOIN texts model ON model.id = g.model_ref
    JOIN texts backend ON backend.id = g.backend_ref
    LEFT JOIN texts base_url ON base_url.id = g.base_url_ref
    JOIN texts out_dir ON out_dir.id = g.out_dir_ref
    LEFT JOIN texts output ON output.id = g.output_folder_ref
    LEFT JOIN texts message ON message.id = g.error_message_ref;
CREATE VIEW attempts AS
    SELECT g.id AS generation_id, r.id AS run_id, a.attempt_number, a.trigger, a.started_at,
           a.finished_at, a.duration_ms, a.outcome, a.error_code, message.text AS error_message,
           a.http_status, a.api_status, a.retry_after_ms, a.wait_before_next_ms,
           a.prompt_tokens, a.output_tokens, a.thoughts_tokens, a.total_tokens,
           version.text AS model_version, model.text AS model, why.text AS not_retried,
           job.id AS batch_job_id
    FROM attempt_rows a
    JOIN generation_rows g ON g.seq = a.generation_seq
    JOIN runs r ON r.seq = a.run_seq
    LEFT JOIN texts message ON message.id = a.error_message_ref
    LEFT JOIN texts version ON version.id = a.model_version_ref
    LEFT JOIN texts model ON model.id = a.model_ref
    LEFT JOIN texts why ON why.id = a.not_retried_ref
    LEFT JOIN batch_job_rows job ON job.seq = a.batch_job_seq;
CREATE VIEW batch_jobs AS
    SELECT j.id, j.display_name, j.name, submitter.id AS run_id, j.model, j.backend, j.base_url,
           j.state, j.api_state, j.requests, j.input_bytes, j.input_file, j.result_file,
           j.succeeded_requests, j.failed_requests, j.error_code, j.error_message,
           collector.id AS collector_run_id, j.created_at, j.submitted_at, j.ended_at,
           j.imported_at, j.updated_at
    FROM batch_job_rows j
    JOIN runs submitter ON submitter.seq = j.run_seq
    LEFT JOIN runs collector ON collector.seq = j.collector_run_seq;
CREATE VIEW error_logs AS
    SELECT generation_id, run_id, error_code, error_message, attempt_number, retry_after_ms,
           finished_at AS created_at
    FROM attempts WHERE outcome = 'failed';
"""


@migrations()
def m007_compact_history(db: Database) -> None:
    # The old rows are converted by the same functions that write new ones.
    for name, arity, function in (
        ("source_folder", 2, encoding.source_folder),
        ("output_folder", 1, lambda path: encoding.split_path(path)[0] if path else None),
        ("output_name", 1, lambda path: encoding.split_path(path)[1] if path else None),
        ("digest", 1, lambda sha256: encoding.digest(sha256) if sha256 else None),
        ("ms", 1, lambda stamp: encoding.ms(stamp) if stamp else None),
    ):
        db.conn.create_function(name, arity, function, deterministic=True)
    # The old tables refer to one another; each is dropped after those that refer to it, and
    # what is left is checked when the transaction ends.
    db.execute("PRAGMA defer_foreign_keys = ON")
    db.executescript(_COMPACT_TABLES + _COPY_OLD_ROWS + _COMPACT_INDEXES_AND_VIEWS)


@migrations()
def m008_tallies(db: Database) -> None:
    # The stats of every run and of all runs, and what was billed per model, kept current by
    # each write (see `tallies`).
    db.executescript(
        """
        CREATE TABLE tallies (
            run_seq INTEGER PRIMARY KEY,    -- the run (runs.seq), or 0: all runs
            variations INTEGER NOT NULL DEFAULT 0,
            completed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            abandoned INTEGER NOT NULL DEFAULT 0,
            interrupted INTEGER NOT NULL DEFAULT 0,
            in_progress INTEGER NOT NULL DEFAULT 0,
            attempted INTEGER NOT NULL DEFAULT 0,
            attempted_completed INTEGER NOT NULL DEFAULT 0,
            never_sent INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            attempts_succeeded INTEGER NOT NULL DEFAULT 0,
            attempts_failed INTEGER NOT NULL DEFAULT 0,
            attempts_interrupted INTEGER NOT NULL DEFAULT 0,
            attempts_in_flight INTEGER NOT NULL DEFAULT 0,
            total_tokens INTEGER NOT NULL DEFAULT 0,
            first_try_succeeded INTEGER NOT NULL DEFAULT 0,
            credits INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE code_tallies (
            run_seq INTEGER NOT NULL,       -- the run (runs.seq), or 0: all runs
            error_code TEXT NOT NULL,
            failed_attempts INTEGER NOT NULL DEFAULT 0,
            variations INTEGER NOT NULL DEFAULT 0,
            never_sent INTEGER NOT NULL DEFAULT 0,
            recovered_auto INTEGER NOT NULL DEFAULT 0,
            recovered_manual INTEGER NOT NULL DEFAULT 0,
            still_failed INTEGER NOT NULL DEFAULT 0,
            abandoned INTEGER NOT NULL DEFAULT 0,
            unfinished INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_seq, error_code)
        ) WITHOUT ROWID;
        CREATE TABLE language_tallies (
            run_seq INTEGER NOT NULL,       -- the run (runs.seq), or 0: all runs
            language TEXT NOT NULL,         -- a target language tag
            variations INTEGER NOT NULL DEFAULT 0,
            completed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            abandoned INTEGER NOT NULL DEFAULT 0,
            interrupted INTEGER NOT NULL DEFAULT 0,
            in_progress INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_seq, language)
        ) WITHOUT ROWID;
        CREATE TABLE usage_tallies (
            run_seq INTEGER NOT NULL,       -- the run (runs.seq), or 0: all runs
            model_ref INTEGER NOT NULL,     -- the model asked (texts.id)
            backend_ref INTEGER NOT NULL,   -- gemini | simulator:<profile> (texts.id)
            batch INTEGER NOT NULL,         -- 1: sent in a Batch API job (the batch price)
            images INTEGER NOT NULL DEFAULT 0,
            answers INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            thoughts_tokens INTEGER NOT NULL DEFAULT 0,
            total_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_seq, model_ref, backend_ref, batch)
        ) WITHOUT ROWID;
        """
    )
    tallies.rebuild(db.conn)  # counted from the history the database already holds


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the pending migrations (the caller holds the write lock)."""
    migrations.apply(Database(conn))
