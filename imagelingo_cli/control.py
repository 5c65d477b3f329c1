"""Stopping a running batch from outside it: Ctrl-C, SIGTERM, or a global error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from imagelingo_cli.errors import TranslationError


class BatchControl:
    """Stops a running batch: `request_stop` ends waiting and sending of new attempts,
    `abort` also cancels the attempts in flight. Safe to call from a signal handler task."""

    def __init__(self) -> None:
        self.stop_requested = False
        self.aborted = False
        self.global_error: TranslationError | None = None
        self._waiting: set[anyio.CancelScope] = set()
        self._sending: set[anyio.CancelScope] = set()

    def request_stop(self) -> None:
        self.stop_requested = True
        for scope in list(self._waiting):
            scope.cancel()

    def abort(self) -> None:
        self.aborted = True
        self.request_stop()
        for scope in list(self._sending):
            scope.cancel()

    def stop_sending(self, error: TranslationError) -> bool:
        """A global error: nothing more is sent. True for the first one only."""
        if self.global_error is not None:
            return False
        self.global_error = error
        for scope in list(self._waiting):
            scope.cancel()
        return True

    @property
    def halted(self) -> bool:
        return self.stop_requested or self.global_error is not None

    @contextmanager
    def waiting(self) -> Iterator[anyio.CancelScope]:
        with self._scope(self._waiting, self.halted) as scope:
            yield scope

    @contextmanager
    def sending(self) -> Iterator[anyio.CancelScope]:
        with self._scope(self._sending, self.aborted) as scope:
            yield scope

    @staticmethod
    @contextmanager
    def _scope(registry: set[anyio.CancelScope], cancelled: bool) -> Iterator[anyio.CancelScope]:
        with anyio.CancelScope() as scope:
            if cancelled:
                scope.cancel()
            registry.add(scope)
            try:
                yield scope
            finally:
                registry.discard(scope)
