"""Reads of the database for `history`, `show`, `stats` and `report`, and the one write
`abandon` makes.

Each read finds its rows through an index (tests/test_query_plans.py pins which): a page of
history costs the same at a million variations as at a thousand, and `stats` reads the tallies
kept as the history is written. How attempts fall into rounds: `rounds`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from imagelingo_cli.pathtext import decode_path
from imagelingo_cli.states import RETRYABLE_STATUSES
from imagelingo_cli.store import Store, encoding, retryable, rounds, tallies, variations_of

ABANDONABLE = RETRYABLE_STATUSES


def _dicts(
    store: Store, sql: str, params: Sequence[Any] | dict[str, Any] = ()
) -> list[dict[str, Any]]:
    cursor = store.db.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _prefix_range(prefix: str) -> tuple[str, str]:
    """Ids are lowercase ULIDs ([0-9a-z]); '~' sorts after all of them, so the range is indexed."""
    prefix = prefix.strip().lower()
    return prefix, prefix + "~"


def _run_seq(store: Store, run_id: str) -> int | None:
    row = store.db.execute("SELECT seq FROM runs WHERE id = ?", [run_id]).fetchone()
    return None if row is None else int(row[0])


# --- lookups -------------------------------------------------------------------------------


def find_generations(store: Store, prefix: str, limit: int = 6) -> list[dict[str, Any]]:
    """Variations whose id starts with `prefix` (at most `limit`, oldest first)."""
    low, high = _prefix_range(prefix)
    return _dicts(
        store,
        "SELECT id, relative_path, source_path, variation, target_language, status"
        " FROM generations WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
        [low, high, limit],
    )


def find_runs(store: Store, prefix: str, limit: int = 6) -> list[dict[str, Any]]:
    """Runs whose id starts with `prefix` (at most `limit`, oldest first)."""
    low, high = _prefix_range(prefix)
    return _dicts(
        store,
        "SELECT id, command, started_at, status FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
        [low, high, limit],
    )


# --- history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryFilter:
    errors: bool = False  # only status 'failed'
    run_id: str | None = None  # variations this run worked on (an attempt, or it holds them now)
    codes: tuple[str, ...] = ()  # current error_code among these
    since: str | None = None  # updated_at >= this UTC ISO stamp
    languages: tuple[str, ...] = ()  # target_language among these tags
    limit: int | None = 50  # None: all

    def query(self, *, language_index: bool = True) -> tuple[str, list[Any]]:
        """The FROM and WHERE clauses over `generation_rows g`, and their parameters.
        `language_index` False keeps the languages from choosing the index (the key, which
        leads with the language): a page of a common language is found sooner by walking the
        variations newest first."""
        source, params = variations_of(self.run_id)
        clauses: list[str] = []
        if self.errors:
            clauses.append("g.status = 'failed'")
        if self.codes:
            clauses.append(f"g.error_code IN ({', '.join('?' * len(self.codes))})")
            params += list(self.codes)
        if self.since is not None:
            clauses.append("g.updated_ms >= ?")
            params.append(encoding.ms(self.since))
        if self.languages:
            column = "g.target_language" if language_index else "+g.target_language"
            clauses.append(f"{column} IN ({', '.join('?' * len(self.languages))})")
            params += list(self.languages)
        return source + (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def history(store: Store, filters: HistoryFilter) -> list[dict[str, Any]]:
    """Variations newest first (updated_at), each with its final round: `rounds` (how many),
    `last_position` and `round_max` (None when it has no attempt)."""
    selection, params = filters.query(language_index=not _common_languages(store, filters))
    limit = "" if filters.limit is None else " LIMIT ?"
    if filters.limit is not None:
        params.append(filters.limit)
    page_attempts = """(
        SELECT a.generation_seq AS generation_id, a.attempt_number, r.id AS run_id, a.trigger
        FROM page p CROSS JOIN attempt_rows a ON a.generation_seq = p.seq
        JOIN runs r ON r.seq = a.run_seq)"""
    sql = f"""
        WITH page AS MATERIALIZED (
            SELECT g.seq, g.id, g.updated_ms FROM {selection}
            ORDER BY g.updated_ms DESC, g.seq DESC{limit}
        ),
        {rounds.rounded(page_attempts)},
        last AS (
            SELECT generation_id, round AS rounds, position AS last_position, round_max
            FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY generation_id
                                               ORDER BY attempt_number DESC) AS from_end
                  FROM rounded)
            WHERE from_end = 1
        )
        SELECT d.*, l.rounds, l.last_position, l.round_max,
               (SELECT MAX(id) FROM generation_rows WHERE id < d.id) AS _before,
               (SELECT MIN(id) FROM generation_rows WHERE id > d.id) AS _after
        FROM page p JOIN generations d ON d.id = p.id
        LEFT JOIN last l ON l.generation_id = p.seq
        ORDER BY p.updated_ms DESC, p.seq DESC
    """
    rows = _dicts(store, sql, params)
    for row in rows:
        row["short_id"] = _unique_prefix(row["id"], row.pop("_before"), row.pop("_after"))
    return rows


# Languages holding at least this share of the history are paged by walking it newest first
# (about 1 row in COMMON_SHARE matches); rarer ones are found through the key and sorted.
COMMON_SHARE = 10


def _common_languages(store: Store, filters: HistoryFilter) -> bool:
    """Whether a page of the whole history's variations in `filters.languages` (no run's) is
    found sooner by walking all variations newest first than by sorting those languages'."""
    if not filters.languages or filters.run_id is not None or filters.limit is None:
        return False
    kept = tallies.read(store.db)
    chosen = sum(
        counts["variations"]
        for (_scope, language), counts in kept.languages.items()
        if language in filters.languages
    )
    return chosen * COMMON_SHARE >= kept.totals[tallies.ALL_RUNS]["variations"]


