"""The vocabulary the database, the engine and the displays share: what state a variation,
an attempt and a run are in, what started an attempt, and why a variation was not sent.

Each is a StrEnum whose value is what the database stores, so it reads the same in `sqlite3`.
"""

from __future__ import annotations

from enum import StrEnum


class GenerationStatus(StrEnum):
    PENDING = "pending"  # claimed by a run, not sent yet
    RUNNING = "running"  # an attempt is in flight
    RETRYING = "retrying"  # waiting out a backoff before the next attempt
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its run stopped (Ctrl-C, a crash) before it finished
    ABANDONED = "abandoned"  # the user stopped offering it for retry

    @property
    def active(self) -> bool:
        """Held by a run right now."""
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset(
    {GenerationStatus.PENDING, GenerationStatus.RUNNING, GenerationStatus.RETRYING}
)
# What retry-failed offers and abandon takes.
RETRYABLE_STATUSES = frozenset({GenerationStatus.FAILED, GenerationStatus.INTERRUPTED})


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Trigger(StrEnum):
    """What started an attempt."""

    AUTO = "auto"  # the first attempt of `process`, and every automatic retry
    MANUAL = "manual"  # the first attempt of a retry-failed round


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every variation it took is done
    FAILED = "failed"  # some failed
    INTERRUPTED = "interrupted"


class SkipReason(StrEnum):
    """Why a found variation was not sent in this run."""

    COMPLETED = "completed"  # done earlier: its output is there
    RECOVERED = "recovered"  # its output, written by a run that died before recording it
    SAME_CONTENT = "same_content"  # an identical image of this run already did it
    ABANDONED = "abandoned"
    BUSY = "busy"  # another live run is working on it
    OUTPUT_OF_OURS = "output_of_ours"  # the file is an output imagelingo wrote
