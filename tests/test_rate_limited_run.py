"""Whole runs against a per-minute quota and an outage, through the real CLI, google-genai and
the simulator: every variation completes at the quota's pace and the run says the pace; a
retry the budget denies is said in the record, in `show`, in the panel and the summary."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SAMPLES, TEST_KEY, Cli, json_lines, scenario_simulator
from typer.testing import Result

from imagelingo_cli.clock import MonotonicClock
from imagelingo_cli.simulator import Simulator


def distinct_images(folder: Path, count: int) -> Path:
    """`count` copies of a sample, each with its own content (so each is translated)."""
    folder.mkdir()
    source = (SAMPLES / "shop-sign.png").read_bytes()
    for index in range(count):
        (folder / f"sign{index:02d}.png").write_bytes(source + bytes([index]))
    return folder


def real_time_cli(tmp_path: Path) -> Cli:
    """The CLI on the machine's clock, which the simulator's quota and worker threads run on."""
    return Cli(tmp_path, clock=MonotonicClock())  # type: ignore[arg-type]


def process_against_quota(cli: Cli, folder: Path, rpm: int) -> tuple[Result, dict[str, int]]:
    """`imagelingo process FOLDER -c 8` against a simulator enforcing `rpm` requests/minute;
    the result and the simulator's answers by name."""
    with Simulator("rate-limited", rpm=rpm) as sim:
        result = cli(
            "process", str(folder), "--to", "es", "-c", "8", "--base-url", sim.base_url,
            env={"GEMINI_API_KEY": TEST_KEY, "COLUMNS": "200"},
        )  # fmt: skip
        outcomes: dict[str, int] = sim.stats()["outcomes"]
    return result, outcomes


def run_summary(cli: Cli) -> dict[str, object]:
    summary: dict[str, object] = json.loads(cli.rows("SELECT summary FROM runs")[-1]["summary"])
    return summary


def test_a_rate_limited_batch_completes_at_the_quota_and_says_the_pace(tmp_path: Path) -> None:
    """8 images, -c 8, against 120 requests/min stated in Gemini's 429s: all 8 complete, a
    429 only in the opening burst, the pace is shown, and the end suggests --rpm."""
    cli = real_time_cli(tmp_path)
    result, outcomes = process_against_quota(cli, distinct_images(tmp_path / "signs", 8), 120)
    assert result.exit_code == 0, result.output
    assert "8 completed, 0 failed" in result.output
    assert "Rate: quota ≈ 120/min, pacing 1 every 0.5 s" in result.output
    assert "the quota is 120 requests/min" in result.output
    assert "--rpm 117 (or imagelingo settings set rpm 117)" in result.output
    assert outcomes["ok"] == 8 and 1 <= outcomes["rate_limit"] <= 4  # only the opening burst
    rows = cli.rows("SELECT status, attempt_count FROM generations")
    assert {(r["status"], r["attempt_count"] <= 2) for r in rows} == {("completed", True)}
    rate = run_summary(cli)["rate"]
    assert isinstance(rate, dict)
    assert (rate["quota_per_minute"], rate["suggested_rpm"]) == (120, 117)
    assert rate["paced_per_minute"] == 117.6 and rate["retries_denied_by_budget"] == 0


def test_rpm_from_the_settings_paces_from_the_first_request(tmp_path: Path) -> None:
    """settings set rpm 100 against a 120/min quota: not a single 429, no suggestion."""
    cli = real_time_cli(tmp_path)
    assert cli("settings", "set", "rpm", "100").exit_code == 0
    result, outcomes = process_against_quota(cli, distinct_images(tmp_path / "signs", 5), 120)
    assert result.exit_code == 0, result.output
    assert outcomes == {"ok": 5}
    assert "Rate limited" not in result.output
    rate = run_summary(cli)["rate"]
    assert isinstance(rate, dict)
    assert (rate["rpm"], rate["throttled_attempts"], rate["suggested_rpm"]) == (100.0, 0, None)


def test_retry_failed_takes_rpm(cli: Cli, tmp_path: Path) -> None:
    """retry-failed --rpm 30 runs the new round at that cap and records it."""
    folder = distinct_images(tmp_path / "signs", 2)
    rules = [{"responses": ["overloaded"], "then": "ok"}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        env = {"GEMINI_API_KEY": TEST_KEY}
        first = cli("process", str(folder), "--to", "es", "--base-url", sim.base_url, env=env)
        assert first.exit_code == 1, first.output
        again = cli("retry-failed", "--rpm", "30", "--json", env=env)
    assert again.exit_code == 0, again.output
    started = [e for e in json_lines(again.output) if e["event"] == "attempt_started"]
    assert len(started) == 2
    rate = run_summary(cli)["rate"]
    assert isinstance(rate, dict) and rate["rpm"] == 30.0
    assert sorted(cli.clock.sleeps)[-1] >= 2.0  # the second attempt waited for its slot


def test_a_retry_the_budget_denies_is_said_everywhere(cli: Cli, tmp_path: Path) -> None:
    """An outage with 503 auto-retried: retries stop at the budget, and each variation that
    was not retried says why in its attempt record, in `show`, in the panel and the summary."""
    folder = distinct_images(tmp_path / "many", 40)
    with scenario_simulator(tmp_path, {"rules": [{"responses": [], "then": "overloaded"}]}) as sim:
        result = cli(
            "process", str(folder), "--to", "es", "--base-url", sim.base_url,
            "--auto-retry-on", "SERVER_ERROR", env={"GEMINI_API_KEY": TEST_KEY, "COLUMNS": "200"},
        )  # fmt: skip
        requests = sim.stats()["requests"]
    assert result.exit_code == 1
    assert requests <= 40 + 10 + 0.2 * 40  # without the budget: 40 x 3 = 120
    denied = cli.rows(
        "SELECT generation_id, not_retried FROM attempts WHERE not_retried IS NOT NULL"
    )
    rate = run_summary(cli)["rate"]
    assert isinstance(rate, dict)
    assert len(denied) == rate["retries_denied_by_budget"] > 0
    assert all(row["not_retried"].startswith("retry budget of ") for row in denied)
    assert all(row["not_retried"].endswith(" spent in this run") for row in denied)
    assert f"not retried: {denied[0]['not_retried']}" in result.output  # the failure panel
    assert (
        f"{len(denied)} failures not retried: retry budget of {rate['retry_budget']} spent in "
        "this run. Retry them later: imagelingo retry-failed"
    ) in result.output
    shown = cli("show", str(denied[0]["generation_id"]), env={"COLUMNS": "200"})
    assert f"→ not retried: {denied[0]['not_retried']}" in shown.output


def test_an_image_waiting_out_a_backoff_lends_its_slot(tmp_path: Path) -> None:
    """-c 1: while the first image waits 2 s to retry a timeout, the second one is sent."""
    cli = real_time_cli(tmp_path)  # the second image is read in a worker thread, which a
    # virtual clock would not wait for
    folder = distinct_images(tmp_path / "signs", 2)
    first = folder / "sign00.png"
    rules = [{"image": str(first), "responses": ["deadline"]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        result = cli(
            "process", str(folder), "--to", "es", "-c", "1", "--base-url", sim.base_url,
            "--json", env={"GEMINI_API_KEY": TEST_KEY},
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = [
        (e["variation"]["image"], e["attempt"])
        for e in json_lines(result.output)
        if e["event"] == "attempt_started"
    ]
    assert sent == [("sign00.png", 1), ("sign01.png", 1), ("sign00.png", 2)]
