"""`imagelingo process` end to end: the real CLI, the real SDK, the simulator, a real database."""

from __future__ import annotations

from pathlib import Path

from conftest import TEST_KEY, Cli, json_lines, scenario_simulator
from PIL import Image

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}


def process(cli: Cli, base_url: str, *args: str) -> tuple[int, str]:
    result = cli("process", *args, "--base-url", base_url, "--to", "es", env=KEY_ENV)
    return result.exit_code, result.output


def generation(cli: Cli, image: str, variation: int = 1) -> dict[str, object]:
    rows = cli.rows(
        "SELECT * FROM generations WHERE source_path LIKE ? AND variation = ?",
        (f"%{image}", variation),
    )
    assert len(rows) == 1, rows
    return rows[0]


def attempts(cli: Cli, generation_id: object) -> list[dict[str, object]]:
    return cli.rows(
        "SELECT * FROM attempts WHERE generation_id = ? ORDER BY attempt_number", (generation_id,)
    )


def test_rate_limit_then_success_waits_the_server_delay(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """A 429 asking for 3 s, then success: 2 attempts, completed, retry_count 1, 3 s waited."""
    rules = [
        {"image": "imgs/cafe-menu.jpg", "responses": [{"fault": "rate_limit", "retry_delay": 3}]}
    ]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        code, output = process(cli, sim.base_url, str(images / "cafe-menu.jpg"))
    assert code == 0, output
    row = generation(cli, "cafe-menu.jpg")
    assert (row["status"], row["retry_count"], row["credits_charged"]) == ("completed", 1, 1)
    tries = attempts(cli, row["id"])
    assert [a["outcome"] for a in tries] == ["failed", "succeeded"]
    assert tries[0]["error_code"] == "RATE_LIMIT" and tries[0]["retry_after_ms"] == 3000
    assert 3000 <= tries[0]["wait_before_next_ms"] <= 3600  # type: ignore[operator]
    assert any(3.0 <= s <= 3.6 for s in cli.clock.sleeps)
    out = Path(str(row["output_path"]))
    assert (
        out.name == "cafe-menu.es.v1.png"
        and Image.open(out).size == Image.open(images / "cafe-menu.jpg").size
    )


def test_timeout_three_times_fails_transient_with_the_full_record(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """504 three times: 3 attempts, failed TIMEOUT, retryable, error dates set, 3 error_logs rows."""
    rules = [{"image": "imgs/shop-sign.png", "responses": ["deadline"] * 3}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        code, output = process(cli, sim.base_url, str(images / "shop-sign.png"))
    assert code == 1
    assert "Failed after 2 retries - Timeout" in output
    row = generation(cli, "shop-sign.png")
    assert (row["status"], row["error_code"], row["is_retryable"], row["retry_count"]) == (
        "failed",
        "TIMEOUT",
        1,
        2,
    )
    assert row["first_error_at"] and row["last_retry_at"] and row["credits_charged"] == 0
    assert len(attempts(cli, row["id"])) == 3
    logs = cli.rows(
        "SELECT * FROM error_logs WHERE generation_id = ? ORDER BY attempt_number", (row["id"],)
    )
    assert [log["attempt_number"] for log in logs] == [1, 2, 3]
    assert all(log["error_message"] == "The request timed out. Please try again." for log in logs)
    first, second = sorted(s for s in cli.clock.sleeps if s >= 1)
    assert 2 <= first <= 2.4 and 4 <= second <= 4.8  # 2 s then 4 s, plus up to 20 % jitter


def test_server_error_is_not_auto_retried_by_default(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """503 with the default auto-retry set: 1 attempt, SERVER_ERROR, transient."""
    rules = [{"image": "imgs/shop-sign.png", "responses": ["overloaded"]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        code, _ = process(cli, sim.base_url, str(images / "shop-sign.png"))
    assert code == 1
    row = generation(cli, "shop-sign.png")
    assert (row["error_code"], row["is_retryable"], row["attempt_count"]) == ("SERVER_ERROR", 1, 1)


def test_server_error_is_retried_when_configured(cli: Cli, images: Path, tmp_path: Path) -> None:
    """--auto-retry-on SERVER_ERROR retries a 503."""
    rules = [{"image": "imgs/shop-sign.png", "responses": ["overloaded"]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        code, _ = process(
            cli, sim.base_url, str(images / "shop-sign.png"), "--auto-retry-on", "SERVER_ERROR"
        )
    assert code == 0
    assert generation(cli, "shop-sign.png")["attempt_count"] == 2


def test_invalid_request_and_no_image_are_permanent_single_attempts(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """A 400 and a NO_IMAGE answer: one attempt each, permanent."""
    rules = [
        {"image": "imgs/shop-sign.png", "responses": ["invalid_argument"]},
        {"image": "imgs/cafe-menu.jpg", "responses": ["no_image"]},
    ]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        code, output = process(cli, sim.base_url, str(images))
    assert code == 1
    assert (
        "Failed - Invalid Request (permanent)" in output
        and "Failed - No Image (permanent)" in output
    )
    bad = generation(cli, "shop-sign.png")
    empty = generation(cli, "cafe-menu.jpg")
    assert (bad["error_code"], bad["is_retryable"], bad["attempt_count"]) == (
        "INVALID_REQUEST",
        0,
        1,
    )
    assert (empty["error_code"], empty["is_retryable"], empty["attempt_count"]) == (
        "NO_IMAGE",
        0,
        1,
    )
    assert generation(cli, "concert-poster.webp")["status"] == "completed"


def test_an_hour_long_retry_delay_is_quota_exhausted_and_stops_the_run(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """A 429 asking for 3600 s: QUOTA_EXHAUSTED at once, nothing else is sent."""
    rules = [{"count": "global", "responses": [{"fault": "rate_limit", "retry_delay": 3600}]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        code, _output = process(
            cli, sim.base_url, str(images), "--variations", "2", "--concurrency", "1"
        )
        assert sim.stats()["requests"] == 1
    assert code == 1
    rows = cli.rows("SELECT status, error_code, error_message FROM generations")
    assert len(rows) == 6
    assert {(r["status"], r["error_code"]) for r in rows} == {("failed", "QUOTA_EXHAUSTED")}
    assert sum(r["error_message"].startswith("not sent: ") for r in rows) == 5
    assert len(cli.rows("SELECT * FROM attempts")) == 1


def test_bad_key_sends_one_request_and_fails_every_variation(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """A bad key: one request, every variation failed CONFIG_ERROR, permanent."""
    from imagelingo_cli.simulator import Simulator

    with Simulator("ok", api_key="the-only-valid-key") as sim:
        code, output = process(
            cli, sim.base_url, str(images), "--variations", "2", "--concurrency", "1"
        )
        assert sim.stats()["requests"] == 1
    assert code == 1
    rows = cli.rows("SELECT status, error_code, is_retryable FROM generations")
    assert rows and all(
        (r["status"], r["error_code"], r["is_retryable"]) == ("failed", "CONFIG_ERROR", 0)
        for r in rows
    )
    assert "API key not valid" in output


def test_corrupt_file_is_recorded_and_the_others_complete(
    cli: Cli, images: Path, simulator: object
) -> None:
    """A truncated PNG among good images: INVALID_TYPE, never sent; the rest complete."""
    data = (images / "shop-sign.png").read_bytes()
    (images / "broken.png").write_bytes(data[: len(data) // 2])
    code, _output = process(cli, simulator.base_url, str(images))  # type: ignore[attr-defined]
    assert code == 1
    broken = generation(cli, "broken.png")
    assert (broken["status"], broken["error_code"], broken["attempt_count"]) == (
        "failed",
        "INVALID_TYPE",
        0,
    )
    assert "broken.png" in str(broken["error_message"])
    statuses = [
        r["status"]
        for r in cli.rows("SELECT status FROM generations WHERE source_path NOT LIKE '%broken.png'")
    ]
    assert statuses == ["completed"] * 3


def test_second_run_resumes_and_sends_nothing(cli: Cli, images: Path, simulator: object) -> None:
    """A second identical run skips every completed variation without a request."""
    sim = simulator
    code, _ = process(cli, sim.base_url, str(images), "--variations", "2")  # type: ignore[attr-defined]
    assert code == 0
    sent = sim.stats()["requests"]  # type: ignore[attr-defined]
    assert sent == 6
    code, output = process(cli, sim.base_url, str(images), "--variations", "2")  # type: ignore[attr-defined]
    assert code == 0
    assert sim.stats()["requests"] == sent  # type: ignore[attr-defined]
    assert output.count("already completed") == 6
    assert cli.rows("SELECT SUM(credits_charged) AS c FROM generations")[0]["c"] == 6


def test_json_output_is_only_json_lines(cli: Cli, images: Path, simulator: object) -> None:
    """--json prints JSON lines only, ending with the summary."""
    code, output = process(cli, simulator.base_url, str(images), "--json")  # type: ignore[attr-defined]
    assert code == 0
    events = json_lines(output)
    assert events[0]["event"] == "batch_started"
    assert events[-1]["event"] == "batch_finished"
    assert events[-1]["completed"] == 3
    assert events[-1]["credits_charged"] == 3
    assert {e["event"] for e in events} >= {"attempt_started", "variation_completed"}


def test_concurrency_overlaps_and_never_exceeds_the_limit(cli: Cli, tmp_path: Path) -> None:
    """With latency, requests overlap, but never more than --concurrency at once."""
    from conftest import SAMPLES

    from imagelingo_cli.simulator import Simulator

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(6):
        (folder / f"img{i}.png").write_bytes((SAMPLES / "shop-sign.png").read_bytes())
    with Simulator("ok", latency=0.2) as sim:
        code, _ = process(
            cli, sim.base_url, str(folder / "img0.png"), "--variations", "8", "--concurrency", "3"
        )
        stats = sim.stats()
    assert code == 0
    assert stats["requests"] == 8
    assert 1 < stats["max_in_flight"] <= 3


def test_no_key_and_no_simulator_is_a_setup_error(cli: Cli, images: Path) -> None:
    """Without GEMINI_API_KEY or --simulate: exit 2, a hint, no run recorded."""
    result = cli("process", str(images))
    assert result.exit_code == 2
    assert "GEMINI_API_KEY" in result.output and "--simulate" in result.output
    assert not cli.db_path.exists() or not cli.rows("SELECT * FROM runs")


def test_simulate_needs_no_key(cli: Cli, images: Path) -> None:
    """--simulate ok runs the built-in simulator in-process without a key."""
    result = cli("process", str(images), "--simulate", "ok", "--to", "fr")
    assert result.exit_code == 0, result.output
    rows = cli.rows("SELECT backend, status, output_path FROM generations")
    assert {(r["backend"], r["status"]) for r in rows} == {("simulator:ok", "completed")}
    assert all(".fr.v1." in r["output_path"] for r in rows)
