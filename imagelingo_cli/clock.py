"""Time for the engine: the real monotonic clock, or a virtual one for tests and benchmarks."""

from __future__ import annotations

import heapq
import itertools
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock whose sleeps end at once, in order of their virtual wake-up time.

    A sleeper waits a few real milliseconds so that other tasks can register shorter sleeps,
    then, if it is still the earliest one tick later, jumps virtual time to its wake-up. The
    second tick lets a task that the previous sleeper woke (through an event, not a sleep)
    run before time moves on. Every requested sleep is kept in `sleeps` so a test can assert
    on the waits the engine chose.
    """

    def __init__(self, start: float = 1000.0, tick: float = 0.002) -> None:
        self._now = start
        self._tick = tick
        self._waiting: list[tuple[float, int]] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = (self._now + seconds, next(self._order))
        heapq.heappush(self._waiting, entry)
        try:
            earliest = False
            while True:
                await anyio.sleep(self._tick)
                if not self._waiting or self._waiting[0] != entry:
                    earliest = False
                elif earliest:
                    heapq.heappop(self._waiting)
                    self._now = max(self._now, entry[0])
                    return
                else:
                    earliest = True
        except BaseException:
            if entry in self._waiting:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise
