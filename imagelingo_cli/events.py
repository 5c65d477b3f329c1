"""The engine -> display contract: plain, immutable events. Renderers fold them into state."""

from __future__ import annotations

from dataclasses import dataclass, field

from imagelingo_cli.errors import TranslationError
from imagelingo_cli.states import RunStatus, SkipReason


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
)
