"""The send gate against a per-minute quota, on a virtual clock: a small model of the engine's
attempt loop (gate, retry policy, budget) in front of the simulator's own `Decider`, whose
token bucket runs on the same clock. Its 429s are the simulator's real bodies, classified by
our classifier, so the gate learns from exactly what Gemini would send. Assertions are on
counts and on the order of events, in virtual time."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field

import anyio
import pytest
from google.genai.errors import ClientError
from PIL import Image

from imagelingo_cli.clock import VirtualClock
from imagelingo_cli.errors import classify_exception
from imagelingo_cli.ratelimit import SendGate
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.simulator.faults import Context, FaultSpec, fault_reply
from imagelingo_cli.simulator.profiles import Decider
from imagelingo_cli.simulator.request import GenerateRequest
from imagelingo_cli.simulator.scenario import load_scenario

PIXEL = Image.new("RGB", (1, 1))


def sha(index: int) -> str:
    return f"{index:064x}"


def request(index: int) -> GenerateRequest:
    return GenerateRequest(
        model="gemini-2.5-flash-image",
        api_version="v1beta",
        image=PIXEL,
        image_bytes=1,
        sha256=sha(index),
        mime_type="image/png",
        text="",
        language_name=None,
        language_tag="es",
        variation=1,
        wants_text=False,
    )


@dataclass
class Trace:
    """What happened, in order: ("ok" | "429", send time, variation) and ("learned", time, -1)."""

    events: list[tuple[str, float, int]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    attempts: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def sends(self) -> list[tuple[str, float, int]]:
        return [e for e in self.events if e[0] in ("ok", "429")]

    @property
    def throttled(self) -> int:
        return sum(1 for e in self.events if e[0] == "429")


def run_batch(
    rpm: int | None,
    concurrency: int,
    latency: float,
    variations: int,
    *,
    state_quota: bool = True,
    one_off: tuple[int, ...] = (),
) -> tuple[Trace, SendGate]:
    """`variations` variations through the gate against the simulator's decider. Without
    `state_quota` its 429s keep RetryInfo but lose the QuotaFailure; `one_off` variations get
    one 429 with no details at all on their first attempt."""
    clock = VirtualClock()
    scenario = load_scenario(
        {"rules": [{"sha256": sha(i), "responses": ["resource_exhausted"]} for i in one_off]}
    )
    profile = "rate-limited" if rpm else "ok"
    decider = Decider(profile, rpm=rpm, scenario=scenario, clock=clock.now)
    gate = SendGate(clock, max_concurrency=concurrency)
    policy = RetryPolicy()
    rng = random.Random(0)
    trace = Trace()
    start = clock.now()

    async def variation(index: int) -> None:
        attempt, delay = 0, 0.0
        while True:
            if delay:
                await clock.sleep(delay)
            permit = await gate.acquire()
            attempt += 1
            trace.attempts[index] = attempt
            if attempt == 1:
                gate.count_first_attempt()
            fault = decider.decide(request(index), attempt - 1).fault
            if fault.name == "rate_limit" and not state_quota:
                fault = FaultSpec("resource_exhausted", {"retry_delay": fault.param("retry_delay")})
            trace.events.append(("ok" if fault.name == "ok" else "429", clock.now(), index))
            await clock.sleep(latency)
            if fault.name == "ok":
                gate.succeeded(permit)
                return
            body = json.loads(fault_reply(fault, Context()).body)
            error = classify_exception(ClientError(429, body))
            knew = gate.quota is not None
            gate.failed(permit, error)
            if not knew and gate.quota is not None:
                trace.events.append(("learned", clock.now(), -1))
            if not (policy.retries(error, attempt) and gate.allow_retry(error)):
                trace.failed.append(index)
                return
            delay = policy.delay(error, attempt, rng)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for index in range(variations):
                group.start_soon(variation, index)

    anyio.run(main, backend="asyncio")
    trace.elapsed = clock.now() - start
    return trace, gate


VARIATIONS = {10: 20, 30: 30, 120: 60, 600: 150}


@pytest.mark.parametrize("latency", [0.0, 0.7, 2.0])
@pytest.mark.parametrize("concurrency", [8, 16])
@pytest.mark.parametrize("rpm", [10, 30, 120, 600])
def test_gate_converges_on_the_stated_quota(rpm: int, concurrency: int, latency: float) -> None:
    """From the first per-minute 429 on: no more 429s, requests never closer than the
    quota allows, and the batch takes about N/R (when the concurrency can carry R)."""
    n = VARIATIONS[rpm]
    trace, gate = run_batch(rpm, concurrency, latency, n)
    assert trace.failed == [] and max(trace.attempts.values()) <= 3
    if trace.throttled == 0:  # 8 in flight for 2 s each stay under 600/min and its burst
        assert latency and concurrency / latency < rpm / 60
        assert gate.quota is None and gate.pace is None
        return
    assert gate.quota == rpm
    kinds = [kind for kind, _, _ in trace.events]
    learned = kinds.index("learned")
    assert "429" not in kinds[learned:]  # every 429 was sent before the gate knew the quota
    assert 0 < trace.throttled <= concurrency
    after = [at for kind, at, _ in trace.events[learned:] if kind == "ok"]
    spacing = 60 / rpm
    assert all(b - a >= spacing - 1e-6 for a, b in itertools.pairwise(after))
    if latency == 0 or concurrency / latency >= 1.25 * rpm / 60:  # the rate binds, not slots
        assert trace.elapsed <= 1.1 * n * spacing + latency + 2 * spacing


@pytest.mark.parametrize(("rpm", "latency"), [(10, 0.5), (30, 2.0), (120, 0.7), (600, 0.5)])
def test_without_a_stated_quota_the_delay_still_paces_the_batch(rpm: int, latency: float) -> None:
    """429s with RetryInfo but no QuotaFailure: the gate finds the rate by feel, slower than
    from a stated quota; still every variation completes within 3 attempts, fewer than half
    the requests are 429s and the batch takes at most 1.5 x N/R."""
    n = VARIATIONS[rpm]
    trace, gate = run_batch(rpm, 8, latency, n, state_quota=False)
    assert trace.failed == [] and max(trace.attempts.values()) <= 3
    assert gate.quota is None and gate.pace is not None
    assert trace.throttled < len(trace.sends) / 2
    assert trace.elapsed <= 1.5 * n * 60 / rpm


def test_sparse_one_off_429s_cost_little() -> None:
    """6 of 64 variations get one 429 with nothing behind it: no pacing, the in-flight limit
    comes back, and the batch takes at most 1.5 x as long as without them."""
    clean, _ = run_batch(None, 8, 1.0, 64)
    trace, gate = run_batch(None, 8, 1.0, 64, one_off=(5, 15, 25, 35, 45, 55))
    assert trace.failed == [] and trace.throttled == 6
    assert gate.pace is None and gate.concurrency_limit == 8
    assert trace.elapsed <= 1.5 * clean.elapsed
