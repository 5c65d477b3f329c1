"""The run's shared view of the rate limit, on a virtual clock: slow start, cooldown, the
in-flight limit, pacing to a stated quota or --rpm, and the retry budget. Convergence on a
quota over whole batches is in test_pacing."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import anyio
import pytest
from conftest import SAMPLES, TEST_KEY, Cli, scenario_simulator

from imagelingo_cli import events as ev
from imagelingo_cli.clock import VirtualClock
from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.languages import resolve_language
from imagelingo_cli.ratelimit import RetryBudget, SendGate
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.runner import Connection, ProcessRequest, plan_process, run_process
from imagelingo_cli.store import open_store


def test_cooldown_holds_every_new_attempt_until_the_server_delay(tmp_path: Path) -> None:
    """A 429 asking for 5 s: no other attempt of the run starts before those 5 s have passed."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("shop-sign.png", "cafe-menu.jpg", "tea-label.png", "station-notice.jpg"):
        shutil.copy(SAMPLES / name, folder / name)
    rules = [{"count": "global", "responses": [{"fault": "rate_limit", "retry_delay": 5}]}]
    clock = VirtualClock()
    started: list[tuple[float, str]] = []
    throttled_at: list[float] = []

    def collect(event: ev.Event) -> None:
        if isinstance(event, ev.AttemptStarted):
            started.append((clock.now(), event.ref.image))
        if isinstance(event, ev.AttemptFailed):
            throttled_at.append(clock.now())

    store = open_store(tmp_path / "db.sqlite")
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        request = ProcessRequest(
            paths=[folder],
            variations=1,
            languages=(resolve_language("es"),),
            model="gemini-2.5-flash-image",
            out_dir=tmp_path / "out",
            policy=RetryPolicy(),
            concurrency=1,
            connection=Connection(api_key=TEST_KEY, base_url=sim.base_url),
        )
        jobs = plan_process(request, store)

        async def main() -> ev.Summary:
            return await run_process(request, jobs, store, clock=clock, emit=collect)

        summary = anyio.run(main, backend="asyncio")
    assert summary.completed == 4
    assert len(throttled_at) == 1
    after = [when for when, _ in started[1:]]
    assert len(after) == 4 and all(when >= throttled_at[0] + 5 for when in after)


ONE_OFF = TranslationError(ErrorCode.RATE_LIMIT, "Resource has been exhausted.", 429)
OVERLOADED = TranslationError(ErrorCode.SERVER_ERROR, "The model is overloaded.", 503)


def per_minute_429(quota: int, delay_ms: int) -> TranslationError:
    return TranslationError(
        ErrorCode.RATE_LIMIT,
        "Please retry in 2s.",
        429,
        "RESOURCE_EXHAUSTED",
        delay_ms,
        quota_per_minute=quota,
    )


def test_opens_with_four_in_flight_and_grows_one_per_success() -> None:
    """Before any answer at most 4 attempts are in flight; each success opens one more slot."""
    gate = SendGate(VirtualClock(), max_concurrency=16)

    async def main() -> list[int]:
        held = [await gate.acquire() for _ in range(4)]
        seen = [gate.concurrency_limit]
        for permit in held:
            gate.succeeded(permit)
        seen.append(gate.concurrency_limit)
        for _ in range(20):
            gate.succeeded(await gate.acquire())
        seen.append(gate.concurrency_limit)
        return seen

    assert anyio.run(main, backend="asyncio") == [4, 8, 16]


def test_a_one_off_429_halves_concurrency_once_and_it_comes_back() -> None:
    """A 429 with no delay and no quota halves the in-flight limit once per episode (a second
    429 sent before the cut is the same episode), sets no pace, and successes regain it."""
    clock = VirtualClock()
    gate = SendGate(clock, max_concurrency=8)

    async def main() -> list[int]:
        held = [await gate.acquire() for _ in range(4)]
        for permit in held[2:]:
            gate.succeeded(permit)
        seen = [gate.concurrency_limit]
        gate.failed(held[0], ONE_OFF)
        seen.append(gate.concurrency_limit)
        gate.failed(held[1], ONE_OFF)  # sent before the cut
        seen.append(gate.concurrency_limit)
        for _ in range(12):
            gate.succeeded(await gate.acquire())
        seen.append(gate.concurrency_limit)
        return seen

    assert anyio.run(main, backend="asyncio") == [6, 3, 3, 8]
    assert gate.pace is None and gate.throttles == 2


def test_in_flight_never_exceeds_the_adaptive_limit() -> None:
    """After a halving to 2, a third attempt waits until one of the two in flight is released."""
    clock = VirtualClock()
    gate = SendGate(clock, max_concurrency=8)

    async def main() -> tuple[int, bool]:
        gate.failed(await gate.acquire(), ONE_OFF)
        held = [await gate.acquire() for _ in range(2)]
        got_third = False

        async def third() -> None:
            nonlocal got_third
            await gate.acquire()
            got_third = True

        async with anyio.create_task_group() as group:
            group.start_soon(third)
            await anyio.wait_all_tasks_blocked()  # the third is parked at the gate
            before = got_third
            gate.succeeded(held[0])
        return gate.in_flight, before

    in_flight, third_before_release = anyio.run(main, backend="asyncio")
    assert third_before_release is False
    assert in_flight == 2


