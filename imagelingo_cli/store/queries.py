"""Reads of the database for `history`, `show`, `stats` and `report`, and the one write
`abandon` makes.

Rounds: a variation's attempts fall into rounds. A round starts with its first attempt, with
every `manual` attempt (retry-failed), and whenever a different run takes the variation over
(a `process` re-run after an interruption, or `--force`). Within a round attempts are
numbered 1..max, max being 1 + the run's `max_retries` (0 retries with auto-retry off;
2 when the run did not record it): `Attempt 2/3`. The rule is written once, in `_ROUNDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from imagelingo_cli.pathtext import decode_path
from imagelingo_cli.states import RETRYABLE_STATUSES
from imagelingo_cli.store import Store, now_iso

DEFAULT_MAX_ATTEMPTS = 3
ABANDONABLE = RETRYABLE_STATUSES
_ABANDONABLE_SQL = "status IN ('failed', 'interrupted')"

# `{attempts}` is a FROM-clause source of attempts rows. `numbered` gives each its round;
# `rounded` adds position (1-based within the round) and round_max (what the run allowed).
_ROUNDS = """
marked AS (
    SELECT a.*, CASE WHEN a.trigger = 'manual'
                       OR (LAG(a.run_id) OVER w) IS NOT a.run_id THEN 1 ELSE 0 END AS starts
    FROM {attempts} a
    WINDOW w AS (PARTITION BY a.generation_id ORDER BY a.attempt_number)
),
numbered AS (
    SELECT m.*, SUM(m.starts) OVER (PARTITION BY m.generation_id ORDER BY m.attempt_number
                                    ROWS UNBOUNDED PRECEDING) AS round
    FROM marked m
),
rounded AS (
    SELECT n.*,
           ROW_NUMBER() OVER (PARTITION BY n.generation_id, n.round
                              ORDER BY n.attempt_number) AS position,
           CASE WHEN NOT json_valid(r.options) THEN {default}
                WHEN json_extract(r.options, '$.auto_retry') = 0 THEN 1
                ELSE 1 + COALESCE(json_extract(r.options, '$.max_retries'), {default} - 1)
           END AS round_max
    FROM numbered n LEFT JOIN runs r ON r.id = n.run_id
)
"""


# The full histories of the variations a stats scope touched (recovery may lie outside it).
_HISTORIES = """(
    SELECT generation_id, attempt_number, run_id, trigger, outcome, error_code, started_at
    FROM attempts
    WHERE (:run IS NULL AND :since IS NULL) OR generation_id IN (
        SELECT generation_id FROM attempts
        WHERE (:run IS NULL OR run_id = :run) AND (:since IS NULL OR started_at >= :since)))"""


def _rounds(attempts: str) -> str:
    return _ROUNDS.format(attempts=attempts, default=DEFAULT_MAX_ATTEMPTS)


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

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.errors:
            clauses.append("g.status = 'failed'")
        if self.run_id is not None:
            clauses.append(
                "(g.run_id = ? OR g.id IN (SELECT generation_id FROM attempts WHERE run_id = ?))"
            )
            params += [self.run_id, self.run_id]
        if self.codes:
            clauses.append(f"g.error_code IN ({', '.join('?' * len(self.codes))})")
            params += list(self.codes)
        if self.since is not None:
            clauses.append("g.updated_at >= ?")
            params.append(self.since)
        if self.languages:
            clauses.append(f"g.target_language IN ({', '.join('?' * len(self.languages))})")
            params += list(self.languages)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def history(store: Store, filters: HistoryFilter) -> list[dict[str, Any]]:
    """Variations newest first (updated_at), each with its final round: `rounds` (how many),
    `last_position` and `round_max` (None when it has no attempt)."""
    where, params = filters.where()
    limit = "" if filters.limit is None else " LIMIT ?"
    if filters.limit is not None:
        params.append(filters.limit)
    sql = f"""
        WITH page AS MATERIALIZED (
            SELECT g.*, g.rowid AS _order FROM generations g{where}
            ORDER BY g.updated_at DESC, g.rowid DESC{limit}
        ),
        {_rounds("(SELECT a.* FROM page p CROSS JOIN attempts a ON a.generation_id = p.id)")},
        last AS (
            SELECT generation_id, round AS rounds, position AS last_position, round_max
            FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY generation_id
                                               ORDER BY attempt_number DESC) AS from_end
                  FROM rounded)
            WHERE from_end = 1
        )
        SELECT p.*, l.rounds, l.last_position, l.round_max,
               (SELECT MAX(id) FROM generations WHERE id < p.id) AS _before,
               (SELECT MIN(id) FROM generations WHERE id > p.id) AS _after
        FROM page p LEFT JOIN last l ON l.generation_id = p.id
        ORDER BY p.updated_at DESC, p._order DESC
    """
    rows = _dicts(store, sql, params)
    for row in rows:
        row["short_id"] = _unique_prefix(row["id"], row.pop("_before"), row.pop("_after"))
        del row["_order"]
    return rows


SHORT_ID = 8  # like git: ids are shown by their shortest unique prefix, never under 8


def short_ids(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """Each variation id's shortest unique prefix (at least SHORT_ID characters): what
    `history` shows and every command accepts."""
    shown = {}
    for generation_id in ids:
        (before,) = store.db.execute(
            "SELECT MAX(id) FROM generations WHERE id < ?", [generation_id]
        ).fetchone()
        (after,) = store.db.execute(
            "SELECT MIN(id) FROM generations WHERE id > ?", [generation_id]
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
    where, params = filters.where()
    (count,) = store.db.execute(f"SELECT COUNT(*) FROM generations g{where}", params).fetchone()
    return int(count)


# --- show ----------------------------------------------------------------------------------


def variation(store: Store, generation_id: str) -> dict[str, Any]:
    """One variation, with the command of the run that last worked on it (`run_command`)."""
    rows = _dicts(
        store,
        "SELECT g.*, r.command AS run_command FROM generations g"
        " LEFT JOIN runs r ON r.id = g.run_id WHERE g.id = ?",
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
        WITH {_rounds("(SELECT * FROM attempts WHERE generation_id = :id)")}
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


def stats(store: Store, *, run_id: str | None = None, since: str | None = None) -> dict[str, Any]:
    """Error analytics over a scope, all counted in SQL.

    The scope's attempts are those made in `run_id` and/or started at or after `since`
    (all attempts when neither is given). Its variations are those the scope's attempts
    touched, plus variations the run holds (or, with `since`, updated since then) without
    an attempt in scope: those were never sent in scope (not sent after a global stop,
    an unreadable image, an interruption before sending).

    Per error code: `failed_attempts` with it; `variations` it hit (sent and failed with it,
    or never sent and failed with it); these split, by the variation's first failure with
    the code, into `recovered_auto` (a later attempt of the same round succeeded),
    `recovered_manual` (a later round succeeded: retry-failed or a re-run),
    `still_failed`, `abandoned`, and `unfinished` (interrupted or being worked on now).
    """
    params = {"run": run_id, "since": since}
    scope = """
        scoped AS MATERIALIZED (
            SELECT generation_id, attempt_number, outcome, error_code, total_tokens FROM attempts
            WHERE (:run IS NULL OR run_id = :run) AND (:since IS NULL OR started_at >= :since)
        ),
        touched AS MATERIALIZED (SELECT DISTINCT generation_id AS id FROM scoped),
        unsent AS MATERIALIZED (
            SELECT g.id FROM generations g
            WHERE (:run IS NULL OR g.run_id = :run) AND (:since IS NULL OR g.updated_at >= :since)
              AND g.id NOT IN (SELECT id FROM touched)
        ),
        scope_variations AS (SELECT id FROM touched UNION ALL SELECT id FROM unsent)
    """
    overall = _dicts(
        store,
        f"""
        WITH {scope}
        SELECT
            COUNT(*) AS variations,
            COALESCE(SUM(g.status = 'completed'), 0) AS completed,
            COALESCE(SUM(g.status = 'failed'), 0) AS failed,
            COALESCE(SUM(g.status = 'abandoned'), 0) AS abandoned,
            COALESCE(SUM(g.status = 'interrupted'), 0) AS interrupted,
            COALESCE(SUM(g.status IN ('pending', 'running', 'retrying', 'batched')), 0)
                AS in_progress,
            (SELECT COUNT(*) FROM touched) AS attempted,
            (SELECT COUNT(*) FROM touched t JOIN generations g2 ON g2.id = t.id
              WHERE g2.status = 'completed') AS attempted_completed,
            (SELECT COUNT(*) FROM unsent) AS never_sent
        FROM scope_variations v JOIN generations g ON g.id = v.id
        """,
        params,
    )[0]
    attempts_row = _dicts(
        store,
        f"""
        WITH {scope},
        ranked AS (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY generation_id ORDER BY attempt_number)
                      AS nth_in_scope
            FROM scoped
        )
        SELECT
            COUNT(*) AS total,
            COUNT(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
            COUNT(*) FILTER (WHERE outcome = 'failed') AS failed,
            COUNT(*) FILTER (WHERE outcome = 'interrupted') AS interrupted,
            COUNT(*) FILTER (WHERE outcome IS NULL) AS in_flight,
            COALESCE(SUM(total_tokens), 0) AS total_tokens,
            COUNT(*) FILTER (WHERE nth_in_scope = 1 AND outcome = 'succeeded')
                AS first_try_succeeded,
            COUNT(*) FILTER (WHERE outcome = 'succeeded' AND NOT EXISTS (
                SELECT 1 FROM attempts e WHERE e.generation_id = s.generation_id
                AND e.attempt_number < s.attempt_number AND e.outcome = 'succeeded')) AS credits
        FROM ranked s
        """,
        params,
    )[0]
    by_code = _dicts(
        store,
        f"""
        WITH {scope},
        {_rounds(_HISTORIES)},
        ahead AS (  -- round of the first success after each attempt (rounds only grow)
            SELECT r.*,
                   MIN(CASE WHEN r.outcome = 'succeeded' THEN r.round END) OVER (
                       PARTITION BY r.generation_id ORDER BY r.attempt_number
                       ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS success_round
            FROM numbered r
        ),
        failures AS (
            SELECT generation_id, error_code, round, success_round,
                   ROW_NUMBER() OVER same_code AS k, COUNT(*) OVER same_code AS failures
            FROM ahead
            WHERE outcome = 'failed' AND (:run IS NULL OR run_id = :run)
              AND (:since IS NULL OR started_at >= :since)
            WINDOW same_code AS (PARTITION BY generation_id, error_code ORDER BY attempt_number
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ),
        hit AS (
            SELECT generation_id, error_code, failures, round AS failed_round, success_round
            FROM failures WHERE k = 1
            UNION ALL
            SELECT g.id, g.error_code, 0, NULL, NULL
            FROM unsent u JOIN generations g ON g.id = u.id
            WHERE g.error_code IS NOT NULL AND g.status IN ('failed', 'abandoned')
        )
        SELECT
            h.error_code AS code,
            SUM(h.failures) AS failed_attempts,
            COUNT(*) AS variations,
            COUNT(*) FILTER (WHERE h.failed_round IS NULL) AS never_sent,
            COUNT(*) FILTER (WHERE h.success_round = h.failed_round) AS recovered_auto,
            COUNT(*) FILTER (WHERE h.success_round > h.failed_round) AS recovered_manual,
            COUNT(*) FILTER (WHERE h.success_round IS NULL AND g.status = 'failed')
                AS still_failed,
            COUNT(*) FILTER (WHERE h.success_round IS NULL AND g.status = 'abandoned')
                AS abandoned,
            COUNT(*) FILTER (WHERE h.success_round IS NULL
                              AND g.status NOT IN ('failed', 'abandoned')) AS unfinished
        FROM hit h JOIN generations g ON g.id = h.generation_id
        GROUP BY h.error_code
        ORDER BY failed_attempts DESC, variations DESC, code
        """,
        params,
    )
    return _summarise(overall, attempts_row, by_code, run_id=run_id, since=since)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _summarise(
    overall: dict[str, Any],
    tries: dict[str, Any],
    by_code: list[dict[str, Any]],
    *,
    run_id: str | None,
    since: str | None,
) -> dict[str, Any]:
    attempted = int(overall["attempted"])
    completed = int(overall.pop("attempted_completed"))
    total = int(tries["total"])
    return {
        "scope": {"run_id": run_id, "since": since},
        "variations": overall,
        "attempts": {
            k: tries[k] for k in ("total", "succeeded", "failed", "interrupted", "in_flight")
        },
        "first_try_success_rate": _rate(int(tries["first_try_succeeded"]), attempted),
        "final_success_rate": _rate(completed, attempted),
        "attempts_per_success": round(total / completed, 2) if completed else None,
        "retry_calls": total - attempted,
        "credits_charged": int(tries["credits"]),
        "total_tokens": int(tries["total_tokens"]),
        "by_code": by_code,
    }


# --- abandon -------------------------------------------------------------------------------


def abandon(store: Store, generation_ids: Sequence[str]) -> int:
    """Abandon these variations where they are failed or interrupted; returns how many."""
    if not generation_ids:
        return 0
    marks = ", ".join("?" * len(generation_ids))
    with store.transaction():
        cursor = store.db.execute(
            f"UPDATE generations SET status = 'abandoned', updated_at = ?"
            f" WHERE id IN ({marks}) AND {_ABANDONABLE_SQL}",
            [now_iso(), *generation_ids],
        )
    return int(cursor.rowcount)


def abandonable(store: Store, *, run_id: str | None, codes: Sequence[str]) -> list[dict[str, Any]]:
    """The failed or interrupted variations of a run and/or with one of the codes."""
    clauses = [_ABANDONABLE_SQL]
    params: list[Any] = []
    if run_id is not None:
        clauses.append(
            "(run_id = ? OR id IN (SELECT generation_id FROM attempts WHERE run_id = ?))"
        )
        params += [run_id, run_id]
    if codes:
        clauses.append(f"error_code IN ({', '.join('?' * len(codes))})")
        params += list(codes)
    return _dicts(
        store,
        "SELECT id, relative_path, variation, target_language, status, error_code"
        f" FROM generations WHERE {' AND '.join(clauses)} ORDER BY created_at, id",
        params,
    )


# --- report --------------------------------------------------------------------------------

# An attempt in a report's scope: made in :run and/or started at or after :since (as in stats).
_ATTEMPT_IN_SCOPE = (
    "(:run IS NULL OR a.run_id = :run) AND (:since IS NULL OR a.started_at >= :since)"
)


def last_run(store: Store) -> dict[str, Any] | None:
    """The run started last, or None when there is none."""
    rows = _dicts(store, "SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT 1")
    return rows[0] if rows else None


def runs_in_scope(
    store: Store, *, run_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """The run itself, or the runs started since `since` (all runs when neither), oldest first."""
    return _dicts(
        store,
        "SELECT * FROM runs WHERE (:run IS NULL OR id = :run)"
        " AND (:since IS NULL OR started_at >= :since) ORDER BY started_at, id",
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
    where, params = replace(filters, limit=None).where()
    sql = f"""
        WITH {_rounds(f"(SELECT * FROM attempts WHERE generation_id IN (SELECT g.id FROM generations g{where}))")}
        SELECT * FROM rounded ORDER BY generation_id, attempt_number
    """
    rows = _dicts(store, sql, params)
    for row in rows:
        del row["starts"]
    return rows


def attempt_times(
    store: Store, *, run_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """The scope's attempts in time order: when, how long, how each ended."""
    return _dicts(
        store,
        "SELECT started_at, finished_at, duration_ms, outcome, error_code, trigger"
        f" FROM attempts a WHERE {_ATTEMPT_IN_SCOPE} ORDER BY started_at",
        {"run": run_id, "since": since},
    )


def retries_by_code(
    store: Store, *, run_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """Per error code, the attempts in scope that followed a failure with it: `auto` (within
    a round) and `manual` (retry-failed), most first."""
    return _dicts(
        store,
        f"""
        WITH followed AS (
            SELECT a.*, LAG(a.outcome) OVER w AS after_outcome, LAG(a.error_code) OVER w AS code
            FROM attempts a
            WHERE a.generation_id IN (SELECT generation_id FROM attempts a WHERE {_ATTEMPT_IN_SCOPE})
            WINDOW w AS (PARTITION BY a.generation_id ORDER BY a.attempt_number)
        )
        SELECT code,
               COUNT(*) FILTER (WHERE trigger = 'auto') AS auto,
               COUNT(*) FILTER (WHERE trigger = 'manual') AS manual,
               COUNT(*) AS total
        FROM followed a
        WHERE after_outcome = 'failed' AND {_ATTEMPT_IN_SCOPE}
        GROUP BY code ORDER BY total DESC, code
        """,
        {"run": run_id, "since": since},
    )


def usage_by_model(
    store: Store, *, run_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """Per model asked, backend and price (`batch`: sent through the Batch API, at half
    price), the scope's answers and tokens: `images` (successful answers, one image each),
    `answers` (every attempt that got a billed answer), and token sums."""
    return _dicts(
        store,
        f"""
        SELECT COALESCE(a.model, g.model) AS model, g.backend, a.trigger = 'batch' AS batch,
               COUNT(*) FILTER (WHERE a.outcome = 'succeeded') AS images,
               COUNT(*) FILTER (WHERE a.total_tokens IS NOT NULL) AS answers,
               COALESCE(SUM(a.prompt_tokens), 0) AS prompt_tokens,
               COALESCE(SUM(a.output_tokens), 0) AS output_tokens,
               COALESCE(SUM(a.thoughts_tokens), 0) AS thoughts_tokens,
               COALESCE(SUM(a.total_tokens), 0) AS total_tokens
        FROM attempts a JOIN generations g ON g.id = a.generation_id
        WHERE {_ATTEMPT_IN_SCOPE}
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        """,
        {"run": run_id, "since": since},
    )
