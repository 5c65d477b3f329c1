"""Which answer each request gets: scenario rules first, then the profile.

Profiles:

* ``ok``: every request succeeds.
* ``flaky``: the demo. Each request draws from ``random.Random(f"{seed}:{key}:{n}")`` where
  ``key`` is ``<image sha256>:<variation>`` and ``n`` how many requests that key already had,
  so the outcomes are reproducible whatever the order or concurrency. First attempts get
  ~25 % ``resource_exhausted`` (a 429 with no quota behind it, retry in 1 s), 8 %
  ``deadline``, 6 % ``overloaded``, 5 % ``no_image``; later attempts of the same key half as
  often.
* ``rate-limited``: a token bucket of ``rpm`` requests per minute (default 60) with a burst of
  ``max(1, rpm/60)``, shared by all requests and charged on arrival; a request finding it
  empty gets Gemini's per-minute 429: a QuotaFailure naming the quota
  (``GenerateRequestsPerMinutePerProjectPerModel``, ``quotaValue`` = ``rpm``), RetryInfo with
  the time until the next token (e.g. ``0.734s``) and "Please retry in 0.734s." in the
  message.
* ``outage``: every request 503 ``overloaded``, about one in five 500 ``internal`` (seeded).

Giving ``rpm`` with another profile adds the same bucket in front of it. Not thread-safe:
the simulator calls `Decider.decide` under its lock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagelingo_cli.simulator.faults import OK, FaultSpec, format_duration
from imagelingo_cli.simulator.request import GenerateRequest
from imagelingo_cli.simulator.scenario import Scenario

__all__ = ["PROFILES", "Decider", "TokenBucket", "describe"]

PROFILES: tuple[str, ...] = ("ok", "flaky", "rate-limited", "outage")
DEFAULT_RPM = 60

# (fault, probability on a key's first request); later requests get half of each.
_FLAKY: tuple[tuple[FaultSpec, float], ...] = (
    (FaultSpec("resource_exhausted", {"retry_delay": 1.0}), 0.25),
    (FaultSpec("deadline"), 0.08),
    (FaultSpec("overloaded"), 0.06),
    (FaultSpec("no_image"), 0.05),
)
_OUTAGE_INTERNAL_SHARE = 0.2


class TokenBucket:
    """`rate` tokens per second, at most `capacity` stored; starts full."""

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._last = clock()

    def take(self) -> float | None:
        """Take a token: None if one was available, else the seconds until the next one."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return (1 - self._tokens) / self.rate

    def refill(self) -> None:
        """Back to a full bucket."""
        self._tokens = self.capacity
        self._last = self._clock()


@dataclass(frozen=True)
class Decision:
    """The answer chosen for a request, and what chose it (``scenario[i]`` or the profile)."""

    fault: FaultSpec
    source: str


class Decider:
    """Chooses an answer per request. Holds the scenario counters and the token bucket."""

    def __init__(
        self,
        profile: str,
        *,
        seed: int = 0,
        rpm: int | None = None,
        scenario: Scenario | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        if rpm is not None and rpm < 1:
            raise ValueError(f"rpm must be at least 1, got {rpm}")
        self.profile = profile
        self.seed = seed
        self.scenario = scenario
        self.rpm = rpm if rpm is not None else (DEFAULT_RPM if profile == "rate-limited" else None)
        self.bucket: TokenBucket | None = None
        if self.rpm is not None:
            self.bucket = TokenBucket(self.rpm / 60, max(1.0, self.rpm / 60), clock)
        self._consumed: dict[tuple[int, str], int] = {}

    def reset(self) -> None:
        """Forget scenario consumption and refill the bucket."""
        self._consumed.clear()
        if self.bucket is not None:
            self.bucket.refill()

    def decide(self, request: GenerateRequest, n: int, *, paced: bool = True) -> Decision:
        """The answer for `request`, the key's `n`-th (0-based) request.

        `paced` False skips the token bucket: a batch line runs under the batch quota, not the
        per-minute one.
        """
        if self.scenario is not None:
            rule = self.scenario.match(request)
            if rule is not None:
                counter = (rule.index, request.key if rule.count == "key" else "*")
                used = self._consumed.get(counter, 0)
                self._consumed[counter] = used + 1
                return Decision(rule.answer(used), f"scenario.rules[{rule.index}]")
        if self.bucket is not None and paced:
            wait = self.bucket.take()
            if wait is not None:
                quota = {"retry_delay": wait, "limit": self.bucket.rate * 60}
                return Decision(FaultSpec("rate_limit", quota), "rpm")
        return Decision(self._profile_fault(request.key, n), self.profile)

    def _profile_fault(self, key: str, n: int) -> FaultSpec:
        if self.profile == "flaky":
            draw = random.Random(f"{self.seed}:{key}:{n}").random()
            scale = 1.0 if n == 0 else 0.5
            for fault, share in _FLAKY:
                if draw < share * scale:
                    return fault
                draw -= share * scale
            return OK
        if self.profile == "outage":
            draw = random.Random(f"{self.seed}:outage:{key}:{n}").random()
            return FaultSpec("internal" if draw < _OUTAGE_INTERNAL_SHARE else "overloaded")
        return OK


def describe(decider: Decider, latency: float = 0.0) -> str:
    """One line for humans: what this simulator will answer."""
    if decider.profile == "flaky":
        what = (
            f"flaky (seed {decider.seed}): first tries ~25% 429 resource exhausted (retry in 1s), "
            "8% 504 deadline, 6% 503 overloaded, 5% no image; retries half as often"
        )
    elif decider.profile == "outage":
        what = "outage: every request 503 overloaded (~20% 500 internal)"
    elif decider.profile == "rate-limited":
        what = "rate-limited"
    else:
        what = "ok: every request succeeds"
    extras: list[str] = []
    if decider.rpm is not None:
        burst = max(1.0, decider.rpm / 60)
        extras.append(
            f"{decider.rpm} requests/minute (burst {burst:g}), Gemini's per-minute 429 beyond that"
        )
    if latency:
        extras.append(f"latency {format_duration(latency)}")
    if decider.scenario is not None:
        count = len(decider.scenario.rules)
        extras.append(f"scenario {decider.scenario.source} ({count} rule{'s' * (count != 1)})")
    return "Profile " + "; ".join([what, *extras])
