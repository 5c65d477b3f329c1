"""The run's shared view of the rate limit: every attempt passes through one `SendGate`.

Gemini's limits are per project, so the variations of a run share one budget. The gate:
- holds every new attempt until a server-given delay has passed (shared cooldown),
- adapts to the limit it meets, as AWS's adaptive retry mode does: on a rate limit it halves
  how many attempts may be in flight and paces new attempts at 70 % of the rate that was just
  too fast; successes grow both back gradually (never above --concurrency in flight),
- optionally spaces requests to --rpm (a token bucket holding one request),
- keeps a retry budget so that in an outage retries stay a fraction of first attempts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from imagelingo_cli.clock import Clock
from imagelingo_cli.events import RateStatus

RATE_CUT = 0.7  # on a rate limit, send at 70 % of the rate that was too fast
RATE_GROWTH = 1.0  # then grow back by about one request/second per second of successes
MIN_RATE = 0.1
CONCURRENCY_GROWTH = 0.5  # slots regained per success after a halving


@dataclass
class Permit:
    started_at: float
    released: bool = False


class SendGate:
    def __init__(
        self,
        clock: Clock,
        *,
        max_concurrency: int,
        rpm: float | None = None,
        retry_budget_ratio: float = 0.2,
        retry_budget_floor: int = 10,
        on_change: Callable[[RateStatus], None] | None = None,
    ) -> None:
        self._clock = clock
        self.max_concurrency = max_concurrency
        self.rpm = rpm
        self.limit = float(max_concurrency)
        self.rate: float | None = None  # adaptive requests/second; None until the first 429
        self._recent: deque[float] = deque()  # start times of the last second's attempts
        self.in_flight = 0
        self.cooldown_until = 0.0
        self._last_cut = float("-inf")
        self._next_token_at = float("-inf")
        self._waiters: deque[anyio.Event] = deque()
        self._on_change = on_change
        self.first_attempts = 0
        self.retries = 0
        self.retries_denied = 0
        self.throttles = 0
        self._budget_ratio = retry_budget_ratio
        self._budget_floor = retry_budget_floor

    @property
    def concurrency_limit(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> Permit:
        """Wait for the cooldown, a free slot and (with --rpm) a token; then take the slot."""
        while True:
            now = self._clock.now()
            if now < self.cooldown_until:
                await self._clock.sleep(self.cooldown_until - now)
                continue
            if self.in_flight >= self.concurrency_limit:
                waiter = anyio.Event()
                self._waiters.append(waiter)
                try:
                    await waiter.wait()
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                continue
            pace = self._pace()
            if pace is not None:
                if now < self._next_token_at:
                    await self._clock.sleep(self._next_token_at - now)
                    continue
                self._next_token_at = max(now, self._next_token_at) + 1 / pace
            self._recent.append(now)
            while self._recent and self._recent[0] < now - 1.0:
                self._recent.popleft()
            self.in_flight += 1
            return Permit(started_at=now)

    def release(self, permit: Permit, *, throttled: bool, retry_after: float | None) -> None:
        """Give the slot back, telling the gate whether the attempt was rate limited."""
        if permit.released:
            return
        permit.released = True
        self.in_flight -= 1
        now = self._clock.now()
        changed = False
        if throttled:
            self.throttles += 1
            if retry_after and now + retry_after > self.cooldown_until:
                self.cooldown_until = now + retry_after
                changed = True
            # One cut per congestion episode: attempts sent before the last cut saw the old limit.
            if permit.started_at > self._last_cut:
                too_fast = max(1.0, float(len(self._recent)), self.rate or 0.0)
                self.rate = max(MIN_RATE, min(self.rate or too_fast, too_fast) * RATE_CUT)
                self.limit = max(1.0, self.limit / 2)
                self._last_cut = now
                changed = True
        else:
            before = self.concurrency_limit
            self.limit = min(float(self.max_concurrency), self.limit + CONCURRENCY_GROWTH)
            if self.rate is not None:
                self.rate += RATE_GROWTH / self.rate  # about RATE_GROWTH more per second
            changed = self.concurrency_limit != before
        self._wake()
        if changed and self._on_change is not None:
            self._on_change(self.status())

    def _pace(self) -> float | None:
        """Requests per second to space attempts at: the --rpm cap and the adaptive rate."""
        caps = [c for c in (self.rpm / 60 if self.rpm else None, self.rate) if c]
        return min(caps) if caps else None

    def status(self) -> RateStatus:
        cooling = self.cooldown_until if self.cooldown_until > self._clock.now() else None
        return RateStatus(self.concurrency_limit, cooling, self.rpm, self.retries_denied > 0)

    def record(self) -> dict[str, object]:
        """What the run learned about the rate limit, for the runs table."""
        return {
            "concurrency_limit": self.concurrency_limit,
            "adaptive_rate_per_s": round(self.rate, 3) if self.rate else None,
            "rpm": self.rpm,
            "throttled_attempts": self.throttles,
            "retries": self.retries,
            "retries_denied_by_budget": self.retries_denied,
        }

    def count_first_attempt(self) -> None:
        self.first_attempts += 1

    def take_retry(self) -> bool:
        """Spend one unit of the retry budget; False when retries would outgrow first attempts."""
        if self.retries >= self._budget_floor + self._budget_ratio * self.first_attempts:
            self.retries_denied += 1
            if self.retries_denied == 1 and self._on_change is not None:
                self._on_change(self.status())
            return False
        self.retries += 1
        return True

    def _wake(self) -> None:
        free = self.concurrency_limit - self.in_flight
        while free > 0 and self._waiters:
            self._waiters.popleft().set()
            free -= 1
