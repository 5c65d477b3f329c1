"""One variation's attempts within a run, as the approved policy has them: wait for the send
gate, send, record the attempt, retry what the policy retries after its backoff (holding no
slot while it waits), and end with one outcome: completed, failed, or interrupted. `deliver`
writes and records a successful answer; a Batch API job's answers are written and recorded
by the same parts (`OutputFiles.write`, `record_delivery`), many at a time."""

from __future__ import annotations

import random
import time

import anyio

from imagelingo_cli import events as ev
from imagelingo_cli.answers import Usage
from imagelingo_cli.digest import sha256
from imagelingo_cli.engine.jobs import ImageJob, Translator, VariationSpec
from imagelingo_cli.engine.output_files import OutputFiles, Written
from imagelingo_cli.engine.run import Run
from imagelingo_cli.engine.slots import ImageTicket
from imagelingo_cli.errors import TranslationError
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
                    self.gate.release(permit)
                run.not_sent(ref, attempt)
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
                self.gate.release(permit)
                store.attempt_interrupted(attempt_id, duration_ms=duration_ms)
                run.interrupted(ref, attempt)
                return
            if translation is not None:
                self.gate.succeeded(permit)
                await deliver(
                    run,
                    self.outputs,
                    job,
                    spec,
                    ref,
                    attempt_id,
                    translation,
                    attempt=attempt,
                    max_attempts=self.policy.max_attempts,
                    duration_ms=duration_ms,
                )
                return
            assert error is not None
            self.gate.failed(permit, error)
            run.stop_sending_if_global(error)
            not_retried = self._retry_denial(error, attempt)
            retry = self.policy.retries(error, attempt) and not_retried is None
            delay = self.policy.delay(error, attempt, self.rng) if retry else 0.0
            store.attempt_failed(
                attempt_id,
                ref.generation_id,
                error,
                duration_ms=duration_ms,
                retry_in_ms=round(delay * 1000) if retry else None,
                not_retried=not_retried,
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
                run.failed(ref, error, attempts=attempt, not_retried=not_retried)
                return

    def _retry_denial(self, error: TranslationError, attempt: int) -> str | None:
        """Why an attempt the policy would retry is not retried (None: it is, or the policy
        does not retry it): the run stopped, or the retry budget is spent."""
        control = self.run.control
        if not self.policy.retries(error, attempt):
            return None
        if control.stop_requested:
            return "the run was stopped"
        if control.global_error is not None:
            return f"the run stopped sending ({control.global_error.code.label})"
        if not self.gate.allow_retry(error):
            return self.gate.budget.denial()
        return None


async def deliver(
    run: Run,
    outputs: OutputFiles,
    job: ImageJob,
    spec: VariationSpec,
    ref: ev.VariationRef,
    attempt_id: AttemptId,
    translation: Translation,
    *,
    attempt: int,
    max_attempts: int,
    duration_ms: int,
) -> None:
    """A successful attempt's image: written to the variation's output file and recorded
    (its one credit on its first success), or, if it cannot be written, an OUTPUT_ERROR."""
    written = await write_output(outputs, job, spec, ref, translation)
    record_delivery(
        run,
        ref,
        attempt_id,
        translation.usage,
        written,
        attempt=attempt,
        max_attempts=max_attempts,
        duration_ms=duration_ms,
    )


async def write_output(
    outputs: OutputFiles,
    job: ImageJob,
    spec: VariationSpec,
    ref: ev.VariationRef,
    translation: Translation,
) -> Written:
    """A successful attempt's image, written to its variation's output file (its intent
    recorded first)."""
    digest = await anyio.to_thread.run_sync(sha256, translation.data)
    planned = outputs.plan(job, spec, ref.generation_id, translation, digest)
    if isinstance(planned, TranslationError):
        return planned
    (written,) = await outputs.write([planned])
    return written


def record_delivery(
    run: Run,
    ref: ev.VariationRef,
    attempt_id: AttemptId,
    usage: Usage,
    written: Written,
    *,
    attempt: int,
    max_attempts: int,
    duration_ms: int,
) -> None:
    """Record what `write_output` did: the attempt succeeded (the variation's one credit on
    its first success), or failed with an OUTPUT_ERROR."""
    store, tally = run.store, run.tally
    if isinstance(written, TranslationError):
        store.attempt_failed(
            attempt_id, ref.generation_id, written, duration_ms=duration_ms, retry_in_ms=None
        )
        run.failed(ref, written, attempts=attempt)
        run.stop_sending_if_global(written)
        return
    path, digest = written
    charged = store.attempt_succeeded(
        attempt_id,
        ref.generation_id,
        duration_ms=duration_ms,
        output_path=encode_path(path),
        output_sha256=digest,
        usage=usage,
    )
    tally.completed += 1
    tally.credits += int(charged)
    run.emit(ev.VariationCompleted(ref, attempt, max_attempts, str(path)))
