"""How many images a run works on at once: read, prepared and held in memory while their
variations are sent.

At most `limit` images are busy. An image whose every unfinished variation is waiting out a
backoff is not busy: it gives its slot to the next image for the wait (a variation in backoff
holds no slot), and takes it back when one wakes, without queueing behind new images. Images in
memory, busy or resting, stay under `4 × limit`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio

MEMORY_FACTOR = 4


class ImageSlots:
    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.memory_limit = self.limit * MEMORY_FACTOR
        self.busy = 0
        self.in_memory = 0
        self._freed = anyio.Event()

    @asynccontextmanager
    async def image(self) -> AsyncIterator[ImageTicket]:
        """Wait for a slot, then hold it while the image is worked on."""
        while self.busy >= self.limit or self.in_memory >= self.memory_limit:
            await self._freed.wait()
        self.busy += 1
        self.in_memory += 1
        ticket = ImageTicket(self)
        try:
            yield ticket
        finally:
            if not ticket.resting_now:
                self.busy -= 1
            self.in_memory -= 1
            self._notify()

    def _notify(self) -> None:
        self._freed.set()
        self._freed = anyio.Event()


class ImageTicket:
    """One image's hold on its slot, given back while all its variations rest."""

    def __init__(self, slots: ImageSlots) -> None:
        self._slots = slots
        self._working = 0  # variations not finished
        self._resting = 0  # of those, waiting out a backoff
        self.resting_now = False

    @contextmanager
    def variation(self) -> Iterator[None]:
        """Around one variation's whole life."""
        self._working += 1
        try:
            yield
        finally:
            self._working -= 1
            self._update()

    @contextmanager
    def backoff(self) -> Iterator[None]:
        """Around a variation's wait before its next attempt."""
        self._resting += 1
        self._update()
        try:
            yield
        finally:
            self._resting -= 1
            self._update()

    def _update(self) -> None:
        resting = self._working > 0 and self._resting == self._working
        if resting and not self.resting_now:
            self.resting_now = True
            self._slots.busy -= 1
            self._slots._notify()
        elif not resting and self.resting_now:
            self.resting_now = False
            self._slots.busy += 1  # may go over the limit for a moment: its memory is held
