"""What the parts of one batch run share: the database and the run's id, its options, the
clock, where events go, the stop switch and the tally; and the outcomes a variation can end
with in a run without an answer (interrupted, refused, not sent) or with a failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imagelingo_cli import events as ev
from imagelingo_cli.clock import Clock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.engine.jobs import BatchOptions, ImageJob, VariationSpec
from imagelingo_cli.engine.tally import Tally
from imagelingo_cli.errors import TranslationError
from imagelingo_cli.store import Store


@dataclass
class Run:
    store: Store
    run_id: str
    options: BatchOptions
    clock: Clock
    emit: Callable[[ev.Event], None]
    control: BatchControl
    tally: Tally

    def interrupted(self, ref: ev.VariationRef, attempt: int) -> None:
        """The run stopped before this variation finished; a later run does it."""
        if ref.generation_id:
            self.store.mark_interrupted(ref.generation_id)
        self.tally.interrupted += 1
        self.emit(ev.VariationInterrupted(ref, attempt))

    def refused(self, ref: ev.VariationRef, error: TranslationError) -> None:
        """The image cannot be sent (INVALID_TYPE): the variation fails without a request."""
        self.store.fail_unsent(ref.generation_id, error)
        self.failed(ref, error, attempts=0, sent=False)

    def not_sent(self, ref: ev.VariationRef, attempt: int) -> None:
        """The run stopped before this variation's next attempt: a global error, or Ctrl-C."""
        error = self.control.global_error
        if error is None or self.control.stop_requested:
            self.interrupted(ref, attempt)
            return
        unsent = TranslationError(
            error.code,
            f"not sent: {error.message}",
            error.http_status,
            error.api_status,
            error.retry_after_ms,
        )
        self.store.fail_unsent(ref.generation_id, unsent)
        self.failed(ref, unsent, attempts=attempt, sent=False)

    def stop_sending_if_global(self, error: TranslationError) -> None:
        """A failure that belongs to the whole run (no key, quota spent, disk full): nothing
        more is sent, said once."""
        if error.is_global and self.control.stop_sending(error):
            self.emit(ev.SendingStopped(ev.ErrorInfo.of(error)))

    def failed(
        self,
        ref: ev.VariationRef,
        error: TranslationError,
        *,
        attempts: int,
        sent: bool = True,
        not_retried: str | None = None,
    ) -> None:
        """The variation's outcome in this run is a failure (recorded by the caller). One that
        was completed before (a forced redo) keeps its earlier output; `not_retried` says why
        a retry the policy allows was not made."""
        kept = self.store.generation(ref.generation_id).get("output_path")
        kept_path = str(kept) if kept else None
        self.tally.failure(ref, error, attempts=attempts, kept=kept_path, not_retried=not_retried)
        self.emit(ev.VariationFailed(ref, attempts, ev.ErrorInfo.of(error), sent, kept_path))


def variation_ref(job: ImageJob, spec: VariationSpec, generation_id: str = "") -> ev.VariationRef:
    """How events name a variation: its id (once claimed), image, number and language."""
    return ev.VariationRef(
        generation_id or spec.generation_id or "",
        str(job.source.relative),
        spec.variation,
        spec.language.tag,
    )
