"""`stats`: error analytics computed in SQL, checked against what the attempts table holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Cli
from test_history import CONFIG, QUOTA, RATE, TIMEOUT, Recorder

from imagelingo_cli.states import Trigger
from imagelingo_cli.store import queries

BUCKETS = ("recovered_auto", "recovered_manual", "still_failed", "abandoned", "unfinished")


@pytest.fixture
def rec(cli: Cli) -> Iterator[Recorder]:
    recorder = Recorder(cli.db_path)
    yield recorder
    recorder.store.close()


@pytest.fixture
def runs(rec: Recorder) -> dict[str, str]:
    """A process run with every kind of ending, then a retry-failed run that fixes one."""
    first = rec.run()
    ok = rec.variation(first, "ok.png")
    rec.succeed(ok, first)
    auto = rec.variation(first, "auto.png")  # 429 then success in the same round
    rec.fail(auto, first, RATE, wait_ms=2000)
    rec.succeed(auto, first)
    manual = rec.variation(first, "manual.png")  # 3 x 429, fixed by retry-failed
    for wait in (2000, 4000, None):
        rec.fail(manual, first, RATE, wait_ms=wait)
    stuck = rec.variation(first, "stuck.png")  # 504 then a permanent error
    rec.fail(stuck, first, TIMEOUT, wait_ms=2000)
    rec.fail(stuck, first, CONFIG)
    dropped = rec.variation(first, "dropped.png")  # 429 once, then abandoned
    rec.fail(dropped, first, RATE)
    rec.store.fail_unsent(rec.variation(first, "unsent.png"), QUOTA)
    rec.store.finish_run(first, "failed")
    assert queries.abandon(rec.store, [dropped]) == 1
    second = rec.run("retry-failed")
    rec.retry_round(manual, second)
    rec.fail(manual, second, RATE, wait_ms=2000, trigger=Trigger.MANUAL)
    rec.succeed(manual, second)
    rec.store.finish_run(second, "completed")
    return {"first": first, "second": second}


def stats_json(cli: Cli, *args: str) -> dict[str, Any]:
    result = cli("stats", "--json", *args)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_numbers_add_up_to_the_attempts_table(cli: Cli, runs: dict[str, str]) -> None:
    """Per-code failures sum to the failed attempts; buckets sum to variations hit; credits agree."""
    data = stats_json(cli)
    (failed,) = cli.rows("SELECT COUNT(*) AS n FROM attempts WHERE outcome = 'failed'")
    assert sum(c["failed_attempts"] for c in data["by_code"]) == failed["n"] == 8
    per_code = cli.rows("SELECT error_code, COUNT(*) AS n FROM error_logs GROUP BY error_code")
    assert {c["code"]: c["failed_attempts"] for c in data["by_code"] if c["failed_attempts"]} == {
        r["error_code"]: r["n"] for r in per_code
    }
    for code in data["by_code"]:
        assert sum(code[b] for b in BUCKETS) == code["variations"], code
    totals = cli.rows(
        "SELECT (SELECT COUNT(*) FROM attempts) AS attempts,"
        " (SELECT COUNT(*) FROM attempts WHERE outcome = 'succeeded') AS succeeded,"
        " (SELECT COUNT(*) FROM generations) AS variations,"
        " (SELECT COUNT(DISTINCT generation_id) FROM attempts) AS attempted,"
        " (SELECT SUM(credits_charged) FROM generations) AS credits"
    )[0]
    assert data["attempts"]["total"] == totals["attempts"] == 11
    assert data["attempts"]["succeeded"] == totals["succeeded"]
    assert data["variations"]["variations"] == totals["variations"] == 6
    assert data["retry_calls"] == totals["attempts"] - totals["attempted"] == 6
    assert data["credits_charged"] == totals["credits"] == 3


def test_recovery_is_split_by_auto_and_manual_retry(cli: Cli, runs: dict[str, str]) -> None:
    """RATE_LIMIT: one fixed in its round, one by retry-failed, one abandoned; unsent counted."""
    codes = {c["code"]: c for c in stats_json(cli)["by_code"]}
    rate = codes["RATE_LIMIT"]
    assert (rate["failed_attempts"], rate["variations"]) == (6, 3)
    assert (rate["recovered_auto"], rate["recovered_manual"], rate["abandoned"]) == (1, 1, 1)
    assert codes["TIMEOUT"]["still_failed"] == codes["CONFIG_ERROR"]["still_failed"] == 1
    quota = codes["QUOTA_EXHAUSTED"]
    assert (quota["failed_attempts"], quota["never_sent"], quota["still_failed"]) == (0, 1, 1)


def test_success_rates_and_cost(cli: Cli, runs: dict[str, str]) -> None:
    """First-try 1 of 5 sent, final 3 of 5; 11 attempts for 3 successes."""
    data = stats_json(cli)
    assert data["first_try_success_rate"] == 0.2
    assert data["final_success_rate"] == 0.6
    assert data["attempts_per_success"] == 3.67
    text = cli("stats", env={"COLUMNS": "200"}).output
    assert "first try 20% · final 60%" in text and "RATE_LIMIT" in text


def test_run_scope_counts_that_runs_attempts_and_sees_later_recovery(
    cli: Cli, runs: dict[str, str]
) -> None:
    """--run: only that run's attempts; a failure fixed by a later run counts as manual-fixed."""
    first = stats_json(cli, "--run", runs["first"])
    assert first["attempts"]["total"] == 9
    rate = {c["code"]: c for c in first["by_code"]}["RATE_LIMIT"]
    assert (rate["failed_attempts"], rate["recovered_manual"]) == (5, 1)
    second = stats_json(cli, "--run", runs["second"][:20])
    assert second["attempts"] == {
        "total": 2,
        "succeeded": 1,
        "failed": 1,
        "interrupted": 0,
        "in_flight": 0,
    }
    assert second["variations"]["variations"] == 1 and second["credits_charged"] == 1
    assert {c["code"]: c["recovered_auto"] for c in second["by_code"]} == {"RATE_LIMIT": 1}


def test_empty_database(cli: Cli) -> None:
    """No data: a sentence, and JSON with zero counts and no rates."""
    assert cli("stats").output.strip() == "No variations recorded yet."
    data = stats_json(cli)
    assert data["attempts"]["total"] == 0 and data["by_code"] == []
    assert data["first_try_success_rate"] is None
