"""From planned images to Batch API jobs: each image read and checked once, its variations
claimed as in interactive mode (`engine.claims`), one JSONL line per variation written to the
job's file, and the job recorded and submitted when the file is full (the size cap) or the
planning is done.

Until its job is recorded, a claimed variation is `pending` under this run's lease: a crash
leaves it to the next run, as in interactive mode, and nothing was sent. Recording the job
(one transaction) makes its variations `batched`, each with an open attempt naming the job.
Variations for another backend or model go to another job. At most `concurrency` images are
read at once, and only the lines of the file being written are on disk, so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import anyio

from imagelingo_cli import events as ev
from imagelingo_cli.batch_mode.jsonl import RequestFile, request_line
from imagelingo_cli.batch_mode.members import ref_of
from imagelingo_cli.batch_mode.session import Session
from imagelingo_cli.batch_mode.submission import Submission
from imagelingo_cli.engine.batch import content_key, load_image
from imagelingo_cli.engine.claims import Claims
from imagelingo_cli.engine.jobs import ImageJob, VariationSpec
from imagelingo_cli.engine.run import variation_ref
from imagelingo_cli.images import PreparedImage
from imagelingo_cli.states import SkipReason
from imagelingo_cli.store import batch_jobs

_Group = tuple[str, str]  # (backend, model asked): one job's requests share them


@dataclass
class _Building:
    """A job's JSONL being written, and what is in it."""

    requests: RequestFile
    members: list[batch_jobs.Member] = field(default_factory=list)
    contents: set[str] = field(default_factory=set)  # image digests with lines in it


class JobBuilder:
    def __init__(self, session: Session, submission: Submission, base_url: str | None) -> None:
        self.session = session
        self.submission = submission
        self.base_url = base_url  # recorded with each job
        self.claims = Claims(session.run)
        self.recorded: list[str] = []  # ids of the jobs recorded by this builder
        self._open: dict[_Group, _Building] = {}
        self._lock = anyio.Lock()  # claims and lines, one image at a time
        self._files = 0

    async def add(self, jobs: Iterable[ImageJob], concurrency: int) -> None:
        """Claim and write the variations of every image; jobs fill up and are submitted."""
        pending: Iterator[ImageJob] = iter(jobs)

        async def worker() -> None:
            for job in pending:  # workers share one iterator: each image is taken once
                await self._image(job)

        async with anyio.create_task_group() as group:
            for _ in range(max(1, concurrency)):
                group.start_soon(worker)

    async def finish(self) -> None:
        """Submit the jobs still being written; when stopping, their variations are left
        unsent (interrupted) instead."""
        for group in list(self._open):
            if self.session.run.control.stop_requested:
                self._drop(group)
            else:
                await self._seal(group)

    async def _image(self, job: ImageJob) -> None:
        run = self.session.run
        if run.control.stop_requested:  # never claimed: nothing recorded, a later run does them
            for spec in job.variations:
                run.interrupted(variation_ref(job, spec), 0)
            return
        image, problem = await anyio.to_thread.run_sync(load_image, job)
        sha = image.sha256 if image else await anyio.to_thread.run_sync(content_key, job)
        async with self._lock:
            if any(sha in building.contents for building in self._open.values()):
                for spec in job.variations:  # its twin's lines are in a job being written
                    ref = variation_ref(job, spec)
                    run.tally.skipped += 1
                    run.emit(ev.VariationSkipped(ref, SkipReason.SAME_CONTENT, None))
                return
            sendable = await self.claims.sendable(job, image, problem, sha)
            if sendable is None:
                return
            prepared, taken = sendable
            for spec, ref in taken:
                await self._write(spec, ref, prepared)

    async def _write(self, spec: VariationSpec, ref: ev.VariationRef, image: PreparedImage) -> None:
        line = await anyio.to_thread.run_sync(
            request_line, ref.generation_id, image, spec.language, spec.variation
        )
        group = (spec.backend, spec.model_asked)
        building = self._open.get(group)
        if building is not None and not building.requests.fits(line):
            await self._seal(group)
            building = None
        if building is None:
            self._files += 1
            name = f"{self.session.run.run_id}-{self._files}.jsonl"
            path = self.session.work_dir / name
            building = _Building(RequestFile(path, self.session.options.max_input_bytes))
            self._open[group] = building
        await anyio.to_thread.run_sync(building.requests.write, line)
        building.members.append((ref.generation_id, spec.send_model))
        building.contents.add(image.sha256)

    async def _seal(self, group: _Group) -> None:
        """Record the job (its variations become `batched`), then upload and create it."""
        building = self._open.pop(group)
        building.requests.close()
        backend, model = group
        run = self.session.run
        job = batch_jobs.record_job(
            run.store,
            run_id=run.run_id,
            model=model,
            backend=backend,
            base_url=self.base_url,
            members=building.members,
            input_bytes=building.requests.size,
        )
        run.tally.attempts += len(building.members)
        self.recorded.append(str(job["id"]))
        self.session.emit(ev.JobRecorded(self.session.view(job["id"])))
        await self.submission.submit(job, building.requests.path)

    def _drop(self, group: _Group) -> None:
        building = self._open.pop(group)
        building.requests.discard()
        run = self.session.run
        for generation_id, _asked in building.members:
            row = run.store.generation(generation_id)
            run.interrupted(ref_of({**row, "generation_id": generation_id}), 0)
