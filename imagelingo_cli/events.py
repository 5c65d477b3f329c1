"""The engine -> display contract: plain, immutable events. Renderers fold them into state.
Variation events come from any run; job events from Batch mode (Gemini's Batch API jobs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagelingo_cli.errors import TranslationError
from imagelingo_cli.states import JobState, RunStatus, SkipReason


@dataclass(frozen=True)
class VariationRef:
    """Which variation an event is about, in the words a user recognises."""

    generation_id: str
    image: str  # the source path relative to its input folder, e.g. "menus/cafe.jpg"
    variation: int
    language: str


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    label: str
    message: str
    transient: bool
    http_status: int | None = None
    retry_after_ms: int | None = None

    @classmethod
    def of(cls, error: TranslationError) -> ErrorInfo:
        return cls(
            code=error.code.value,
            label=error.code.label,
            message=error.message,
            transient=error.transient,
            http_status=error.http_status,
            retry_after_ms=error.retry_after_ms,
        )


@dataclass(frozen=True)
class BatchStarted:
    run_id: str
    command: str
    total: int  # variations known so far (images found x variations)
    concurrency: int
    max_attempts: int


@dataclass(frozen=True)
class VariationQueued:
    ref: VariationRef


@dataclass(frozen=True)
class AttemptStarted:
    ref: VariationRef
    attempt: int  # within this round: "Attempt 2/3"
    max_attempts: int
    attempt_number: int  # over the variation's whole life (the database's attempt_number)


@dataclass(frozen=True)
class AttemptFailed:
    ref: VariationRef
    attempt: int
    max_attempts: int
    error: ErrorInfo
    retry_in: float | None  # seconds until the next attempt; None: no automatic retry
    retry_at: float | None = None  # on the engine's clock


@dataclass(frozen=True)
class VariationCompleted:
    ref: VariationRef
    attempt: int
    max_attempts: int
    output_path: str


@dataclass(frozen=True)
class VariationFailed:
    ref: VariationRef
    attempts: int  # attempts made in this round (0: never sent)
    error: ErrorInfo
    sent: bool  # False: refused locally or not sent because the run stopped sending
    kept_output: str | None = None  # a forced redo failed: the earlier output stays


@dataclass(frozen=True)
class VariationSkipped:
    ref: VariationRef
    reason: SkipReason
    output_path: str | None = None


@dataclass(frozen=True)
class VariationInterrupted:
    ref: VariationRef
    attempt: int


@dataclass(frozen=True)
class SendingStopped:
    """A global error: the rest of the run is not sent."""

    error: ErrorInfo


@dataclass(frozen=True)
class StopRequested:
    """Ctrl-C or SIGTERM: no new attempts; those in flight get `grace` seconds (0: stop now)."""

    signal: str
    grace: float


@dataclass(frozen=True)
class RateStatus:
    """The shared view of the rate limit changed (shown in the footer)."""

    concurrency_limit: int
    cooldown_until: float | None  # on the engine's clock
    rpm: float | None = None
    retries_paused: bool = False  # the retry budget is spent: outage errors are not retried
    quota_per_minute: int | None = None  # the per-minute quota the server stated
    pace_interval: float | None = None  # seconds between requests while pacing


@dataclass(frozen=True)
class RateRecord:
    """What a run learned about the rate limit (in its summary and the runs table)."""

    quota_per_minute: int | None = None  # as the server stated it
    paced_per_minute: float | None = None  # the pace the run ended at
    suggested_rpm: int | None = None  # a throttled run's pace, to start at next time
    rpm: float | None = None  # the cap the run was given
    throttled_attempts: int = 0
    concurrency_limit: int = 0
    retry_budget: int = 0  # retries of outage errors allowed by the end of the run
    budgeted_retries: int = 0
    retries_denied_by_budget: int = 0


@dataclass(frozen=True)
class Failure:
    """A variation that failed in a run, for the failure panel and the summary."""

    ref: VariationRef
    error: ErrorInfo
    attempts: int  # in this run's round (0: not sent)
    kept_output: str | None = None
    not_retried: str | None = None  # why a retry the policy allows was not made


@dataclass(frozen=True)
class Summary:
    run_id: str
    status: RunStatus
    total: int
    completed: int
    failed: int
    skipped: int
    interrupted: int
    attempts: int
    credits_charged: int
    elapsed: float
    failures: list[Failure] = field(default_factory=list)
    files_skipped: dict[str, int] = field(default_factory=dict)  # found, not images, by reason
    rate: RateRecord = field(default_factory=RateRecord)


@dataclass(frozen=True)
class BatchFinished:
    summary: Summary


# --- Batch API jobs (Batch mode); times are on the engine's clock ------------------------------


@dataclass(frozen=True)
class JobView:
    """A job as imagelingo last saw it."""

    job_id: str
    display_name: str
    name: str | None  # batches/<id>, once Google has it
    state: JobState
    requests: int
    succeeded: int = 0  # batchStats
    failed: int = 0
    api_state: str | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> JobView:
        """From a `batch_jobs` row."""
        return cls(
            job_id=str(row["id"]),
            display_name=str(row["display_name"]),
            name=str(row["name"]) if row.get("name") else None,
            state=JobState(row["state"]),
            requests=int(row["requests"]),
            succeeded=int(row.get("succeeded_requests") or 0),
            failed=int(row.get("failed_requests") or 0),
            api_state=str(row["api_state"]) if row.get("api_state") else None,
        )

    @property
    def label(self) -> str:
        return self.name or self.display_name


@dataclass(frozen=True)
class JobRecorded:
    """Its variations are written to a JSONL and recorded; it is about to be uploaded."""

    job: JobView


@dataclass(frozen=True)
class JobSubmitted:
    """Google has the job (created now, or found by its display name after a failure)."""

    job: JobView
    found: bool = False  # found by listing, not created now


@dataclass(frozen=True)
class JobPolled:
    """The job as a poll saw it; `next_poll_at` None: no further poll."""

    job: JobView
    next_poll_at: float | None


@dataclass(frozen=True)
class JobTrouble:
    """A request about the job failed (not the job itself); it is tried again at `retry_at`."""

    job: JobView
    error: ErrorInfo
    doing: str  # "polling", "creating", "downloading the results"…
    retry_at: float | None


@dataclass(frozen=True)
class JobImporting:
    """The job ended; its outcome is being recorded."""

    job: JobView


@dataclass(frozen=True)
class JobImported:
    """Every variation of the job has its outcome in the database."""

    job: JobView
    completed: int
    failed: int
    interrupted: int
    error: ErrorInfo | None = None  # the job's own failure (FAILED, EXPIRED), if any


@dataclass(frozen=True)
class JobLeft:
    """Not waiting for this job any longer, though it may still deliver: why, in words."""

    job: JobView
    reason: str
    problem: bool = True  # False: as asked (--no-wait)


Event = (
    BatchStarted
    | VariationQueued
    | AttemptStarted
    | AttemptFailed
    | VariationCompleted
    | VariationFailed
    | VariationSkipped
    | VariationInterrupted
    | SendingStopped
    | StopRequested
    | RateStatus
    | BatchFinished
    | JobRecorded
    | JobSubmitted
    | JobPolled
    | JobTrouble
    | JobImporting
    | JobImported
    | JobLeft
)
