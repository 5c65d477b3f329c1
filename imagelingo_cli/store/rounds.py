"""Rounds: a variation's attempts fall into rounds, written once here as SQL.

A round starts with its first attempt, with every `manual` attempt (retry-failed), and
whenever a different run takes the variation over (a `process` re-run after an interruption,
or `--force`). Within a round attempts are numbered 1..max, max being 1 + the run's
`max_retries` (0 retries with auto-retry off; 2 when the run did not record it): `Attempt 2/3`.
"""

from __future__ import annotations

DEFAULT_MAX_ATTEMPTS = 3

# `{attempts}` is a FROM-clause source with generation_id, attempt_number, run_id and trigger;
# `{history}` the columns that hold one variation's history (its generation_id, and anything
# else that tells copies of it apart). `numbered` gives each attempt its round.
_NUMBERED = """
marked AS (
    SELECT src.*, CASE WHEN src.trigger = 'manual'
                         OR (LAG(src.run_id) OVER w) IS NOT src.run_id THEN 1 ELSE 0 END AS starts
    FROM {attempts} src
    WINDOW w AS (PARTITION BY {history} ORDER BY src.attempt_number)
),
numbered AS (
    SELECT m.*, SUM(m.starts) OVER (PARTITION BY {history} ORDER BY m.attempt_number
                                    ROWS UNBOUNDED PRECEDING) AS round
    FROM marked m
)"""

# `rounded` adds position (1-based within the round) and round_max (what the run allowed);
# `run_id` must be the runs' text id here.
_ROUNDED = """,
rounded AS (
    SELECT n.*,
           ROW_NUMBER() OVER (PARTITION BY n.generation_id, n.round
                              ORDER BY n.attempt_number) AS position,
           CASE WHEN NOT json_valid(r.options) THEN {default}
                WHEN json_extract(r.options, '$.auto_retry') = 0 THEN 1
                ELSE 1 + COALESCE(json_extract(r.options, '$.max_retries'), {default} - 1)
           END AS round_max
    FROM numbered n LEFT JOIN runs r ON r.id = n.run_id
)"""


def numbered(attempts: str, history: str = "generation_id") -> str:
    """CTEs `marked` and `numbered` over the attempts in `attempts`."""
    return _NUMBERED.format(attempts=attempts, history=history)


def rounded(attempts: str) -> str:
    """`numbered`, then `rounded` with each attempt's position and its round's maximum."""
    return numbered(attempts) + _ROUNDED.format(default=DEFAULT_MAX_ATTEMPTS)
