"""Getting a recorded job to Google exactly once: upload its JSONL, create it, never twice.

Creating a job is not idempotent. A refusal (an HTTP 4xx answer to the upload or the create)
is definite: nothing runs, and the job's variations fail with the classified error. Anything
else (a timeout, a 5xx, a dropped connection) leaves it unknown whether Google created the
job, so it is looked for by its display name before it is created again; after
`CREATE_ROUNDS` such rounds it stays `submitting`, and the next `batch collect` or rerun looks
again. A job recorded by a run that stopped before Google answered (a crash between recording
and creating) is resumed the same way: found by its display name, or its JSONL rebuilt from
the database (the same images, checked against their digests) and created now.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anyio

from imagelingo_cli import events as ev
from imagelingo_cli.batch_mode.jsonl import RequestFile, request_line
from imagelingo_cli.batch_mode.members import image_job_of
from imagelingo_cli.batch_mode.session import Session
from imagelingo_cli.engine.batch import load_image
from imagelingo_cli.errors import TranslationError
from imagelingo_cli.gemini_batch import BatchClient
from imagelingo_cli.states import JobState
from imagelingo_cli.store import batch_jobs

CREATE_ROUNDS = 4
CREATE_BACKOFF_S = 2.0  # doubled after each ambiguous round
UNDECIDED = (
    "could not find out whether Google has the job; imagelingo batch collect looks for it again"
)
STOPPED = "stopped before Google answered; imagelingo batch collect looks for the job again"


def definite(error: TranslationError) -> bool:
    """An answer that says the request was refused, so nothing was created."""
    return error.http_status is not None and 400 <= error.http_status < 500


class Submission:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.store = session.run.store

    async def submit(self, job: dict[str, Any], path: Path) -> None:
        """Upload `path` (the job's JSONL, removed afterwards) and create the job."""
        client = await self.session.client(job)
        try:
            file_name = await self._upload(job, client, path)
        finally:
            path.unlink(missing_ok=True)
        if file_name is not None:
            batch_jobs.set_uploaded(self.store, job["id"], file_name)
            await self._create(job, client, file_name)

    async def resume(self, job: dict[str, Any]) -> None:
        """A job recorded before Google answered: find it by its display name, or make it now."""
        client = await self.session.client(job)
        if await self._found(job, client) is False:
            path = await self._rebuild(job)
            if path is not None:
                await self.submit(batch_jobs.job(self.store, job["id"]), path)

    async def _upload(self, job: dict[str, Any], client: BatchClient, path: Path) -> str | None:
        """The uploaded file's name; None when the job's variations failed instead, or the run
        is stopping. Uploads are retried (one more copy at Google is no harm); a refusal is
        final."""
        control = self.session.run.control
        pause = CREATE_BACKOFF_S
        for round_ in range(1, CREATE_ROUNDS + 1):
            try:
                with control.sending():
                    return await client.upload(path, str(job["display_name"]))
                self.session.left(job["id"], STOPPED)  # cancelled: a second Ctrl-C
                return None
            except TranslationError as error:
                if definite(error) or round_ == CREATE_ROUNDS:
                    self.refuse(job, error)
                    return None
                if not await self.session.pause(job["id"], error, "uploading the requests", pause):
                    self.session.left(job["id"], STOPPED)
                    return None
                pause *= 2
        return None

    async def _create(self, job: dict[str, Any], client: BatchClient, file_name: str) -> None:
        control = self.session.run.control
        pause = CREATE_BACKOFF_S
        for round_ in range(CREATE_ROUNDS):
            # An earlier create may have made it all the same; None: could not tell (said so).
            if round_ > 0 and await self._found(job, client) is not False:
                return
            try:
                with control.sending() as scope:
                    name = await client.create(
                        str(job["model"]), file_name, str(job["display_name"])
                    )
                if scope.cancelled_caught:
                    self.session.left(job["id"], STOPPED)
                    return
            except TranslationError as error:
                if definite(error):
                    self.refuse(job, error)
                    return
                if not await self.session.pause(job["id"], error, "creating the job", pause):
                    self.session.left(job["id"], STOPPED)
                    return
                pause *= 2
                continue
            batch_jobs.set_created(self.store, job["id"], name)
            self.session.emit(ev.JobSubmitted(self.session.view(job["id"])))
            return
        self.session.left(job["id"], UNDECIDED)

    async def _found(self, job: dict[str, Any], client: BatchClient) -> bool | None:
        """Whether Google has the job already (recorded if so); None when that could not be
        found out (said so)."""
        pause = CREATE_BACKOFF_S
        for _round in range(CREATE_ROUNDS):
            try:
                name = await client.find(str(job["display_name"]))
            except TranslationError as error:
                if not await self.session.pause(job["id"], error, "looking for the job", pause):
                    self.session.left(job["id"], STOPPED)
                    return None
                pause *= 2
                continue
            if name is None:
                return False
            batch_jobs.set_created(self.store, job["id"], name)
            self.session.emit(ev.JobSubmitted(self.session.view(job["id"]), found=True))
            return True
        self.session.left(job["id"], UNDECIDED)
        return None

    def refuse(self, job: dict[str, Any], error: TranslationError) -> None:
        """The upload or the create was refused: the job's variations fail with the error
        (retry-failed sends them again); one that belongs to the whole project stops the run."""
        run = self.session.run
        for row in batch_jobs.open_attempts(self.store, job["id"]):
            self.session.fail(row, error)
        batch_jobs.update_job(
            self.store,
            job["id"],
            state=JobState.NOT_SUBMITTED,
            error_code=error.code.value,
            error_message=error.message,
        )
        batch_jobs.mark_imported(self.store, job["id"])
        run.stop_sending_if_global(error)

    async def _rebuild(self, job: dict[str, Any]) -> Path | None:
        """The job's JSONL again, from its open attempts; a variation whose image is gone or
        changed fails (INVALID_TYPE). None when no variation is left to send."""
        rows = batch_jobs.open_attempts(self.store, job["id"])
        path = self.session.work_dir / f"{job['display_name']}.jsonl"
        requests = RequestFile(path, self.session.options.max_input_bytes)
        for _image, group in itertools.groupby(
            rows, key=lambda r: (r["source_path"], r["image_sha256"])
        ):
            members = list(group)
            image_job, _spec = image_job_of(members[0])
            image, problem = await anyio.to_thread.run_sync(load_image, image_job)
            for row in members:
                if image is None:
                    assert problem is not None
                    self.session.fail(row, problem, sent=False)
                    continue
                _job, spec = image_job_of(row)
                line = await anyio.to_thread.run_sync(
                    request_line, row["generation_id"], image, spec.language, spec.variation
                )
                await anyio.to_thread.run_sync(requests.write, line)
        requests.close()
        batch_jobs.update_job(
            self.store, job["id"], requests=requests.lines, input_bytes=requests.size
        )
        if requests.lines == 0:
            requests.discard()
            batch_jobs.update_job(self.store, job["id"], state=JobState.NOT_SUBMITTED)
            batch_jobs.mark_imported(self.store, job["id"])
            return None
        return requests.path
