"""The batch engine: one task group, a shared send gate, and per variation the attempt loop
of the retry policy. It records every step in the store and reports plain events; it knows
neither Typer nor rich."""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import anyio

from imagelingo_cli import events as ev
from imagelingo_cli.clock import Clock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.errors import ErrorCode, TranslationError, classify_exception
from imagelingo_cli.gemini import Translation
from imagelingo_cli.images import (
    PreparedImage,
    SourceImage,
    output_path,
    prepare_image,
    printable,
    remove_stale_temp_files,
    write_atomic,
)
from imagelingo_cli.languages import Language
from imagelingo_cli.ratelimit import SendGate
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.store import GenerationKey, Store


class Translator(Protocol):
    async def translate(
        self, image: bytes, mime_type: str, language: Language, variation: int, model: str
    ) -> Translation: ...


@dataclass(frozen=True)
class VariationSpec:
    variation: int
    language: Language
    model: str
    backend: str  # "gemini" or "simulator:<profile>": which translator serves it
    out_dir: Path
    generation_id: str | None = None  # retry-failed: the variation's existing row


@dataclass(frozen=True)
class ImageJob:
    source: SourceImage
    variations: tuple[VariationSpec, ...]
    expected_sha256: str | None = None  # retry-failed: the content the variations were made from
    problem: str | None = None  # found but unusable (broken link, loop, unreadable folder)


@dataclass(frozen=True)
class BatchOptions:
    command: str  # "process" or "retry-failed"
    trigger: str  # "auto" or "manual"
    policy: RetryPolicy
    concurrency: int
    rpm: float | None = None
    force: bool = False
    base_url: str | None = None
    run_options: dict[str, object] = field(default_factory=dict)


@dataclass
class _Tally:
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: int = 0
    attempts: int = 0
    credits: int = 0
    failures: list[dict[str, object]] = field(default_factory=list)


