"""The stats, kept current as the history is written, so that `stats` reads a few rows at any
size: `tallies` holds one row of totals per run and one for all runs (`run_seq` 0);
`code_tallies` the same per error code, `language_tallies` the variations per target language,
and `usage_tallies` per model asked, backend and price (the Batch API's or not), what was
billed: the tables are made by migration m008, their columns are TOTALS, CODE_COUNTS,
LANGUAGE_COUNTS and USAGE_COUNTS.

What a tally counts is defined once, as SQL over a set of (scope, variation) candidates:

    facts(db, candidates)        the stats of each scope, counted from the attempts
    contributions(db, seqs)      what these variations add to every tally they are part of
    Change(db, seqs) ... .apply()  a write keeps the tallies true: the variations' contribution
                                 before it is taken off, the one after it is added
    recount(db) / stored(db)     every tally counted from the whole history / as kept
    rebuild(db)                  every tally counted again from the whole history
    read(db, run_seq)            one scope's tallies as `facts` gives them
    since(db, since_ms, run_seq) a scope that starts at a moment, counted through the index of
                                 recent changes: its cost grows with the scope, not the history
    of_languages(db, languages, run_seq, since_ms)  a scope of some target languages, counted
                                 through the index that leads with the language

Usage: per (model asked, backend, sent in a Batch API job) the scope's successful answers
(`images`, one image each), the answers billed (`answers`: every attempt with tokens) and their
tokens, which an estimated spend is priced from.

Scope: the attempts made in the run (all runs: every attempt), and since a moment when asked.
Its variations are those the scope's attempts touched ("sent"), plus those the run holds (or,
since a moment, updated since then) without an attempt in scope ("never sent").

Per error code: `failed_attempts` with it; `variations` it hit (sent and failed with it, or
never sent and failed with it); these split, by the variation's first failure with the code in
scope, into `recovered_auto` (a later attempt of the same round succeeded), `recovered_manual`
(a later round succeeded), `still_failed`, `abandoned`, and `unfinished` (interrupted or being
worked on now); `never_sent` counts those hit before any request.

A variation's `updated_ms` moves forward whenever one of its attempts starts, so a variation
with an attempt since a moment was updated since then: `since` finds its candidates through
the index on `updated_ms` alone.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from imagelingo_cli.store import rounds

ALL_RUNS = 0
K = TypeVar("K")

VARIATION_TOTALS = (
    "variations",
    "completed",
    "failed",
    "abandoned",
    "interrupted",
    "in_progress",
    "attempted",
    "attempted_completed",
    "never_sent",
)
ATTEMPT_TOTALS = (
    "attempts",
    "attempts_succeeded",
    "attempts_failed",
    "attempts_interrupted",
    "attempts_in_flight",
    "total_tokens",
    "first_try_succeeded",
    "credits",
)
TOTALS = VARIATION_TOTALS + ATTEMPT_TOTALS
LANGUAGE_COUNTS = ("variations", "completed", "failed", "abandoned", "interrupted", "in_progress")
USAGE_COUNTS = (
    "images",
    "answers",
    "prompt_tokens",
    "output_tokens",
    "thoughts_tokens",
    "total_tokens",
)
# A usage tally's key: (model_ref, backend_ref, batch), kept in the facts as "model/backend/batch".
UsageKey = tuple[int, int, int]
USAGE_KEYS = ("run_seq", "model_ref", "backend_ref", "batch")
CODE_COUNTS = (
    "failed_attempts",
    "variations",
    "never_sent",
    "recovered_auto",
    "recovered_manual",
    "still_failed",
    "abandoned",
    "unfinished",
)

# A candidate's attempts that are in its scope (`a`: attempts, `c`: candidates).
_IN_SCOPE = (
    "(c.run_seq IS NULL OR a.run_seq = c.run_seq)"
    " AND (c.since_ms IS NULL OR a.started_ms >= c.since_ms)"
)

# `{candidates}` selects (scope, run_seq, since_ms, seq): variation `seq` may count in `scope`,
# whose attempts are those of run `run_seq` (NULL: any) started at `since_ms` or later.
_SCOPE = f"""
candidates(scope, run_seq, since_ms, seq) AS ({{candidates}}),
scoped AS MATERIALIZED (
    SELECT c.scope, a.generation_seq AS seq, a.attempt_number, a.outcome, a.error_code,
           a.prompt_tokens, a.output_tokens, a.thoughts_tokens, a.total_tokens,
           a.model_ref AS asked_ref, a.trigger_code
    FROM candidates c JOIN attempt_rows a ON a.generation_seq = c.seq
    WHERE {_IN_SCOPE}
),
members AS MATERIALIZED (
    SELECT c.scope, g.seq, g.status, g.error_code, g.target_language,
           EXISTS (SELECT 1 FROM attempt_rows a WHERE a.generation_seq = c.seq AND {_IN_SCOPE})
               AS sent
    FROM candidates c JOIN generation_rows g ON g.seq = c.seq
    WHERE sent OR ((c.run_seq IS NULL OR g.run_seq = c.run_seq)
                   AND (c.since_ms IS NULL OR g.updated_ms >= c.since_ms))
)"""

# Each candidate's whole history (rounds and recovery may lie outside its scope), once per scope.
_HISTORIES = f"""(
    SELECT c.scope, a.generation_seq AS generation_id, a.attempt_number, a.run_seq AS run_id,
           a.trigger, a.outcome, a.error_code, {_IN_SCOPE} AS in_scope
    FROM candidates c JOIN attempt_rows a ON a.generation_seq = c.seq)"""

# One statement, three kinds of rows: ('variations', scope, NULL, VARIATION_TOTALS...),
# ('attempts', scope, NULL, ATTEMPT_TOTALS...) and ('code', scope, code, CODE_COUNTS...).
_FACTS = f"""
WITH {_SCOPE},
ranked AS (
    SELECT s.*, ROW_NUMBER() OVER (PARTITION BY s.scope, s.seq ORDER BY s.attempt_number) AS nth
    FROM scoped s
),
{rounds.numbered(_HISTORIES, history="scope, generation_id")},
ahead AS (  -- the round of the first success after each attempt (rounds only grow)
    SELECT n.*, MIN(CASE WHEN n.outcome = 'succeeded' THEN n.round END) OVER (
                    PARTITION BY n.scope, n.generation_id ORDER BY n.attempt_number
                    ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS success_round
    FROM numbered n
),
failures AS (
    SELECT scope, generation_id AS seq, error_code, round, success_round,
           ROW_NUMBER() OVER same_code AS k, COUNT(*) OVER same_code AS failures
    FROM ahead
    WHERE in_scope AND outcome = 'failed'
    WINDOW same_code AS (PARTITION BY scope, generation_id, error_code ORDER BY attempt_number
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
hits AS (
    SELECT scope, seq, error_code, failures, round AS failed_round, success_round
    FROM failures WHERE k = 1
    UNION ALL
    SELECT scope, seq, error_code, 0, NULL, NULL FROM members
    WHERE NOT sent AND error_code IS NOT NULL AND status IN ('failed', 'abandoned')
)
SELECT 'variations', scope, NULL,
       COUNT(*),
       COUNT(*) FILTER (WHERE status = 'completed'),
       COUNT(*) FILTER (WHERE status = 'failed'),
       COUNT(*) FILTER (WHERE status = 'abandoned'),
       COUNT(*) FILTER (WHERE status = 'interrupted'),
       COUNT(*) FILTER (WHERE status IN ('pending', 'running', 'retrying', 'batched')),
       COUNT(*) FILTER (WHERE sent),
       COUNT(*) FILTER (WHERE sent AND status = 'completed'),
       COUNT(*) FILTER (WHERE NOT sent)
FROM members GROUP BY scope
UNION ALL
SELECT 'attempts', scope, NULL,
       COUNT(*),
       COUNT(*) FILTER (WHERE outcome = 'succeeded'),
       COUNT(*) FILTER (WHERE outcome = 'failed'),
       COUNT(*) FILTER (WHERE outcome = 'interrupted'),
       COUNT(*) FILTER (WHERE outcome IS NULL),
       COALESCE(SUM(total_tokens), 0),
       COUNT(*) FILTER (WHERE nth = 1 AND outcome = 'succeeded'),
       COUNT(*) FILTER (WHERE outcome = 'succeeded' AND NOT EXISTS (  -- the one charged
           SELECT 1 FROM attempt_rows e WHERE e.generation_seq = r.seq
           AND e.attempt_number < r.attempt_number AND e.outcome = 'succeeded')),
       NULL
FROM ranked r GROUP BY scope
UNION ALL
SELECT 'code', h.scope, h.error_code,
       SUM(h.failures),
       COUNT(*),
       COUNT(*) FILTER (WHERE h.failed_round IS NULL),
       COUNT(*) FILTER (WHERE h.success_round = h.failed_round),
       COUNT(*) FILTER (WHERE h.success_round > h.failed_round),
       COUNT(*) FILTER (WHERE h.success_round IS NULL AND g.status = 'failed'),
       COUNT(*) FILTER (WHERE h.success_round IS NULL AND g.status = 'abandoned'),
       COUNT(*) FILTER (WHERE h.success_round IS NULL AND g.status NOT IN ('failed', 'abandoned')),
       NULL
FROM hits h JOIN generation_rows g ON g.seq = h.seq
GROUP BY h.scope, h.error_code
UNION ALL
SELECT 'usage', s.scope,
       COALESCE(s.asked_ref, g.model_ref) || '/' || g.backend_ref || '/' || (s.trigger_code = 2),
       COUNT(*) FILTER (WHERE s.outcome = 'succeeded'),
       COUNT(*) FILTER (WHERE s.total_tokens IS NOT NULL),
       COALESCE(SUM(s.prompt_tokens), 0),
       COALESCE(SUM(s.output_tokens), 0),
       COALESCE(SUM(s.thoughts_tokens), 0),
       COALESCE(SUM(s.total_tokens), 0),
       NULL, NULL, NULL
FROM scoped s JOIN generation_rows g ON g.seq = s.seq
GROUP BY 1, 2, 3
UNION ALL
SELECT 'language', scope, target_language,
       COUNT(*),
       COUNT(*) FILTER (WHERE status = 'completed'),
       COUNT(*) FILTER (WHERE status = 'failed'),
       COUNT(*) FILTER (WHERE status = 'abandoned'),
       COUNT(*) FILTER (WHERE status = 'interrupted'),
       COUNT(*) FILTER (WHERE status IN ('pending', 'running', 'retrying', 'batched')),
       NULL, NULL, NULL
FROM members GROUP BY scope, target_language"""

# Every scope a variation counts in: all runs, the run holding it, each run that attempted it.
_OWN_SCOPES = """
    SELECT 0, NULL, NULL, g.seq FROM generation_rows g WHERE g.seq IN ({seqs})
    UNION SELECT g.run_seq, g.run_seq, NULL, g.seq FROM generation_rows g
          WHERE g.seq IN ({seqs}) AND g.run_seq IS NOT NULL
    UNION SELECT a.run_seq, a.run_seq, NULL, a.generation_seq FROM attempt_rows a
          WHERE a.generation_seq IN ({seqs})"""
_LISTED = "SELECT value FROM json_each(:seqs)"
_EVERY = "SELECT seq FROM generation_rows"


@dataclass
class Facts:
    """Per scope (a run's seq, or ALL_RUNS) the TOTALS, per (scope, code) CODE_COUNTS, per
    (scope, language) LANGUAGE_COUNTS and per (scope, usage key) USAGE_COUNTS."""

    totals: dict[int, Counter[str]] = field(default_factory=dict)
    codes: dict[tuple[int, str], Counter[str]] = field(default_factory=dict)
    usage: dict[tuple[int, UsageKey], Counter[str]] = field(default_factory=dict)
    languages: dict[tuple[int, str], Counter[str]] = field(default_factory=dict)

    def minus(self, other: Facts) -> Facts:
        return Facts(
            _subtract(self.totals, other.totals),
            _subtract(self.codes, other.codes),
            _subtract(self.usage, other.usage),
            _subtract(self.languages, other.languages),
        )


def facts(
    db: sqlite3.Connection, candidates: str, params: dict[str, object] | None = None
) -> Facts:
    """The stats of every scope `candidates` (SQL, see `_SCOPE`) names."""
    found = Facts()
    sql = _FACTS.replace("{candidates}", candidates)
    for kind, scope, code, *values in db.execute(sql, params or {}).fetchall():
        if kind == "code":
            found.codes[(scope, code)] = Counter(dict(zip(CODE_COUNTS, values, strict=False)))
        elif kind == "language":
            counts = dict(zip(LANGUAGE_COUNTS, values, strict=False))
            found.languages[(scope, code)] = Counter(counts)
        elif kind == "usage":
            model, backend, batch = (int(part) for part in code.split("/"))
            usage = Counter(dict(zip(USAGE_COUNTS, values, strict=False)))
            if any(usage.values()):  # as `stored` leaves out what counts nothing
                found.usage[(scope, (model, backend, batch))] = usage
        else:
            names = VARIATION_TOTALS if kind == "variations" else ATTEMPT_TOTALS
            counts = dict(zip(names, values, strict=False))
            found.totals.setdefault(scope, Counter()).update(counts)
    return found


def contributions(db: sqlite3.Connection, seqs: Iterable[int]) -> Facts:
    """What the variations `seqs` add to the tallies, in every scope they count in."""
    listed = json.dumps(sorted(set(seqs)))
    return facts(db, _OWN_SCOPES.format(seqs=_LISTED), {"seqs": listed})


class Change:
    """A write to the variations `seqs`: made between this object's creation and `apply()`, in
    one transaction, it moves the tallies by exactly what it changed."""

    def __init__(self, db: sqlite3.Connection, seqs: Iterable[int]) -> None:
        self.db = db
        self.seqs = set(seqs)
        self.before = contributions(db, self.seqs) if self.seqs else Facts()

    def apply(self, *new_seqs: int) -> None:
        """Count the change; `new_seqs`: variations the write created."""
        after = contributions(self.db, self.seqs | set(new_seqs))
        add(self.db, after.minus(self.before))


def add(db: sqlite3.Connection, change: Facts) -> None:
    for scope, counts in change.totals.items():
        _upsert(db, "tallies", ("run_seq",), (scope,), TOTALS, counts)
    for (scope, code), counts in change.codes.items():
        _upsert(db, "code_tallies", ("run_seq", "error_code"), (scope, code), CODE_COUNTS, counts)
    for (scope, key), counts in change.usage.items():
        _upsert(db, "usage_tallies", USAGE_KEYS, (scope, *key), USAGE_COUNTS, counts)
    for (scope, language), counts in change.languages.items():
        keys = ("run_seq", "language")
        _upsert(db, "language_tallies", keys, (scope, language), LANGUAGE_COUNTS, counts)


def recount(db: sqlite3.Connection) -> Facts:
    """Every tally, counted from the whole history."""
    return facts(db, _OWN_SCOPES.format(seqs=_EVERY))


def rebuild(db: sqlite3.Connection) -> None:
    """Count every tally again from the whole history (a migration, a bulk load)."""
    db.execute("DELETE FROM tallies")
    db.execute("DELETE FROM code_tallies")
    db.execute("DELETE FROM usage_tallies")
    db.execute("DELETE FROM language_tallies")
    add(db, recount(db))


def stored(db: sqlite3.Connection) -> Facts:
    """Every tally as the tables hold it (scopes and codes counting nothing left out)."""
    found = Facts()
    for scope, *values in db.execute(f"SELECT run_seq, {', '.join(TOTALS)} FROM tallies"):
        if any(values):
            found.totals[scope] = Counter(dict(zip(TOTALS, values, strict=True)))
    for scope, code, *counts in db.execute(
        f"SELECT run_seq, error_code, {', '.join(CODE_COUNTS)} FROM code_tallies"
    ):
        if any(counts):
            found.codes[(scope, code)] = Counter(dict(zip(CODE_COUNTS, counts, strict=True)))
    for scope, model, backend, batch, *counts in db.execute(
        f"SELECT {', '.join(USAGE_KEYS)}, {', '.join(USAGE_COUNTS)} FROM usage_tallies"
    ):
        if any(counts):
            key = (scope, (model, backend, batch))
            found.usage[key] = Counter(dict(zip(USAGE_COUNTS, counts, strict=True)))
    for scope, language, *counts in db.execute(
        f"SELECT run_seq, language, {', '.join(LANGUAGE_COUNTS)} FROM language_tallies"
    ):
        if any(counts):
            counted = dict(zip(LANGUAGE_COUNTS, counts, strict=True))
            found.languages[(scope, language)] = Counter(counted)
    return found


def read(db: sqlite3.Connection, run_seq: int = ALL_RUNS) -> Facts:
    """One scope's tallies, as `facts` would count them."""
    found = Facts()
    row = db.execute(f"SELECT {', '.join(TOTALS)} FROM tallies WHERE run_seq = ?", [run_seq])
    values = row.fetchone()
    found.totals[run_seq] = Counter(dict(zip(TOTALS, values or (0,) * len(TOTALS), strict=True)))
    rows = db.execute(
        f"SELECT error_code, {', '.join(CODE_COUNTS)} FROM code_tallies"
        " WHERE run_seq = ? AND variations > 0",
        [run_seq],
    )
    for code, *counts in rows:
        found.codes[(run_seq, code)] = Counter(dict(zip(CODE_COUNTS, counts, strict=True)))
    rows = db.execute(
        f"SELECT {', '.join(USAGE_KEYS[1:])}, {', '.join(USAGE_COUNTS)} FROM usage_tallies"
        " WHERE run_seq = ? AND answers + images > 0",
        [run_seq],
    )
    for model, backend, batch, *counts in rows:
        key = (run_seq, (model, backend, batch))
        found.usage[key] = Counter(dict(zip(USAGE_COUNTS, counts, strict=True)))
    rows = db.execute(
        f"SELECT language, {', '.join(LANGUAGE_COUNTS)} FROM language_tallies"
        " WHERE run_seq = ? AND variations > 0",
        [run_seq],
    )
    for language, *counts in rows:
        counted = dict(zip(LANGUAGE_COUNTS, counts, strict=True))
        found.languages[(run_seq, language)] = Counter(counted)
    return found


def since(db: sqlite3.Connection, since_ms: int, run_seq: int | None = None) -> Facts:
    """The stats of the attempts since `since_ms` (of run `run_seq` when given), as one scope
    keyed ALL_RUNS, counted from the variations updated since then."""
    candidates = "SELECT 0, :run, :since, g.seq FROM generation_rows g WHERE g.updated_ms >= :since"
    return facts(db, candidates, {"run": run_seq, "since": since_ms})


def of_languages(
    db: sqlite3.Connection,
    languages: Iterable[str],
    run_seq: int | None = None,
    since_ms: int | None = None,
) -> Facts:
    """The stats of the variations in these target languages (of run `run_seq`, since
    `since_ms`, when given), as one scope keyed ALL_RUNS, counted from those variations: found
    through the key index, which leads with the language."""
    candidates = (
        "SELECT 0, :run, :since, g.seq FROM generation_rows g"
        " WHERE g.target_language IN (SELECT value FROM json_each(:languages))"
        " AND (:since IS NULL OR g.updated_ms >= :since)"
    )
    params: dict[str, object] = {
        "run": run_seq,
        "since": since_ms,
        "languages": json.dumps(sorted(set(languages))),
    }
    return facts(db, candidates, params)


def _subtract(after: dict[K, Counter[str]], before: dict[K, Counter[str]]) -> dict[K, Counter[str]]:
    change: dict[K, Counter[str]] = {}
    for key in after.keys() | before.keys():
        counts = Counter(after.get(key, Counter()))
        counts.subtract(before.get(key, Counter()))
        if any(counts.values()):
            change[key] = counts
    return change


def _upsert(
    db: sqlite3.Connection,
    table: str,
    keys: tuple[str, ...],
    key: tuple[object, ...],
    names: tuple[str, ...],
    counts: Counter[str],
) -> None:
    columns = (*keys, *names)
    db.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        + ", ".join(f"{name} = {name} + excluded.{name}" for name in names),
        [*key, *(counts[name] for name in names)],
    )
