"""One variation's attempts within a run, as the approved policy has them: wait for the send
gate, send, record the attempt, retry what the policy retries after its backoff (holding no
slot while it waits), and end with one outcome: completed, failed, or interrupted."""

from __future__ import annotations

import random
import time
from pathlib import Path

from imagelingo_cli import events as ev
from imagelingo_cli.engine.jobs import ImageJob, Translator, VariationSpec
from imagelingo_cli.engine.output_files import OutputFiles
from imagelingo_cli.engine.run import Run
from imagelingo_cli.engine.slots import ImageTicket
from imagelingo_cli.errors import ErrorCode, TranslationError, output_error
from imagelingo_cli.gemini import Translation
from imagelingo_cli.images import PreparedImage
from imagelingo_cli.pathtext import encode_path
from imagelingo_cli.ratelimit import SendGate
from imagelingo_cli.states import Trigger
from imagelingo_cli.store import AttemptId


class AttemptLoop:
    def __init__(self, run: Run, gate: SendGate, outputs: OutputFiles, rng: random.Random) -> None:
        self.run = run
        self.gate = gate
        self.outputs = outputs
        self.rng = rng
        self.policy = run.options.policy

    async def run_variation(
        self,
        job: ImageJob,
        spec: VariationSpec,
        ref: ev.VariationRef,
        image: PreparedImage,
        translator: Translator,
        ticket: ImageTicket,
    ) -> None:
        with ticket.variation():
            await self._attempts(job, spec, ref, image, translator, ticket)

    async def _attempts(
        self,
        job: ImageJob,
        spec: VariationSpec,
        ref: ev.VariationRef,
        image: PreparedImage,
        translator: Translator,
        ticket: ImageTicket,
    ) -> None:
        run, control, store = self.run, self.run.control, self.run.store
        attempt = 0
        delay = 0.0
        while True:
            permit = None
            with control.waiting():
                if delay:
                    with ticket.backoff():
                        await run.clock.sleep(delay)
                permit = await self.gate.acquire()
            if permit is None or control.halted:
                if permit is not None:
                    self.gate.release(permit, throttled=False, retry_after=None)
                self.not_sent(ref, attempt)
                return
            attempt += 1
            if attempt == 1:
                self.gate.count_first_attempt()
            # A manual round starts with a manual attempt; its own retries are automatic.
            trigger = run.options.trigger if attempt == 1 else Trigger.AUTO
            attempt_id, number = store.start_attempt(
                ref.generation_id, run.run_id, trigger, model=spec.send_model
            )
            run.tally.attempts += 1
            run.emit(ev.AttemptStarted(ref, attempt, self.policy.max_attempts, number))
            began = time.perf_counter()
            error: TranslationError | None = None
            translation: Translation | None = None
            with control.sending() as scope:
                try:
                    translation = await translator.translate(
                        image.data, image.mime_type, spec.language, spec.variation, spec.model_asked
                    )
                except TranslationError as exc:
                    error = self.policy.escalate(exc)
            duration_ms = round((time.perf_counter() - began) * 1000)
            if scope.cancelled_caught or (translation is None and error is None):
                self.gate.release(permit, throttled=False, retry_after=None)
                store.attempt_interrupted(attempt_id, duration_ms=duration_ms)
                run.interrupted(ref, attempt)
                return
            throttled = error is not None and _is_throttle(error)
            retry_after = error.retry_after_ms / 1000 if error and error.retry_after_ms else None
            self.gate.release(permit, throttled=throttled, retry_after=retry_after)
            if translation is not None:
                await self._succeeded(job, spec, ref, attempt, attempt_id, duration_ms, translation)
                return
            assert error is not None
            if error.code.is_global and control.stop_sending(error):
                run.emit(ev.SendingStopped(ev.ErrorInfo.of(error)))
            retry = (
                self.policy.retries(error, attempt)
                and not control.halted
                and self.gate.take_retry()
            )
            delay = self.policy.delay(error, attempt, self.rng) if retry else 0.0
            store.attempt_failed(
                attempt_id,
                ref.generation_id,
                error,
                duration_ms=duration_ms,
                retry_in_ms=round(delay * 1000) if retry else None,
            )
            run.emit(
                ev.AttemptFailed(
                    ref,
                    attempt,
                    self.policy.max_attempts,
                    ev.ErrorInfo.of(error),
                    delay if retry else None,
                    run.clock.now() + delay if retry else None,
                )
            )
            if not retry:
                self._failed(ref, error, attempts=attempt)
                return

    async def _succeeded(
        self,
        job: ImageJob,
        spec: VariationSpec,
        ref: ev.VariationRef,
        attempt: int,
        attempt_id: AttemptId,
        duration_ms: int,
        translation: Translation,
    ) -> None:
        store, tally = self.run.store, self.run.tally
        path: Path | None = None
        try:
            path = self.outputs.path_for(job, spec, ref.generation_id, translation.mime_type)
            digest = await self.outputs.write(path, ref.generation_id, translation)
        except (OSError, ValueError) as exc:
            error = output_error(encode_path(path or spec.out_dir), exc, translation.usage)
            store.attempt_failed(
                attempt_id, ref.generation_id, error, duration_ms=duration_ms, retry_in_ms=None
            )
            self._failed(ref, error, attempts=attempt)
            return
        charged = store.attempt_succeeded(
            attempt_id,
            ref.generation_id,
            duration_ms=duration_ms,
            output_path=encode_path(path),
            output_sha256=digest,
            usage=translation.usage,
        )
        tally.completed += 1
        tally.credits += int(charged)
        self.run.emit(ev.VariationCompleted(ref, attempt, self.policy.max_attempts, str(path)))

    def refused(self, ref: ev.VariationRef, error: TranslationError) -> None:
        """The image cannot be sent (INVALID_TYPE): the variation fails without a request."""
        self.run.store.fail_unsent(ref.generation_id, error)
        self._failed(ref, error, attempts=0, sent=False)

    def not_sent(self, ref: ev.VariationRef, attempt: int) -> None:
        """The run stopped before this variation's next attempt: a global error, or Ctrl-C."""
        control = self.run.control
        error = control.global_error
        if error is None or control.stop_requested:
            self.run.interrupted(ref, attempt)
            return
        unsent = TranslationError(
            error.code,
            f"not sent: {error.message}",
            error.http_status,
            error.api_status,
            error.retry_after_ms,
        )
        self.run.store.fail_unsent(ref.generation_id, unsent)
        self._failed(ref, unsent, attempts=attempt, sent=False)

    def _failed(
        self, ref: ev.VariationRef, error: TranslationError, *, attempts: int, sent: bool = True
    ) -> None:
        """The variation's outcome in this run is a failure (recorded by the caller). One that
        was completed before (a forced redo) keeps its earlier output."""
        kept = self.run.store.generation(ref.generation_id).get("output_path")
        kept_path = str(kept) if kept else None
        self.run.tally.failure(ref, error, attempts=attempts, kept=kept_path)
        self.run.emit(ev.VariationFailed(ref, attempts, ev.ErrorInfo.of(error), sent, kept_path))


def _is_throttle(error: TranslationError) -> bool:
    """Answers that mean "the project is sending too fast" and should slow the whole run."""
    if error.code is ErrorCode.RATE_LIMIT:
        return True
    return error.code is ErrorCode.SERVER_ERROR and error.retry_after_ms is not None
