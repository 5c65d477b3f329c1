"""The batch side's sense of time: an injectable monotonic clock, and the wall-clock stamps it implies.

Batch jobs advance by the clock alone (nothing runs in the background), so a test that injects
a clock moves a job from PENDING to SUCCEEDED by moving the clock, never by sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Timeline"]


class Timeline:
    """`clock()` in seconds (monotonic); `stamp(moment)` the RFC 3339 time it stands for."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._origin = clock()
        self._wall_origin = time.time()

    def now(self) -> float:
        """The clock's current reading."""
        return self._clock()

    def stamp(self, moment: float) -> str:
        """``2026-05-01T10:00:00.123456Z`` for a clock reading, as the API writes times."""
        wall = self._wall_origin + (moment - self._origin)
        return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