def test_a_stated_quota_paces_every_attempt_after_the_server_delay() -> None:
    """A per-minute 429 naming 30/min with a 5 s delay: nothing leaves for 5 s, then one
    attempt every 60 / (30 x 0.98) s; the in-flight limit is not cut."""
    clock = VirtualClock()
    changes: list[ev.RateStatus] = []
    gate = SendGate(clock, max_concurrency=8, on_change=changes.append)

    async def main() -> list[float]:
        first = await gate.acquire()
        gate.failed(first, per_minute_429(30, 5000))
        learned_at = clock.now()
        times = []
        for _ in range(4):
            permit = await gate.acquire()
            times.append(clock.now() - learned_at)
            gate.succeeded(permit)
        return times

    times = anyio.run(main, backend="asyncio")
    spacing = 60 / (30 * 0.98)
    assert times == pytest.approx([5.0, 5.0 + spacing, 5.0 + 2 * spacing, 5.0 + 3 * spacing])
    assert gate.concurrency_limit >= 4
    assert changes[0].quota_per_minute == 30 and changes[0].pace_interval == 2.04
    record = gate.record()
    assert (record.quota_per_minute, record.suggested_rpm, record.throttled_attempts) == (30, 29, 1)


def test_429s_at_the_stated_quota_cut_the_pace_below_it() -> None:
    """Another client sharing the quota: a 429 for an attempt sent at the learned pace cuts
    the pace by 30 %; successes grow it back, never above the quota."""
    gate = SendGate(VirtualClock(), max_concurrency=8)

    async def main() -> list[float]:
        gate.failed(await gate.acquire(), per_minute_429(60, 0))
        paces = [gate.current_pace() or 0.0]
        gate.failed(await gate.acquire(), per_minute_429(60, 0))
        paces.append(gate.current_pace() or 0.0)
        for _ in range(40):
            gate.succeeded(await gate.acquire())
        paces.append(gate.current_pace() or 0.0)
        return paces

    assert anyio.run(main, backend="asyncio") == pytest.approx([0.98, 0.686, 0.98])


def test_the_retry_budget_is_for_outages_never_for_rate_limits() -> None:
    """Server errors, timeouts and network errors spend the budget (10 + 20 % of first
    attempts); rate limits are always allowed; each denial is counted and said."""
    budget = RetryBudget(floor=2, ratio=0.5)
    budget.first_attempts = 2
    allowed = [budget.allow(code) for code in (ErrorCode.SERVER_ERROR,) * 4]
    assert allowed == [True, True, True, False]
    assert all(budget.allow(ErrorCode.RATE_LIMIT) for _ in range(10))
    assert not budget.allow(ErrorCode.TIMEOUT) and not budget.allow(ErrorCode.NETWORK_ERROR)
    assert (budget.spent, budget.denied) == (3, 3)
    assert budget.denial() == "retry budget of 3 spent in this run"


def test_a_503_with_a_delay_slows_the_run_one_without_does_not() -> None:
    """An overloaded server asking for a delay is a throttle; a bare 503 is not."""
    clock = VirtualClock()
    gate = SendGate(clock, max_concurrency=8)

    async def main() -> None:
        gate.failed(await gate.acquire(), OVERLOADED)
        assert (gate.concurrency_limit, gate.throttles) == (4, 0)
        delayed = TranslationError(ErrorCode.SERVER_ERROR, "overloaded", 503, None, 3000)
        gate.failed(await gate.acquire(), delayed)
        assert gate.throttles == 1 and gate.cooldown_until == pytest.approx(clock.now() + 3)

    anyio.run(main, backend="asyncio")


def test_rpm_spaces_requests_evenly() -> None:
    """--rpm 60 starts one attempt per second on the clock, however many are waiting."""
    clock = VirtualClock()
    gate = SendGate(clock, max_concurrency=16, rpm=60)

    async def main() -> list[float]:
        times = []
        for _ in range(5):
            permit = await gate.acquire()
            times.append(clock.now())
            gate.succeeded(permit)
        return times

    times = anyio.run(main, backend="asyncio")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([1.0] * 4)


def test_retry_budget_stops_retries_in_an_outage(cli: Cli, tmp_path: Path) -> None:
    """In an outage with 503 auto-retried, retries stay within 10 + 20 % of first attempts."""
    folder = tmp_path / "many"
    folder.mkdir()
    source = (SAMPLES / "shop-sign.png").read_bytes()
    for index in range(40):
        (folder / f"copy{index:02d}.png").write_bytes(source + bytes([index]))
    with scenario_simulator(tmp_path, {"rules": [{"responses": [], "then": "overloaded"}]}) as sim:
        result = cli(
            "process", str(folder), "--to", "es", "--base-url", sim.base_url,
            "--auto-retry-on", "SERVER_ERROR", "--json", env={"GEMINI_API_KEY": TEST_KEY},
        )  # fmt: skip
        requests = sim.stats()["requests"]
    assert result.exit_code == 1
    assert requests <= 40 + 10 + 0.2 * 40  # without the budget: 40 x 3 = 120
    run = cli.rows("SELECT summary FROM runs")[0]
    assert '"retries_denied_by_budget": ' in run["summary"]
    assert '"retries_denied_by_budget": 0' not in run["summary"]
