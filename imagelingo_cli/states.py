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
    # In a Batch API job at Google: the job, not a run, holds it (no lease can take it over:
    # the job may still deliver it), until its result is imported or the job ends without one.
    BATCHED = "batched"

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
    BATCH = "batch"  # a request inside a Batch API job (billed at the batch rate)


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every variation it took is done
    FAILED = "failed"  # some failed
    INTERRUPTED = "interrupted"
    SUBMITTED = "submitted"  # it left its variations waiting in Batch API jobs


class SkipReason(StrEnum):
    """Why a found variation was not sent in this run."""

    COMPLETED = "completed"  # done earlier: its output is there
    RECOVERED = "recovered"  # its output, written by a run that died before recording it
    SAME_CONTENT = "same_content"  # an identical image of this run already did it
    ABANDONED = "abandoned"
    BUSY = "busy"  # another live run is working on it
    OUTPUT_OF_OURS = "output_of_ours"  # the file is an output imagelingo wrote
    IN_BATCH = "in_batch"  # it waits in a Batch API job, which will deliver it


class JobState(StrEnum):
    """Where a Batch API job stands, as imagelingo last saw it."""

    SUBMITTING = "submitting"  # recorded; not known to be at Google yet
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # not finished within 48 h: no results
    UNKNOWN = "unknown"  # a state this version does not know (kept in `api_state`)
    NOT_SUBMITTED = "not_submitted"  # the upload or the create was refused: nothing runs
    GONE = "gone"  # the API no longer knows the job (deleted, or a simulator that stopped)

    @property
    def ended(self) -> bool:
        """Nothing more will change at Google: its results (if any) can be imported."""
        return self not in _JOB_WAITING


_JOB_WAITING = frozenset(
    {JobState.SUBMITTING, JobState.PENDING, JobState.RUNNING, JobState.UNKNOWN}
)
