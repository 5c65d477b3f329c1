"""`imagelingo retry-failed` end to end: only failed variations are sent again, as they were made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY, Cli, json_lines, scenario_simulator

from imagelingo_cli.simulator import Simulator

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}


@pytest.fixture
def mixed_run(cli: Cli, images: Path, tmp_path: Path) -> Iterator[Sent]:
    """A process run where cafe-menu v1 got a 503 (transient) and shop-sign v1 a 400 (permanent)."""
    rules = [
        {"image": "imgs/cafe-menu.jpg", "variation": 1, "responses": ["overloaded"]},
        {"image": "imgs/shop-sign.png", "variation": 1, "responses": ["invalid_argument"]},
    ]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        result = cli(
            "process", str(images), "-n", "2", "--to", "de", "--base-url", sim.base_url, env=KEY_ENV
        )
        assert result.exit_code == 1, result.output
        yield Sent(sim, sim.stats())


class Sent:
    """Requests the simulator received after the first run."""

    def __init__(self, sim: Simulator, baseline: dict[str, Any]) -> None:
        self.sim = sim
        self.baseline = baseline

    def requests(self) -> int:
        return int(self.sim.stats()["requests"]) - int(self.baseline["requests"])

    def keys_sent(self) -> dict[str, int]:
        now = self.sim.stats()["by_key"]
        return {
            k: n - self.baseline["by_key"].get(k, 0)
            for k, n in now.items()
            if n > self.baseline["by_key"].get(k, 0)
        }


def failed_ids(cli: Cli) -> dict[str, str]:
    rows = cli.rows("SELECT id, source_path, error_code FROM generations WHERE status = 'failed'")
    return {Path(r["source_path"]).name: r["id"] for r in rows}


def test_retries_only_the_failed_variations(cli: Cli, mixed_run: Sent) -> None:
    """Only the two failed variations are sent; they complete; attempts continue; 1 credit each."""
    before = cli.rows("SELECT id, credits_charged FROM generations WHERE status = 'completed'")
    result = cli("retry-failed", env=KEY_ENV)
    assert result.exit_code == 0, result.output
    assert mixed_run.requests() == 2
    assert sorted(int(key.split(":")[1]) for key in mixed_run.keys_sent()) == [1, 1]
    rows = cli.rows("SELECT status, attempt_count, credits_charged FROM generations")
    assert {r["status"] for r in rows} == {"completed"}
    assert sum(r["credits_charged"] for r in rows) == 6
    after = cli.rows("SELECT id, credits_charged FROM generations")
    assert all(row in after for row in before)
    retried = cli.rows(
        "SELECT attempt_number, trigger, run_id FROM attempts WHERE attempt_number = 2"
    )
    assert len(retried) == 2 and {r["trigger"] for r in retried} == {"manual"}
    runs = cli.rows("SELECT command FROM runs ORDER BY started_at")
    assert [r["command"] for r in runs] == ["process", "retry-failed"]


def test_code_filter_selects_only_that_code(cli: Cli, mixed_run: Sent) -> None:
    """--code SERVER_ERROR retries the 503 only."""
    result = cli("retry-failed", "--code", "SERVER_ERROR", env=KEY_ENV)
    assert result.exit_code == 0, result.output
    assert mixed_run.requests() == 1
    remaining = cli.rows("SELECT error_code FROM generations WHERE status = 'failed'")
    assert [r["error_code"] for r in remaining] == ["INVALID_REQUEST"]


def test_transient_only_leaves_permanent_failures(cli: Cli, mixed_run: Sent) -> None:
    """--transient-only skips the permanent 400."""
    result = cli("retry-failed", "--transient-only", env=KEY_ENV)
    assert result.exit_code == 0, result.output
    assert mixed_run.requests() == 1
    assert failed_ids(cli).keys() == {"shop-sign.png"}


def test_dry_run_sends_nothing(cli: Cli, mixed_run: Sent) -> None:
    """--dry-run lists the two failures and sends nothing."""
    result = cli("retry-failed", "--dry-run", "--json", env=KEY_ENV)
    assert result.exit_code == 0
    payload = json_lines(result.output)[0]
    assert payload["event"] == "dry_run" and len(payload["would_send"]) == 2
    assert mixed_run.requests() == 0
    assert len(cli.rows("SELECT * FROM runs")) == 1


def test_one_generation_by_id_prefix(cli: Cli, mixed_run: Sent) -> None:
    """An id prefix retries exactly that variation."""
    target = failed_ids(cli)["shop-sign.png"]
    result = cli("retry-failed", target[:12], env=KEY_ENV)
    assert result.exit_code == 0, result.output
    assert mixed_run.requests() == 1
    assert failed_ids(cli).keys() == {"cafe-menu.jpg"}


def test_changed_source_is_reported_not_sent(cli: Cli, mixed_run: Sent, images: Path) -> None:
    """A source image changed since it failed is reported for that variation, never sent."""
    (images / "shop-sign.png").write_bytes((images / "concert-poster.webp").read_bytes())
    result = cli("retry-failed", env=KEY_ENV)
    assert result.exit_code == 1
    assert mixed_run.requests() == 1
    row = cli.rows("SELECT error_code, error_message FROM generations WHERE status = 'failed'")[0]
    assert row["error_code"] == "INVALID_TYPE" and "changed" in row["error_message"]


def test_nothing_to_retry_exits_zero(cli: Cli) -> None:
    """With no failures, retry-failed says so and exits 0."""
    result = cli("retry-failed")
    assert result.exit_code == 0
    assert "Nothing to retry" in result.output


def test_simulated_run_is_retried_on_the_simulator_without_a_key(cli: Cli, images: Path) -> None:
    """After --simulate outage, a bare retry-failed needs no key and goes to the simulator again."""
    result = cli("process", str(images), "--simulate", "outage", "--max-retries", "0")
    assert result.exit_code == 1
    result = cli("retry-failed")
    assert result.exit_code == 1, result.output
    rows = cli.rows("SELECT backend, attempt_count FROM generations")
    assert {r["backend"] for r in rows} == {"simulator:outage"}
    assert all(r["attempt_count"] == 2 for r in rows)