SHORT_ID = 8  # like git: ids are shown by their shortest unique prefix, never under 8


def short_ids(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """Each variation id's shortest unique prefix (at least SHORT_ID characters): what
    `history` shows and every command accepts."""
    shown = {}
    for generation_id in ids:
        (before,) = store.db.execute(
            "SELECT MAX(id) FROM generation_rows WHERE id < ?", [generation_id]
        ).fetchone()
        (after,) = store.db.execute(
            "SELECT MIN(id) FROM generation_rows WHERE id > ?", [generation_id]
        ).fetchone()
        shown[generation_id] = _unique_prefix(generation_id, before, after)
    return shown


def _unique_prefix(text: str, *neighbours: str | None, shortest: int = SHORT_ID) -> str:
    """The shortest prefix of `text` (at least `shortest` long) that no sorted neighbour shares."""
    common = 0
    for other in neighbours:
        if other:
            pairs = zip(text, other, strict=False)
            common = max(common, next((i for i, (a, b) in enumerate(pairs) if a != b), len(text)))
    return text[: max(shortest, common + 1)]


def count_history(store: Store, filters: HistoryFilter) -> int:
    """How many variations match: from the tallies when they hold the answer, else counted
    through the filters' indexes."""
    if not filters.codes and filters.since is None:
        scope = tallies.ALL_RUNS
        if filters.run_id is not None:
            found = _run_seq(store, filters.run_id)
            if found is None:
                return 0
            scope = found
        kept = tallies.read(store.db, scope)
        counted = "failed" if filters.errors else "variations"
        if not filters.languages:
            return int(kept.totals[scope][counted])
        chosen = set(filters.languages)
        return sum(
            int(counts[counted])
            for (_scope, language), counts in kept.languages.items()
            if language in chosen
        )
    selection, params = filters.query()
    (count,) = store.db.execute(f"SELECT COUNT(*) FROM {selection}", params).fetchone()
    return int(count)


# --- show ----------------------------------------------------------------------------------


def variation(store: Store, generation_id: str) -> dict[str, Any]:
    """One variation, with the command of the run that last worked on it (`run_command`)."""
    rows = _dicts(
        store,
        "SELECT d.*, r.command AS run_command FROM generations d"
        " LEFT JOIN runs r ON r.id = d.run_id WHERE d.id = ?",
        [generation_id],
    )
    if not rows:
        raise KeyError(generation_id)
    return rows[0]


def attempts(store: Store, generation_id: str) -> list[dict[str, Any]]:
    """Every attempt of one variation in order, with round, position and round_max, and
    `waited_ms`: the real time from its end to the start of the next attempt of its round
    (the planned wait is `wait_before_next_ms`; the gate, a cooldown or a busy machine can
    make the real one longer)."""
    sql = f"""
        WITH {rounds.rounded("(SELECT * FROM attempts WHERE generation_id = :id)")}
        SELECT r.*, runs.command AS run_command,
               LEAD(r.started_at) OVER w AS next_started_at, LEAD(r.round) OVER w AS next_round
        FROM rounded r
        LEFT JOIN runs ON runs.id = r.run_id
        WINDOW w AS (ORDER BY r.attempt_number)
        ORDER BY r.attempt_number
    """
    rows = _dicts(store, sql, {"id": generation_id})
    for row in rows:
        del row["starts"]
        following, next_round = row.pop("next_started_at"), row.pop("next_round")
        row["waited_ms"] = (
            _between_ms(row["finished_at"], following)
            if following and next_round == row["round"] and row["finished_at"]
            else None
        )
    return rows


def _between_ms(start: str, end: str) -> int:
    def moment(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    return max(0, round((moment(end) - moment(start)).total_seconds() * 1000))


# --- stats ---------------------------------------------------------------------------------


def stats(
    store: Store,
    *,
    run_id: str | None = None,
    since: str | None = None,
    languages: Sequence[str] = (),
) -> dict[str, Any]:
    """Error analytics over a scope (see `tallies` for what each number counts): the
    attempts made in `run_id` and/or started at or after `since` (all attempts when neither
    is given), and the variations they touched or that the run holds without one; only the
    variations in `languages` when some are given. `by_language`: the variations per target
    language.

    Without `since` or `languages` the answer is read from the tallies; with them, it is
    counted from the variations updated since then, or in those languages."""
    found, scope = _facts(store, run_id, since, languages)
    totals = found.totals.get(scope, Counter())
    by_code: list[dict[str, Any]] = [
        {"code": code, **{name: int(counts[name]) for name in tallies.CODE_COUNTS}}
        for (_scope, code), counts in found.codes.items()
        if counts["variations"]
    ]
    by_code.sort(key=lambda row: (-row["failed_attempts"], -row["variations"], row["code"]))
    by_language = [
        {"language": language, **{name: int(counts[name]) for name in tallies.LANGUAGE_COUNTS}}
        for (_scope, language), counts in sorted(found.languages.items())
        if counts["variations"]
    ]
    summary = _summarise(totals, by_code, run_id=run_id, since=since)
    summary["scope"]["languages"] = list(languages)
    summary["by_language"] = by_language
    return summary


def _facts(
    store: Store, run_id: str | None, since: str | None, languages: Sequence[str] = ()
) -> tuple[tallies.Facts, int]:
    """The scope's tallies (read as kept, or counted since a moment or for some languages),
    and the scope's key."""
    run_seq = None if run_id is None else _run_seq(store, run_id)
    if run_id is not None and run_seq is None:
        return tallies.Facts(), tallies.ALL_RUNS
    since_ms = None if since is None else encoding.ms(since)
    if languages:
        return tallies.of_languages(store.db, languages, run_seq, since_ms), tallies.ALL_RUNS
    if since_ms is not None:
        return tallies.since(store.db, since_ms, run_seq), tallies.ALL_RUNS
    scope = tallies.ALL_RUNS if run_seq is None else run_seq
    return tallies.read(store.db, scope), scope


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _summarise(
    totals: Mapping[str, int],
    by_code: list[dict[str, Any]],
    *,
    run_id: str | None,
    since: str | None,
) -> dict[str, Any]:
    def count(name: str) -> int:
        return int(totals.get(name, 0))

    attempted, completed, total = (
        count("attempted"),
        count("attempted_completed"),
        count("attempts"),
    )
    return {
        "scope": {"run_id": run_id, "since": since},
        "variations": {
            name: count(name) for name in tallies.VARIATION_TOTALS if name != "attempted_completed"
        },
        "attempts": {
            "total": total,
            "succeeded": count("attempts_succeeded"),
            "failed": count("attempts_failed"),
            "interrupted": count("attempts_interrupted"),
            "in_flight": count("attempts_in_flight"),
        },
        "first_try_success_rate": _rate(count("first_try_succeeded"), attempted),
        "final_success_rate": _rate(completed, attempted),
        "attempts_per_success": round(total / completed, 2) if completed else None,
        "retry_calls": total - attempted,
        "credits_charged": count("credits"),
        "total_tokens": count("total_tokens"),
        "by_code": by_code,
    }


# --- abandon -------------------------------------------------------------------------------


def abandon(store: Store, generation_ids: Sequence[str]) -> int:
    """Abandon these variations where they are failed or interrupted; returns how many."""
    if not generation_ids:
        return 0
    marks = ", ".join("?" * len(generation_ids))
    with store.transaction():
        chosen = store.db.execute(
            f"SELECT seq FROM generation_rows WHERE id IN ({marks})"
            " AND status IN ('failed', 'interrupted')",
            list(generation_ids),
        ).fetchall()
        seqs = [seq for (seq,) in chosen]
        change = tallies.Change(store.db, seqs)
        store.db.execute(
            "UPDATE generation_rows SET status = 'abandoned', updated_ms = ?"
            " WHERE seq IN (SELECT value FROM json_each(?))",
            [encoding.now_ms(), json.dumps(seqs)],
        )
        change.apply()
    return len(seqs)


def abandonable(store: Store, *, run_id: str | None, codes: Sequence[str]) -> list[dict[str, Any]]:
    """The failed or interrupted variations of a run and/or with one of the codes."""
    return _dicts(store, *retryable(run_id=run_id, codes=codes))


# --- report --------------------------------------------------------------------------------


def last_run(store: Store) -> dict[str, Any] | None:
    """The run started last, or None when there is none."""
    rows = _dicts(store, "SELECT * FROM runs ORDER BY seq DESC LIMIT 1")
    return rows[0] if rows else None


def runs_in_scope(
    store: Store, *, run_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """The run itself, or the runs started since `since` (all runs when neither), oldest first."""
    return _dicts(
        store,
        "SELECT * FROM runs WHERE (:run IS NULL OR id = :run)"
        " AND (:since IS NULL OR started_at >= :since) ORDER BY seq",
        {"run": run_id, "since": since},
    )


def report_variations(store: Store, filters: HistoryFilter) -> list[dict[str, Any]]:
    """Every variation `filters` selects (its limit ignored), as `history` gives them, plus
    `source_file` and `output_file`: the paths as the file system names them."""
    rows = history(store, replace(filters, limit=None))
    for row in rows:
        output = row["output_path"]
        row["source_file"] = decode_path(row["source_path"])
        row["output_file"] = decode_path(output) if output else None
    return rows


def report_attempts(store: Store, filters: HistoryFilter) -> list[dict[str, Any]]:
    """Every attempt of the variations `filters` selects (their whole history, not only the
    scope's), in order, with round, position and round_max."""
    selection, params = replace(filters, limit=None).query()
    chosen = f"(SELECT * FROM attempts WHERE generation_id IN (SELECT g.id FROM {selection}))"
    sql = f"""
        WITH {rounds.rounded(chosen)}
        SELECT * FROM rounded ORDER BY generation_id, attempt_number
    """
    rows = _dicts(store, sql, params)
    for row in rows:
        del row["starts"]
    return rows


def _in_scope(attempt: str) -> str:
    """Whether the attempt row `attempt` is in a report's scope (the parameters `_scope` gives)."""
    return (
        f"(:run IS NULL OR {attempt}.run_seq = :run)"
        f" AND (:since IS NULL OR {attempt}.started_ms >= :since)"
    )


def _scope(store: Store, run_id: str | None, since: str | None) -> tuple[str, dict[str, Any]]:
    """The attempts made in `run_id` and/or started at or after `since` (as in stats), as a
    FROM source `a` over `attempt_rows` found through an index: the run's attempts, or those
    of the variations updated since then (a variation is updated when an attempt starts)."""
    params: dict[str, Any] = {
        "run": None if run_id is None else (_run_seq(store, run_id) or -1),
        "since": None if since is None else encoding.ms(since),
    }
    if since is not None:
        source = (
            "(SELECT a.* FROM generation_rows g CROSS JOIN attempt_rows a"
            f" ON a.generation_seq = g.seq WHERE g.updated_ms >= :since AND {_in_scope('a')}) a"
        )
    elif run_id is not None:
        source = "(SELECT * FROM attempt_rows WHERE run_seq = :run) a"
    else:
        source = "attempt_rows a"
    return source, params


def attempt_times(
    store: Store, *, run_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """The scope's attempts in time order: when, how long, how each ended."""
    source, params = _scope(store, run_id, since)
    return _dicts(
        store,
        "SELECT started_at, finished_at, duration_ms, outcome, error_code, trigger"
        f" FROM {source} ORDER BY started_ms",
        params,
    )


def retries_by_code(
    store: Store, *, run_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """Per error code, the attempts in scope that followed a failure with it: `auto` (within
    a round) and `manual` (retry-failed), most first."""
    source, params = _scope(store, run_id, since)
    return _dicts(
        store,
        f"""
        WITH chosen AS MATERIALIZED (SELECT DISTINCT a.generation_seq AS seq FROM {source}),
        followed AS (
            SELECT a.*, LAG(a.outcome) OVER w AS after_outcome, LAG(a.error_code) OVER w AS code
            FROM chosen c CROSS JOIN attempt_rows a ON a.generation_seq = c.seq
            WINDOW w AS (PARTITION BY a.generation_seq ORDER BY a.attempt_number)
        )
        SELECT code,
               COUNT(*) FILTER (WHERE trigger = 'auto') AS auto,
               COUNT(*) FILTER (WHERE trigger = 'manual') AS manual,
               COUNT(*) AS total
        FROM followed f
        WHERE after_outcome = 'failed' AND {_in_scope("f")}
        GROUP BY code ORDER BY total DESC, code
        """,
        params,
    )


def usage_by_model(
    store: Store,
    *,
    run_id: str | None = None,
    since: str | None = None,
    languages: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Per model asked, backend and price (`batch`: sent through the Batch API, at half
    price), the scope's answers and tokens: `images` (successful answers, one image each),
    `answers` (every attempt that got a billed answer), and token sums. Read from the tallies
    (see `stats`)."""
    found, scope = _facts(store, run_id, since, languages)
    texts = dict(
        store.db.execute(
            "SELECT id, text FROM texts WHERE id IN (SELECT value FROM json_each(?))",
            [json.dumps(sorted({ref for _s, key in found.usage for ref in key[:2]}))],
        ).fetchall()
    )
    rows = [
        {
            "model": texts[model],
            "backend": texts[backend],
            "batch": batch,
            **{name: int(counts[name]) for name in tallies.USAGE_COUNTS},
        }
        for (in_scope, (model, backend, batch)), counts in found.usage.items()
        if in_scope == scope and any(counts.values())
    ]
    return sorted(rows, key=lambda row: (row["model"], row["backend"], row["batch"]))
