"""The run's shared view of the rate limit: every attempt passes through one `SendGate`.

Gemini's limits are per project, so the variations of a run share one budget. A per-minute
quota is a speed, not an error; the gate turns it into a pace:

- Attempts leave the gate in arrival order, at most `concurrency_limit` in flight. A run
  opens with `INITIAL_WINDOW` in flight and grows by one per success (slow start), so it
  does not open with a burst the server has not yet shown it takes.
- Gemini's per-minute 429 names the quota (QuotaFailure `...PerMinute...`, `quotaValue`).
  From the first one on, the gate sends one request every 60 / (quota x `QUOTA_MARGIN`)
  seconds, after the server's delay (RetryInfo) has passed for the whole run (cooldown).
  Should 429s go on at that pace (another client shares the quota), the pace is cut and
  grows back slowly, never above the quota.
- Other throttles (a 429 that names no quota, a 503 with a delay) are read by feel. While
  they are few among the last answers, one is taken for a one-off: it halves the attempts
  in flight (once per congestion episode) and successes soon regain them. When they are a
  good share of the last answers (`PRESSURE_SHARE`), the limit is a rate: the pace is cut
  to `CUT` x the rate that produced them (or the rate of successes, if lower) and grows
  back slowly, never above the rate that was refused.
- `--rpm` caps the pace from the start.

Waiting in the gate is free: it is not an attempt and nothing is recorded for it.

`RetryBudget` keeps retries from multiplying an outage: retries of SERVER_ERROR, TIMEOUT and
NETWORK_ERROR stay within a floor plus a share of first attempts. Rate limits are paced,
never budgeted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from imagelingo_cli.clock import Clock
from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.events import RateRecord, RateStatus

INITIAL_WINDOW = 4  # attempts in flight before the server has answered any
QUOTA_MARGIN = 0.98  # send at 98 % of a stated quota: network jitter must not cost a 429
CUT = 0.7  # on renewed pressure, send at 70 % of the rate that was too fast
PACE_GROWTH = 0.02  # then grow back by 2 % of that rate per success
CONCURRENCY_GROWTH = 0.5  # slots regained per success after a halving
MIN_PACE = 1 / 60  # requests/second: never slower than one a minute
PRESSURE_SHARE = 0.25  # 429s among the last answers that mean a limit, not a stray one
RECENT_ANSWERS = 20
MIN_SUCCESSES = 5  # before the success rate says anything about the server's
LATENCY_WEIGHT = 0.2  # weight of the newest answer in the running mean latency

BUDGETED = frozenset({ErrorCode.SERVER_ERROR, ErrorCode.TIMEOUT, ErrorCode.NETWORK_ERROR})


@dataclass
class Permit:
    started_at: float
    number: int  # the attempt's place in the run's sends
    released: bool = False


@dataclass
class RetryBudget:
    """Retries of outage errors (`BUDGETED`) stay within `floor` + `ratio` x first attempts."""

    floor: int = 10
    ratio: float = 0.2
    first_attempts: int = 0
    spent: int = 0
    denied: int = 0

    @property
    def size(self) -> int:
        return int(self.floor + self.ratio * self.first_attempts)

    def allow(self, code: ErrorCode) -> bool:
        """Whether a retry of `code` may go ahead; spends one unit if `code` is budgeted."""
        if code not in BUDGETED:
            return True
        if self.spent >= self.size:
            self.denied += 1
            return False
        self.spent += 1
        return True

    def denial(self) -> str:
        return f"retry budget of {self.size} spent in this run"


def is_throttle(error: TranslationError) -> bool:
    """Answers that mean "the project is sending too fast" and should slow the whole run."""
    if error.code is ErrorCode.RATE_LIMIT:
        return True
    return error.code is ErrorCode.SERVER_ERROR and error.retry_after_ms is not None


class SendGate:
    def __init__(
        self,
        clock: Clock,
        *,
        max_concurrency: int,
        rpm: float | None = None,
        budget: RetryBudget | None = None,
        on_change: Callable[[RateStatus], None] | None = None,
    ) -> None:
        self._clock = clock
        self.max_concurrency = max(1, max_concurrency)
        self.rpm = rpm
        self.budget = budget or RetryBudget()
        self.limit = float(min(self.max_concurrency, INITIAL_WINDOW))
        self._slow_start = True
        self.quota: int | None = None  # requests/minute, as the server stated it
        self.pace: float | None = None  # adaptive requests/second; None: not paced
        self._ceiling: float | None = None  # the pace never grows above this
        self.cooldown_until = float("-inf")
        self._sent = 0  # attempts sent so far; a permit's `number` is its place among them
        self._cut_at = 0  # attempts sent when the pace or the in-flight limit was last cut
        self._limit_before_cut = self.limit
        self._last_send = float("-inf")
        self._sends: deque[float] = deque()  # send times of the last minute
        self._successes: deque[float] = deque()  # answer times of the last minute's successes
        self._first_send: float | None = None
        self._latency: float | None = None
        self._answers: deque[bool] = deque(maxlen=RECENT_ANSWERS)  # throttled or not
        self.in_flight = 0
        self.throttles = 0
        self._queue: deque[anyio.Event] = deque()
        self._slot_freed: anyio.Event | None = None
        self._on_change = on_change

    @property
    def concurrency_limit(self) -> int:
        return max(1, int(self.limit))

    # -- sending --

    async def acquire(self) -> Permit:
        """Wait for this attempt's turn, the cooldown, a free slot and the pace; take the slot."""
        turn = anyio.Event()
        self._queue.append(turn)
        try:
            if self._queue[0] is not turn:
                await turn.wait()
            while True:
                now = self._clock.now()
                ready_at = self._ready_at()
                if ready_at > now:
                    await self._clock.sleep(ready_at - now)
                elif self.in_flight >= self.concurrency_limit:
                    self._slot_freed = anyio.Event()
                    await self._slot_freed.wait()
                else:
                    break
        finally:
            first = self._queue[0] is turn
            self._queue.remove(turn)
            if first and self._queue:
                self._queue[0].set()
        self.in_flight += 1
        self._last_send = now
        if self._first_send is None:
            self._first_send = now
        _remember(self._sends, now)
        self._sent += 1
        return Permit(started_at=now, number=self._sent)

    def _ready_at(self) -> float:
        """When the next attempt may leave: after the cooldown and one pace interval."""
        pace = self.current_pace()
        spaced = self._last_send + 1 / pace if pace else float("-inf")
        return max(self.cooldown_until, spaced)

    def current_pace(self) -> float | None:
        """Requests per second attempts are spaced at (the --rpm cap and the learned pace)."""
        caps = [c for c in (self.rpm / 60 if self.rpm else None, self.pace) if c]
        return min(caps) if caps else None

    # -- answers --

    def succeeded(self, permit: Permit) -> None:
        """The attempt got an answer that was not a throttle: grow back."""
        now = self._settle(permit)
        if now is None:
            return
        before = self.status()
        self._answers.append(False)
        _remember(self._successes, now)
        # One slot per success while opening and while regaining what a one-off took.
        regaining = self._slow_start or self.limit < self._limit_before_cut
        growth = 1.0 if regaining else CONCURRENCY_GROWTH
        self.limit = min(float(self.max_concurrency), self.limit + growth)
        if self.pace is not None and now >= self.cooldown_until:
            self._grow_pace()
        self._after(before)

    def failed(self, permit: Permit, error: TranslationError) -> None:
        """The attempt failed: a throttle slows the run, any other error leaves the rate be."""
        now = self._settle(permit)
        if now is None:
            return
        before = self.status()
        self._answers.append(is_throttle(error))
        if is_throttle(error):
            self._throttled(permit, error, now)
        self._after(before)

    def release(self, permit: Permit) -> None:
        """Give the slot back without an answer (the attempt was never sent or was cut off)."""
        if self._settle(permit, answered=False) is not None:
            self._wake()

    def _settle(self, permit: Permit, *, answered: bool = True) -> float | None:
        if permit.released:
            return None
        permit.released = True
        self.in_flight -= 1
        now = self._clock.now()
        if answered:
            took = now - permit.started_at
            weight = LATENCY_WEIGHT if self._latency is not None else 1.0
            self._latency = (1 - weight) * (self._latency or 0.0) + weight * took
        return now

    def _after(self, before: RateStatus) -> None:
        self._wake()
        status = self.status()
        if status != before and self._on_change is not None:
            self._on_change(status)

    def _throttled(self, permit: Permit, error: TranslationError, now: float) -> None:
        self.throttles += 1
        self._slow_start = False
        if error.retry_after_ms:
            self.cooldown_until = max(self.cooldown_until, now + error.retry_after_ms / 1000)
        new_episode = permit.number > self._cut_at  # sent after the last cut: news
        if error.quota_per_minute:
            self._learn_quota(error.quota_per_minute, now, renewed=new_episode)
            return
        if not new_episode:
            return
        self._cut_at = self._sent
        if self.pace is None and not self._under_pressure():
            # A 429 with few others lately: maybe a one-off.
            self._limit_before_cut = self.limit
            self.limit = max(1.0, self.limit / 2)
            return
        # Pressure (many 429s lately): the limit is a rate. Pace to it; the in-flight limit
        # is no longer the cure.
        too_fast = self.current_pace() or self._send_rate(permit.started_at)
        let_through = self._success_rate(now) or math.inf
        self._ceiling = min(too_fast, self._stated_pace() or math.inf)
        self.pace = max(MIN_PACE, min(too_fast * CUT, let_through))
        self.limit = max(self.limit, self._limit_before_cut)

    def _learn_quota(self, quota: int, now: float, *, renewed: bool) -> None:
        """Pace to a quota the server stated; cut below it if 429s go on at that pace."""
        if self.quota is None or quota < self.quota:
            self.quota = quota
            self._ceiling = self._stated_pace()
            self.pace = min(self.pace or math.inf, self._stated_pace() or math.inf)
            self._cut_at = self._sent
        elif renewed and self._ceiling is not None:
            self.pace = max(MIN_PACE, (self.pace or self._ceiling) * CUT)
            self._cut_at = self._sent

    def _under_pressure(self) -> bool:
        """Whether throttles are a good share of the last answers, not a stray one."""
        throttled = sum(self._answers)
        return throttled >= 2 and throttled >= PRESSURE_SHARE * len(self._answers)

    def _stated_pace(self) -> float | None:
        return self.quota / 60 * QUOTA_MARGIN if self.quota else None

    def _grow_pace(self) -> None:
        if self.pace is not None and self._ceiling is not None:
            self.pace = min(self._ceiling, self.pace + PACE_GROWTH * self._ceiling)

    def _send_rate(self, until: float) -> float:
        """Requests/second sent in the second up to `until` (or the mean latency, if longer)."""
        span = max(1.0, self._latency or 0.0)
        recent = sum(1 for sent in self._sends if until - span < sent <= until)
        return max(MIN_PACE, recent / span)

    def _success_rate(self, now: float) -> float | None:
        """Successes/second over the last minute (or since the first send): under pressure,
        the rate the server lets through. None with too few successes to go by."""
        if self._first_send is None:
            return None
        span = max(1.0, min(60.0, now - self._first_send))
        recent = sum(1 for at in self._successes if at > now - span)
        return recent / span if recent >= MIN_SUCCESSES else None

    def _wake(self) -> None:
        if self._slot_freed is not None and self.in_flight < self.concurrency_limit:
            self._slot_freed.set()

    # -- retries --

    def count_first_attempt(self) -> None:
        self.budget.first_attempts += 1

    def allow_retry(self, error: TranslationError) -> bool:
        """Whether the retry budget lets this error be retried (rate limits always are)."""
        before = self.status()
        allowed = self.budget.allow(error.code)
        self._after(before)
        return allowed

    # -- what it knows --

    def status(self) -> RateStatus:
        cooling = self.cooldown_until if self.cooldown_until > self._clock.now() else None
        pace = self.current_pace()
        return RateStatus(
            self.concurrency_limit,
            cooling,
            self.rpm,
            self.budget.denied > 0,
            quota_per_minute=self.quota,
            pace_interval=round(1 / pace, 2) if pace else None,
        )

    def record(self) -> RateRecord:
        """What the run learned about the rate limit, for the summary and the runs table."""
        pace = self.current_pace()
        return RateRecord(
            quota_per_minute=self.quota,
            paced_per_minute=round(pace * 60, 1) if pace else None,
            # Only a quota the server stated is sure enough to start at next time.
            suggested_rpm=max(1, math.floor(pace * 60)) if pace and self.quota else None,
            rpm=self.rpm,
            throttled_attempts=self.throttles,
            concurrency_limit=self.concurrency_limit,
            retry_budget=self.budget.size,
            budgeted_retries=self.budget.spent,
            retries_denied_by_budget=self.budget.denied,
        )


def _remember(times: deque[float], now: float) -> None:
    """Append `now`, forgetting times more than a minute old."""
    times.append(now)
    while times and times[0] < now - 60:
        times.popleft()
