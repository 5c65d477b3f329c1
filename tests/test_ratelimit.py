"""The run's shared view of the rate limit, on a virtual clock: cooldown, adaptive concurrency,
--rpm spacing and the retry budget."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import anyio
import pytest
from conftest import SAMPLES, TEST_KEY, Cli, scenario_simulator

from imagelingo_cli import events as ev
from imagelingo_cli.clock import VirtualClock
from imagelingo_cli.languages import resolve_language
from imagelingo_cli.ratelimit import SendGate
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
            language=resolve_language("es"),
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


def test_concurrency_halves_once_per_episode_and_recovers() -> None:
    """429s halve the in-flight limit (once per congestion episode); successes grow it back."""
    clock = VirtualClock()
    gate = SendGate(clock, max_concurrency=8)

    async def main() -> list[int]:
        seen = []
        early = await gate.acquire()
        first = await gate.acquire()
        gate.release(first, throttled=True, retry_after=None)
        seen.append(gate.concurrency_limit)
        gate.release(early, throttled=True, retry_after=None)  # sent before the cut: no new cut
        seen.append(gate.concurrency_limit)
        await clock.sleep(1)
        later = await gate.acquire()
        gate.release(later, throttled=True, retry_after=None)
        seen.append(gate.concurrency_limit)
        for _ in range(20):
            gate.release(await gate.acquire(), throttled=False, retry_after=None)
        seen.append(gate.concurrency_limit)
        return seen

    assert anyio.run(main, backend="asyncio") == [4, 4, 2, 8]


def test_in_flight_never_exceeds_the_adaptive_limit() -> None:
    """After a halving, a fifth attempt waits until one of four in flight is released."""
    clock = VirtualClock()
    gate = SendGate(clock, max_concurrency=8)

    async def main() -> tuple[int, bool]:
        gate.release(await gate.acquire(), throttled=True, retry_after=None)
        held = [await gate.acquire() for _ in range(4)]
        got_fifth = False

        async def fifth() -> None:
            nonlocal got_fifth
            await gate.acquire()
            got_fifth = True

        async with anyio.create_task_group() as group:
            group.start_soon(fifth)
            await anyio.wait_all_tasks_blocked()  # the fifth is parked at the gate
            before = got_fifth
            gate.release(held[0], throttled=False, retry_after=None)
        return gate.in_flight, before

    in_flight, fifth_before_release = anyio.run(main, backend="asyncio")
    assert fifth_before_release is False
    assert in_flight == 4


def test_rpm_spaces_requests_evenly() -> None:
    """--rpm 60 starts one attempt per second on the clock, however many are waiting."""
    clock = VirtualClock()
    gate = SendGate(clock, max_concurrency=16, rpm=60)

    async def main() -> list[float]:
        times = []
        for _ in range(5):
            permit = await gate.acquire()
            times.append(clock.now())
            gate.release(permit, throttled=False, retry_after=None)
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
