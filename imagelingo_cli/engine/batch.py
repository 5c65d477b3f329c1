"""A batch run: one task group over the images, each read and prepared once, its variations
claimed (`claims`) and sent through one shared send gate (`attempts`), outputs written
(`output_files`), the tally kept (`tally`), and the run's lease renewed while it works."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict

import anyio

from imagelingo_cli import events as ev
from imagelingo_cli.clock import Clock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.digest import file_sha256, sha256
from imagelingo_cli.engine.attempts import AttemptLoop
from imagelingo_cli.engine.claims import Claims
from imagelingo_cli.engine.jobs import BatchOptions, ImageJob, Translator
from imagelingo_cli.engine.output_files import OutputFiles
from imagelingo_cli.engine.run import Run, variation_ref
from imagelingo_cli.engine.slots import ImageSlots
from imagelingo_cli.engine.tally import Tally
from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.images import PreparedImage, prepare_image
from imagelingo_cli.outputs import remove_stale_temp_files
from imagelingo_cli.pathtext import encode_path
from imagelingo_cli.ratelimit import SendGate
from imagelingo_cli.store import Store
from imagelingo_cli.store.liveness import HEARTBEAT_S


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
        self.clock = clock
        self.emit = emit
        self.control = control or BatchControl()
        self.gate = SendGate(
            clock, max_concurrency=options.concurrency, rpm=options.rpm, on_change=emit
        )
        self.tally = Tally()
        self._rng = random.Random(seed)
        self._slots = ImageSlots(options.concurrency)
        self._content_locks: dict[str, anyio.Lock] = {}

    async def run(
        self,
        jobs: Sequence[ImageJob],
        *,
        language: str | None,
        model: str | None,
        files_skipped: Mapping[str, int] | None = None,
    ) -> ev.Summary:
        started = time.perf_counter()
        store = self.store
        store.recover_dead_runs()
        out_dirs = sorted({spec.out_dir for job in jobs for spec in job.variations})
        if not store.other_live_runs():  # a live run's temp files look the same as stale ones
            for out_dir in out_dirs:
                await anyio.to_thread.run_sync(remove_stale_temp_files, out_dir)
        backends = sorted({spec.backend for job in jobs for spec in job.variations})
        run_id = store.start_run(
            self.options.command,
            target_language=language,
            model=model,
            backend=",".join(backends) or None,
            options=dict(self.options.run_options),
        )
        for out_dir in out_dirs:
            store.register_output_folder(encode_path(out_dir))
        run = Run(store, run_id, self.options, self.clock, self.emit, self.control, self.tally)
        claims = Claims(run)
        loop = AttemptLoop(run, self.gate, OutputFiles(store, force=self.options.force), self._rng)
        total = sum(len(job.variations) for job in jobs)
        policy = self.options.policy
        self.emit(
            ev.BatchStarted(
                run_id, self.options.command, total, self.options.concurrency, policy.max_attempts
            )
        )
        status = self.tally.status(stopped=True)
        try:
            async with anyio.create_task_group() as lease:
                lease.start_soon(renew_lease, store, run_id)
                async with anyio.create_task_group() as group:
                    for job in jobs:
                        group.start_soon(self._image, run, claims, loop, job)
                lease.cancel_scope.cancel()
            status = self.tally.status(stopped=self.control.stop_requested)
        finally:
            summary = self.tally.summary(
                run_id,
                status,
                total=total,
                elapsed=time.perf_counter() - started,
                files_skipped=dict(files_skipped or {}),
                rate=self.gate.record(),
            )
            counts = {k: v for k, v in asdict(summary).items() if k not in ("failures", "run_id")}
            store.finish_run(run_id, status, counts)
        self.emit(ev.BatchFinished(summary))
        return summary

    async def _image(self, run: Run, claims: Claims, loop: AttemptLoop, job: ImageJob) -> None:
        """One image: read, check and hash it once; claim its variations; send them."""
        async with self._slots.image() as ticket:
            if self.control.stop_requested:
                for (
                    spec
                ) in job.variations:  # never claimed: nothing recorded, a later run does them
                    run.interrupted(variation_ref(job, spec), 0)
                return
            image, problem = await anyio.to_thread.run_sync(load_image, job)
            sha = image.sha256 if image else await anyio.to_thread.run_sync(content_key, job)
            # Two files with the same content are one translation: the second waits for the
            # first, then reuses its outputs (or its failure) instead of sending again.
            async with self._content_locks.setdefault(sha, anyio.Lock()):
                sendable = await claims.sendable(job, image, problem, sha)
                if sendable is None:
                    return
                prepared, taken = sendable
                async with anyio.create_task_group() as group:
                    for spec, ref in taken:
                        translator = self.translators[spec.backend]
                        group.start_soon(
                            loop.run_variation, job, spec, ref, prepared, translator, ticket
                        )


async def renew_lease(store: Store, run_id: str) -> None:
    """Renew the run's heartbeat while it works (real time: the lease is wall-clock time)."""
    while True:
        await anyio.sleep(HEARTBEAT_S)
        store.renew_lease(run_id)


def load_image(job: ImageJob) -> tuple[PreparedImage | None, TranslationError | None]:
    """Read, check and prepare the image once (in a worker thread), or say why it cannot be sent."""
    try:
        if job.problem is not None:
            name = encode_path(job.source.relative)
            raise TranslationError(ErrorCode.INVALID_TYPE, f"'{name}' {job.problem}")
        return prepare_image(job.source.path, job.expected_sha256), None
    except TranslationError as error:
        return None, error


def content_key(job: ImageJob) -> str:
    """The content key of a file that failed its checks; an unreadable one gets a stable
    stand-in so that its failure is still recorded."""
    try:
        return file_sha256(job.source.path)
    except OSError:
        return "unreadable:" + sha256(bytes(job.source.path))
