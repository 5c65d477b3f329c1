"""The run's counts, kept as outcomes happen, and the summary they make."""

from __future__ import annotations

from dataclasses import dataclass, field

from imagelingo_cli import events as ev
from imagelingo_cli.errors import TranslationError
from imagelingo_cli.states import RunStatus


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: int = 0
    attempts: int = 0
    credits: int = 0
    failures: list[ev.Failure] = field(default_factory=list)

    def failure(
        self,
        ref: ev.VariationRef,
        error: TranslationError,
        *,
        attempts: int,
        kept: str | None,
        not_retried: str | None = None,
    ) -> None:
        self.failed += 1
        self.failures.append(ev.Failure(ref, ev.ErrorInfo.of(error), attempts, kept, not_retried))

    def status(self, *, stopped: bool) -> RunStatus:
        if stopped:
            return RunStatus.INTERRUPTED
        return RunStatus.FAILED if self.failed else RunStatus.COMPLETED

    def summary(
        self,
        run_id: str,
        status: RunStatus,
        *,
        total: int,
        elapsed: float,
        files_skipped: dict[str, int],
        rate: ev.RateRecord,
    ) -> ev.Summary:
        return ev.Summary(
            run_id=run_id,
            status=status,
            total=total,
            completed=self.completed,
            failed=self.failed,
            skipped=self.skipped,
            interrupted=self.interrupted,
            attempts=self.attempts,
            credits_charged=self.credits,
            elapsed=elapsed,
            failures=list(self.failures),
            files_skipped=files_skipped,
            rate=rate,
        )