class Batch:
    def __init__(
        self,
        store: Store,
        translators: Mapping[str, Translator],
        options: BatchOptions,
        *,
        clock: Clock,
        emit: Callable[[ev.Event], None],
        control: BatchControl | None = None,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.translators = translators
        self.options = options
        self.policy = options.policy
        self.clock = clock
        self.emit = emit
        self.control = control or BatchControl()
        self.rng = random.Random(seed)
        self.gate = SendGate(
            clock,
            max_concurrency=options.concurrency,
            rpm=options.rpm,
            on_change=emit,
        )
        self.tally = _Tally()
        self.run_id = ""
        self._image_slots = anyio.CapacityLimiter(max(1, options.concurrency))
        self._content_locks: dict[str, anyio.Lock] = {}
        self._reserved: dict[Path, str] = {}  # output paths taken in this run -> generation

    async def run(
        self, jobs: Sequence[ImageJob], *, language: str | None, model: str | None
    ) -> ev.Summary:
        started = time.perf_counter()
        self.store.recover_dead_runs()
        if not self.store.other_live_runs():  # a live run's temp files look the same as stale ones
            for out_dir in sorted({spec.out_dir for job in jobs for spec in job.variations}):
                await anyio.to_thread.run_sync(remove_stale_temp_files, out_dir)
        backends = sorted({spec.backend for job in jobs for spec in job.variations})
        self.run_id = self.store.start_run(
            self.options.command,
            target_language=language,
            model=model,
            backend=",".join(backends) or None,
            options=self.options.run_options,
        )
        total = sum(len(job.variations) for job in jobs)
        self.emit(
            ev.BatchStarted(
                self.run_id,
                self.options.command,
                total,
                self.options.concurrency,
                self.policy.max_attempts,
            )
        )
        status = "interrupted"
        try:
            async with anyio.create_task_group() as group:
                for job in jobs:
                    group.start_soon(self._image, job)
            status = (
                "interrupted"
                if self.control.stop_requested
                else ("failed" if self.tally.failed else "completed")
            )
        finally:
            t = self.tally
            summary = ev.Summary(
                run_id=self.run_id,
                status=status,
                total=total,
                completed=t.completed,
                failed=t.failed,
                skipped=t.skipped,
                interrupted=t.interrupted,
                attempts=t.attempts,
                credits_charged=t.credits,
                elapsed=time.perf_counter() - started,
                failures=t.failures,
                rate=self.gate.record(),
            )
            counts = {k: v for k, v in asdict(summary).items() if k not in ("failures", "run_id")}
            self.store.finish_run(self.run_id, status, counts)
        self.emit(ev.BatchFinished(summary))
        return summary

    # -- one image: hash, claim its variations, prepare once, send them --

    async def _image(self, job: ImageJob) -> None:
        refs = [self._ref(job, spec, spec.generation_id or "") for spec in job.variations]
        async with self._image_slots:
            if self.control.stop_requested:
                for ref in refs:  # never claimed: nothing recorded, a later run does them
                    self.tally.interrupted += 1
                    self.emit(ev.VariationInterrupted(ref, 0))
                return
            image, problem = await anyio.to_thread.run_sync(_load, job)
            sha = image.sha256 if image else await anyio.to_thread.run_sync(_content_key, job)
            # Two files with the same content are one translation: the second waits for the
            # first, then reuses its outputs (or its failure) instead of sending again.
            async with self._content_locks.setdefault(sha, anyio.Lock()):
                await self._send_image(job, refs, sha, image, problem)

    async def _send_image(
        self,
        job: ImageJob,
        refs: list[ev.VariationRef],
        sha: str,
        image: PreparedImage | None,
        problem: TranslationError | None,
    ) -> None:
        claimed: list[tuple[VariationSpec, ev.VariationRef]] = []
        for spec, ref in zip(job.variations, refs, strict=True):
            target = self._claim(job, spec, sha, ref)
            if target is not None:
                claimed.append((spec, target))
        if self.control.halted:
            for _spec, ref in claimed:
                self._not_sent(ref, 0)
            return
        if image is None:
            assert problem is not None
            for _spec, ref in claimed:
                self._fail(ref, problem, attempts=0, sent=False)
            return
        async with anyio.create_task_group() as group:
            for spec, ref in claimed:
                group.start_soon(self._variation, job, spec, ref, image)

    def _claim(
        self, job: ImageJob, spec: VariationSpec, sha: str, ref: ev.VariationRef
    ) -> ev.VariationRef | None:
        """Take the variation for this run, or report why it is skipped."""
        if spec.generation_id is not None:
            claim = self.store.claim_for_retry(spec.generation_id, self.run_id)
        else:
            key = GenerationKey(sha, spec.language.tag, spec.model, spec.variation, spec.backend)
            claim = self.store.claim_generation(
                key,
                run_id=self.run_id,
                source_path=printable(job.source.path),
                relative_path=printable(job.source.relative),
                out_dir=printable(spec.out_dir),
                base_url=self.options.base_url,
                force=self.options.force,
            )
        ref = ev.VariationRef(claim.row["id"], ref.image, ref.variation, ref.language)
        if claim.kind in ("completed", "done_in_run") and claim.row["status"] == "completed":
            reused = self._reuse_output(job, spec, claim.row)
            if reused is not None:
                self.tally.skipped += 1
                self.emit(ev.VariationSkipped(ref, "already completed", reused))
                return None
            if claim.kind == "completed":  # its output is gone: translate it again
                claim = self.store.claim_generation(
                    GenerationKey(sha, spec.language.tag, spec.model, spec.variation, spec.backend),
                    run_id=self.run_id,
                    source_path=printable(job.source.path),
                    relative_path=printable(job.source.relative),
                    out_dir=printable(spec.out_dir),
                    base_url=self.options.base_url,
                    force=True,
                )
        if claim.kind != "send":
            reason = {
                "busy": "being processed by another imagelingo run",
                "abandoned": "abandoned (use --force to translate it again)",
                "completed": "already completed",
                "done_in_run": f"same content as another image of this run, which ended "
                f"{claim.row['status']}",
            }[claim.kind]
            self.tally.skipped += 1
            self.emit(ev.VariationSkipped(ref, reason, claim.row.get("output_path")))
            return None
        self.emit(ev.VariationQueued(ref))
        return ref

    def _reuse_output(
        self, job: ImageJob, spec: VariationSpec, row: dict[str, object]
    ) -> str | None:
        """A completed variation's output, copied to this run's output path if it lives elsewhere.
        None when the recorded output is gone (the variation is translated again)."""
        recorded = Path(str(row.get("output_path") or ""))
        if not row.get("output_path") or not recorded.is_file():
            return None
        wanted = output_path(
            spec.out_dir, job.source.relative, spec.language.tag, spec.variation, _mime_of(recorded)
        )
        if wanted == recorded or wanted.exists():  # here already, or the name holds another file
            return str(recorded)
        wanted.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(recorded, wanted)
        return str(wanted)

    # -- one variation: the attempt loop --

    async def _variation(
        self, job: ImageJob, spec: VariationSpec, ref: ev.VariationRef, image: PreparedImage
    ) -> None:
        translator = self.translators[spec.backend]
        attempt = 0
        delay = 0.0
        while True:
            permit = None
            with self.control.waiting():
                if delay:
                    await self._back_off(delay)
                permit = await self.gate.acquire()
            if permit is None or self.control.halted:
                if permit is not None:
                    self.gate.release(permit)
                self._not_sent(ref, attempt)
                return
            attempt += 1
            if attempt == 1:
                self.gate.count_first_attempt()
            # A manual round starts with a manual attempt; its own retries are automatic.
            trigger = self.options.trigger if attempt == 1 else "auto"
            attempt_id, number = self.store.start_attempt(ref.generation_id, self.run_id, trigger)
            self.tally.attempts += 1
            self.emit(ev.AttemptStarted(ref, attempt, self.policy.max_attempts, number))
            began = time.perf_counter()
            error: TranslationError | None = None
            translation: Translation | None = None
            with self.control.sending() as scope:
                try:
                    translation = await translator.translate(
                        image.data, image.mime_type, spec.language, spec.variation, spec.model
                    )
                except TranslationError as exc:
                    error = self.policy.escalate(exc)
                except Exception as exc:  # an adapter bug still becomes a recorded failure
                    error = classify_exception(exc)
            duration_ms = round((time.perf_counter() - began) * 1000)
            if scope.cancelled_caught or (translation is None and error is None):
                self.gate.release(permit)
                self.store.attempt_interrupted(attempt_id, duration_ms=duration_ms)
                self._interrupted(ref, attempt)
                return
            if translation is not None:
                self.gate.succeeded(permit)
                await self._succeeded(job, spec, ref, attempt, attempt_id, duration_ms, translation)
                return
            assert error is not None
            self.gate.failed(permit, error)
            if error.code.is_global and self.control.stop_sending(error):
                self.emit(ev.SendingStopped(ev.ErrorInfo.of(error)))
            not_retried = self._retry_denial(error, attempt)
            retry = self.policy.retries(error, attempt) and not_retried is None
            delay = self.policy.delay(error, attempt, self.rng) if retry else 0.0
            self.store.attempt_failed(
                attempt_id,
                ref.generation_id,
                error,
                duration_ms=duration_ms,
                retry_in_ms=round(delay * 1000) if retry else None,
                not_retried=not_retried,
            )
            self.emit(
                ev.AttemptFailed(
                    ref,
                    attempt,
                    self.policy.max_attempts,
                    ev.ErrorInfo.of(error),
                    delay if retry else None,
                    self.clock.now() + delay if retry else None,
                )
            )
            if not retry:
                self._fail(
                    ref, error, attempts=attempt, sent=True, recorded=True, not_retried=not_retried
                )
                return

    async def _back_off(self, delay: float) -> None:
        """Wait before a retry. The image stays in hand meanwhile, so its slot is lent to the
        next image: waiting out a backoff must not leave the send gate short of work."""
        self._image_slots.total_tokens += 1
        try:
            await self.clock.sleep(delay)
        finally:
            self._image_slots.total_tokens -= 1

    def _retry_denial(self, error: TranslationError, attempt: int) -> str | None:
        """Why an attempt the policy would retry is not retried (None: it is, or the policy
        does not retry it): the run stopped, or the retry budget is spent."""
        if not self.policy.retries(error, attempt):
            return None
        if self.control.stop_requested:
            return "the run was stopped"
        if self.control.global_error is not None:
            return f"the run stopped sending ({self.control.global_error.code.label})"
        if not self.gate.allow_retry(error):
            return self.gate.budget.denial()
        return None

    async def _succeeded(
        self,
        job: ImageJob,
        spec: VariationSpec,
        ref: ev.VariationRef,
        attempt: int,
        attempt_id: str,
        duration_ms: int,
        translation: Translation,
    ) -> None:
        try:
            wanted = output_path(
                spec.out_dir,
                job.source.relative,
                spec.language.tag,
                spec.variation,
                translation.mime_type,
            )
            target = self._free_output(wanted, ref.generation_id)
            await anyio.to_thread.run_sync(write_atomic, target, translation.data)
        except (OSError, ValueError) as exc:
            error = TranslationError(
                ErrorCode.API_ERROR, f"the translated image could not be written: {exc}"
            )
            self.store.attempt_failed(
                attempt_id, ref.generation_id, error, duration_ms=duration_ms, retry_in_ms=None
            )
            self._fail(ref, error, attempts=attempt, sent=True, recorded=True)
            return
        charged = self.store.attempt_succeeded(
            attempt_id,
            ref.generation_id,
            duration_ms=duration_ms,
            output_path=printable(target),
            model_version=translation.model_version,
            prompt_tokens=translation.prompt_tokens,
            output_tokens=translation.output_tokens,
            total_tokens=translation.total_tokens,
        )
        self.tally.completed += 1
        self.tally.credits += int(charged)
        self.emit(ev.VariationCompleted(ref, attempt, self.policy.max_attempts, str(target)))

    def _free_output(self, wanted: Path, generation_id: str) -> Path:
        """`wanted`, unless it holds a file that is not this variation's earlier output: then the
        first free `<name>-2.<ext>`, `-3`… An unrelated file is overwritten only with --force,
        another variation's output never."""
        candidate = wanted
        for number in range(2, 1000):
            taken_by = self._reserved.get(candidate)
            if taken_by is None and not candidate.exists():
                break
            owner = taken_by or self.store.output_owner(printable(candidate))
            if owner == generation_id or (owner is None and self.options.force):
                break
            candidate = wanted.with_name(f"{wanted.stem}-{number}{wanted.suffix}")
        self._reserved[candidate] = generation_id  # before the write: two may finish together
        return candidate

    # -- outcomes --

    def _not_sent(self, ref: ev.VariationRef, attempt: int) -> None:
        """The run stopped before this variation's next attempt: a global error, or Ctrl-C."""
        error = self.control.global_error
        if error is None or self.control.stop_requested:
            self._interrupted(ref, attempt)
            return
        unsent = TranslationError(
            error.code,
            f"not sent: {error.message}",
            error.http_status,
            error.api_status,
            error.retry_after_ms,
        )
        self._fail(ref, unsent, attempts=attempt, sent=False)

    def _interrupted(self, ref: ev.VariationRef, attempt: int) -> None:
        self.store.mark_interrupted(ref.generation_id)
        self.tally.interrupted += 1
        self.emit(ev.VariationInterrupted(ref, attempt))

    def _fail(
        self,
        ref: ev.VariationRef,
        error: TranslationError,
        *,
        attempts: int,
        sent: bool,
        recorded: bool = False,
        not_retried: str | None = None,
    ) -> None:
        if not recorded:
            self.store.fail_unsent(ref.generation_id, error)
        self.tally.failed += 1
        self.tally.failures.append(
            {
                "generation_id": ref.generation_id,
                "image": ref.image,
                "variation": ref.variation,
                "language": ref.language,
                "code": error.code.value,
                "message": error.message,
                "transient": error.transient,
                "attempts": attempts,
                "not_retried": not_retried,
            }
        )
        self.emit(ev.VariationFailed(ref, attempts, ev.ErrorInfo.of(error), sent))

    @staticmethod
    def _ref(job: ImageJob, spec: VariationSpec, generation_id: str) -> ev.VariationRef:
        return ev.VariationRef(
            generation_id, str(job.source.relative), spec.variation, spec.language.tag
        )


def _load(job: ImageJob) -> tuple[PreparedImage | None, TranslationError | None]:
    """Read, check and prepare the image once (in a worker thread), or say why it cannot be sent."""
    try:
        if job.problem is not None:
            name = printable(job.source.relative)
            raise TranslationError(ErrorCode.INVALID_TYPE, f"'{name}' {job.problem}")
        return prepare_image(job.source.path, job.expected_sha256), None
    except TranslationError as error:
        return None, error


def _content_key(job: ImageJob) -> str:
    """The content key of a file that failed its checks; an unreadable one gets a stable
    stand-in so that its failure is still recorded."""
    path = job.source.path
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return "unreadable:" + hashlib.sha256(bytes(path)).hexdigest()
    return digest.hexdigest()


def _mime_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}.get(
        suffix, f"image/{suffix}"
    )
