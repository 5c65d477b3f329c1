"""Every read a user makes finds its rows through an index: `EXPLAIN QUERY PLAN` of each
statement the real read functions run, on a populated database, walks no whole table of the
history. The only walks allowed are pinned here: an index in the order asked for, stopped by the
page's limit or holding only the rows asked for (a partial index)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import Cli
from test_history import CONFIG, QUOTA, RATE, TIMEOUT, Recorder

from imagelingo_cli.states import Trigger
from imagelingo_cli.store import Store, batch_jobs, open_store_read_only, queries

# How the history's tables are named in the plans (tables, and their aliases in our SQL).
HISTORY_TABLES = {"generation_rows", "attempt_rows", "g", "a", "e"}
_SCAN = re.compile(r"^SCAN (\S+)(?: USING (?:COVERING )?INDEX (\S+))?")


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """Three runs of variations with every kind of ending, written through the Store, and a
    retry-failed run; about 150 variations."""
    cli = Cli(tmp_path_factory.mktemp("plans"))
    rec = Recorder(cli.db_path)
    failed: list[tuple[str, str]] = []
    for number in range(3):
        run = rec.run()
        for index in range(50):
            gid = rec.variation(run, f"run{number}-img{index}.png")
            kind = index % 10
            if kind == 0:
                for wait in (2000, 4000, None):
                    rec.fail(gid, run, RATE, wait_ms=wait)
                failed.append((gid, run))
            elif kind == 1:
                rec.fail(gid, run, TIMEOUT, wait_ms=2000)
                rec.succeed(gid, run)
            elif kind == 2:
                rec.fail(gid, run, CONFIG)
            elif kind == 3:
                rec.store.fail_unsent(gid, QUOTA)
            elif kind == 4:
                rec.interrupt(gid, run)
            else:
                rec.succeed(gid, run)
        rec.store.finish_run(run, "failed")
    later = rec.run("retry-failed")
    for gid, _run in failed[::2]:
        rec.retry_round(gid, later)
        rec.succeed(gid, later, trigger=Trigger.MANUAL)
    queries.abandon(rec.store, [gid for gid, _run in failed[1::4]])
    rec.store.finish_run(later, "completed")
    rec.store.close()
    yield cli


@dataclass(frozen=True)
class Known:
    """Ids the reads ask about, looked up before the plans are watched."""

    run: str
    variation: str

    @classmethod
    def of(cls, store: Store) -> Known:
        (run,) = store.db.execute("SELECT id FROM runs ORDER BY seq LIMIT 1").fetchone()
        (variation,) = store.db.execute(
            "SELECT id FROM generations WHERE status = 'failed' LIMIT 1"
        ).fetchone()
        return cls(run, variation)


Read = Callable[[Store, Known], Any]


def _history(*, of_a_run: bool = False, **filters: Any) -> Read:
    def read(store: Store, known: Known) -> Any:
        chosen = queries.HistoryFilter(run_id=known.run if of_a_run else None, **filters)
        return queries.history(store, chosen), queries.count_history(store, chosen)

    return read


def _report(store: Store, filters: queries.HistoryFilter, **scope: str) -> Any:
    """What `imagelingo report` reads for a scope (the last run's, or since a moment)."""
    return (
        queries.last_run(store),
        queries.runs_in_scope(store, **scope),
        queries.report_variations(store, filters),
        queries.report_attempts(store, filters),
        queries.stats(store, **scope),
        queries.retries_by_code(store, **scope),
        queries.usage_by_model(store, **scope),
        queries.attempt_times(store, **scope),
    )


SINCE = "2026-11-28T20:00:05.000Z"
TABLE = "the table itself"  # an allowed walk of a whole table (the read asks for every row)

# (read, the walks it may make: index names, or TABLE). Everything else must be a SEARCH.
READS: dict[str, tuple[Read, set[str]]] = {
    "history": (_history(), {"generations_updated"}),
    "history --errors": (_history(errors=True), {"generations_failed"}),
    "history --run": (_history(of_a_run=True), set()),
    "history --code": (_history(codes=("RATE_LIMIT", "TIMEOUT")), set()),
    "history --since": (_history(since=SINCE), set()),
    "history --errors --code": (_history(errors=True, codes=("CONFIG_ERROR",)), set()),
    "history --errors --run": (_history(errors=True, of_a_run=True), set()),
    "history --errors --since": (_history(errors=True, since=SINCE), {"generations_failed"}),
    "history --limit 0 (every row)": (_history(limit=None), {TABLE, "generations_updated"}),
    "show": (
        lambda s, k: (queries.variation(s, k.variation), queries.attempts(s, k.variation)),
        set(),
    ),
    "a short id": (lambda s, k: queries.short_ids(s, [k.variation]), set()),
    "an id prefix": (lambda s, k: queries.find_generations(s, k.variation[:9]), set()),
    "stats": (lambda s, k: queries.stats(s), set()),
    "stats --run": (lambda s, k: queries.stats(s, run_id=k.run), set()),
    "stats --since": (lambda s, k: queries.stats(s, since=SINCE), set()),
    "stats --run --since": (lambda s, k: queries.stats(s, run_id=k.run, since=SINCE), set()),
    "abandon --run": (lambda s, k: queries.abandonable(s, run_id=k.run, codes=()), set()),
    "abandon --code": (
        lambda s, k: queries.abandonable(s, run_id=None, codes=("RATE_LIMIT",)),
        {"generations_retryable"},
    ),
    "retry-failed": (lambda s, k: s.select_for_retry(), {"generations_retryable"}),
    "retry-failed ID": (lambda s, k: s.select_for_retry(ids=[k.variation]), set()),
    "retry-failed --run": (lambda s, k: s.select_for_retry(run_id=k.run), set()),
    "retry-failed --code --transient-only": (
        lambda s, k: s.select_for_retry(codes=("TIMEOUT",), transient_only=True),
        {"generations_retryable"},
    ),
    "history --to (most of the history)": (_history(languages=("es",)), {"generations_updated"}),
    "history --to (a rare language)": (_history(languages=("fr",)), set()),
    "stats --to": (lambda s, k: queries.stats(s, languages=("fr",)), set()),
    "stats's spend": (lambda s, k: queries.usage_by_model(s), set()),
    "stats --run's spend": (lambda s, k: queries.usage_by_model(s, run_id=k.run), set()),
    "stats --since's spend": (lambda s, k: queries.usage_by_model(s, since=SINCE), set()),
    "report --run": (
        lambda s, k: _report(s, queries.HistoryFilter(run_id=k.run, limit=None), run_id=k.run),
        set(),
    ),
    "report --since": (
        lambda s, k: _report(s, queries.HistoryFilter(since=SINCE, limit=None), since=SINCE),
        set(),
    ),
    "a variation": (lambda s, k: s.generation(k.variation), set()),
    "an output's owner": (lambda s, k: s.output_owner("/out/some.png"), set()),
    "an output's digest": (lambda s, k: s.is_recorded_output("0" * 64), set()),
}


def plans(store: Store, read: Read) -> list[tuple[str, list[str]]]:
    """Each statement `read` runs, with its EXPLAIN QUERY PLAN lines."""
    known = Known.of(store)
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    try:
        read(store, known)
    finally:
        store.db.set_trace_callback(None)
    found = []
    for sql in statements:
        if re.match(r"\s*(SELECT|WITH)\b", sql, re.IGNORECASE):
            lines = [row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {sql}")]
            found.append((sql, lines))
    return found


def whole_table_walks(store: Store, read: Read, allowed: set[str]) -> list[str]:
    """The plan lines that walk a table of the history, other than the allowed index walks."""
    walks = []
    for sql, lines in plans(store, read):
        for line in lines:
            scan = _SCAN.match(line)
            if scan and scan[1] in HISTORY_TABLES and (scan[2] or TABLE) not in allowed:
                walks.append(f"{line}  <- {' '.join(sql.split())[:300]}")
    return walks


@pytest.mark.parametrize("name", list(READS))
def test_read_uses_indexes(database: Cli, name: str) -> None:
    """The read walks no whole table of generations or attempts (pinned walks aside)."""
    read, allowed = READS[name]
    store = open_store_read_only(database.db_path)
    try:
        assert plans(store, read), "the read ran no query"
        assert whole_table_walks(store, read, allowed) == []
    finally:
        store.close()


def test_a_dropped_index_shows_as_a_walk(database: Cli, tmp_path: Any) -> None:
    """The check fails when an index a read needs is gone: without generations_failed,
    `history --errors` walks the history."""
    copy = tmp_path / "copy.db"
    source = sqlite3.connect(database.db_path)
    source.backup(target := sqlite3.connect(copy))
    source.close()
    target.execute("DROP INDEX generations_failed")
    target.commit()
    target.close()
    store = open_store_read_only(copy)
    try:
        read, allowed = READS["history --errors"]
        assert whole_table_walks(store, read, allowed)
    finally:
        store.close()


def test_a_results_chunk_finds_its_attempts_by_key(tmp_path: Any) -> None:
    """Importing a Batch job's results looks up each chunk's attempts by their keys, never
    by walking all the job's attempts (one walk per chunk made a job's import quadratic)."""
    rec = Recorder(tmp_path / "jobs.db")
    run = rec.run()
    rec.fail(rec.variation(run, "failed.png"), run, RATE)  # what `plans` asks about
    ids = [rec.variation(run, f"img{index}.png") for index in range(300)]
    members = [(gid, None) for gid in ids]
    job = batch_jobs.record_job(
        rec.store, run_id=run, model="m", backend="gemini", base_url=None,
        members=members, input_bytes=2048,
    )  # fmt: skip
    chunk = ids[100:116]
    found = plans(rec.store, lambda s, k: batch_jobs.open_attempts_among(s, job["id"], chunk))
    assert found, "the lookup ran no query"
    for sql, lines in found:
        assert not any("attempts_batch_job" in line for line in lines), (sql, lines)
    assert set(batch_jobs.open_attempts_among(rec.store, job["id"], chunk)) == set(chunk)
    rec.store.close()
