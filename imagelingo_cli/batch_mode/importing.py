"""Recording a job's outcome, once it has ended, into the same history as interactive attempts.

SUCCEEDED (and CANCELLED, for what it finished): the results, a file streamed to disk or
inline answers, are read line by line and matched to the job's open attempts by `key` (the
generation id), never by position. Each answer is read and verified as an interactive one
(`jsonl.outcome`) and its image written (`engine.attempts.deliver`: atomic, its intent
recorded first, one credit on the first success); each Status is classified the same way.
Lines are handled by a few workers at once, so writing outputs overlaps checking the next.

What no line answered then ends by the job's state: SUCCEEDED, no result for it (API_ERROR);
FAILED, the job's own error; EXPIRED, TIMEOUT; CANCELLED or gone from the API, interrupted (not
an API failure: the next `process --batch` or `retry-failed` sends it again). Only when every
attempt is closed is the job marked imported: a crash or Ctrl-C part way leaves the rest for
the next `batch collect`, which skips the lines already recorded, removes the temp files of
outputs cut short, and writes an output left whole but unrecorded to the same path again.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from imagelingo_cli import events as ev
from imagelingo_cli.batch_mode.jsonl import ResultLine, inline_result, outcome, result_lines
from imagelingo_cli.batch_mode.members import elapsed_ms, image_job_of, ref_of
from imagelingo_cli.batch_mode.session import Session
from imagelingo_cli.batch_mode.waiting import Ending
from imagelingo_cli.engine.attempts import deliver
from imagelingo_cli.engine.output_files import OutputFiles
from imagelingo_cli.errors import ErrorCode, TranslationError, classify_status
from imagelingo_cli.gemini_batch import BatchClient, RemoteJob
from imagelingo_cli.outputs import remove_stale_temp_files
from imagelingo_cli.states import JobState
from imagelingo_cli.store import batch_jobs

# Lines in hand at once: checking an image (a full decode) keeps a core busy, and its output
# write then waits on the disk, so two per core keep both busy; more only thrash.
WORKERS = max(2, min(8, 2 * (os.cpu_count() or 1)))
_NOT_FOUND = 404


class JobImport:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.store = session.run.store
        self.outputs = OutputFiles(self.store, force=session.run.options.force)
        self.unkeyed = 0  # result lines without a key: they cannot be matched

    async def settle(self, job: dict[str, Any], ending: Ending, client: BatchClient) -> None:
        """Record the outcome of every variation of the ended job (or leave the rest for a
        later collect, said with JobLeft, when the run stops or the results stay out of
        reach)."""
        run, view = self.session.run, self.session.view(job["id"])
        self.session.emit(ev.JobImporting(view))
        if not self.store.other_live_runs():  # a live run's temp files look the same
            for out_dir in batch_jobs.out_dirs(self.store, job["id"]):
                await anyio.to_thread.run_sync(remove_stale_temp_files, Path(out_dir))
        batch_jobs.hold_members(self.store, job["id"], run.run_id)
        before = (run.tally.completed, run.tally.failed, run.tally.interrupted)
        remote = ending.remote
        with_results = remote if remote is not None and remote.has_results else None
        if with_results is not None and not await self._results(job, with_results, client):
            return
        error = self._left_over(job, ending)
        batch_jobs.mark_imported(self.store, job["id"])
        after = (run.tally.completed, run.tally.failed, run.tally.interrupted)
        completed, failed, interrupted = (a - b for a, b in zip(after, before, strict=True))
        self.session.emit(
            ev.JobImported(
                self.session.view(job["id"]),
                completed,
                failed,
                interrupted,
                ev.ErrorInfo.of(error) if error is not None else None,
            )
        )

    async def _results(self, job: dict[str, Any], remote: RemoteJob, client: BatchClient) -> bool:
        """Record every line of the results; False when stopped or out of reach first."""
        path: Path | None = None
        if remote.result_file is not None:
            path = self.session.work_dir / f"{job['display_name']}.results.jsonl"
            if not await self._download(job, client, remote.result_file, path):
                return False
            lines: AsyncIterator[ResultLine] = _from_thread(result_lines(path))
        else:
            lines = _listed(inline_result(entry) for entry in remote.inline_results or ())
        control = self.session.run.control
        send, receive = anyio.create_memory_object_stream[ResultLine]()
        async with anyio.create_task_group() as group:
            for _ in range(WORKERS):
                group.start_soon(self._worker, job, receive.clone())
            receive.close()
            async with send:
                async for line in lines:
                    if control.halted:
                        break
                    await send.send(line)
        if path is not None:
            path.unlink(missing_ok=True)
        if control.stop_requested:
            reason = "stopped while recording its results; imagelingo batch collect finishes"
            self.session.left(job["id"], reason, problem=False)
            return False
        if control.global_error is not None:  # a full disk: the rest stays at Google
            reason = (
                f"stopped recording its results ({control.global_error.message}); "
                "imagelingo batch collect records the rest"
            )
            self.session.left(job["id"], reason)
            return False
        return True

    async def _download(
        self, job: dict[str, Any], client: BatchClient, file_name: str, path: Path
    ) -> bool:
        """The results file, streamed to `path`. A results file may answer 404 for a while
        after the job SUCCEEDED: that, and transient failures, are tried again."""
        session, run = self.session, self.session.run
        started = run.clock.now()
        tries = 0
        while True:
            try:
                with run.control.sending() as scope:
                    await client.download(file_name, path)
                if not scope.cancelled_caught:
                    return True
            except TranslationError as error:
                not_yet = error.http_status == _NOT_FOUND
                waited = run.clock.now() - started
                if not (error.transient or not_yet) or waited >= session.options.results_limit:
                    session.left(job["id"], f"its results could not be downloaded: {error}")
                    return False
                delay = session.options.poll_interval(tries)
                tries += 1
                await session.pause(job["id"], error, "downloading the results", delay)
            if run.control.stop_requested:
                reason = "stopped before its results were downloaded"
                session.left(job["id"], reason, problem=False)
                return False

    async def _worker(
        self, job: dict[str, Any], lines: MemoryObjectReceiveStream[ResultLine]
    ) -> None:
        async with lines:
            async for line in lines:
                await self._line(job, line)

    async def _line(self, job: dict[str, Any], line: ResultLine) -> None:
        """One result: the variation completed with its image, or failed with its error
        (none once an output could not be written for want of room: it waits for a later
        collect)."""
        if self.session.run.control.global_error is not None:
            return
        if line.key is None:
            self.unkeyed += 1
            return
        attempt = batch_jobs.open_attempt(self.store, job["id"], line.key)
        if attempt is None:  # recorded already (a collect cut short), or not this job's
            return
        try:
            translation = await outcome(line)
        except TranslationError as error:
            self.session.fail(attempt, error)
            return
        run, ref = self.session.run, ref_of(attempt)
        duration_ms = elapsed_ms(attempt["started_at"])
        image_job, spec = image_job_of(attempt)
        await deliver(
            run,
            self.outputs,
            image_job,
            spec,
            ref,
            batch_jobs.attempt_of(attempt),
            translation,
            attempt=1,
            max_attempts=1,
            duration_ms=duration_ms,
        )

    def _left_over(self, job: dict[str, Any], ending: Ending) -> TranslationError | None:
        """End the attempts no result line answered, by the job's state; the job's own error
        (FAILED, EXPIRED), if it has one."""
        state = ending.state
        error = _job_error(ending, self.unkeyed)
        if error is not None and state in (JobState.FAILED, JobState.EXPIRED):
            batch_jobs.update_job(
                self.store, job["id"], error_code=error.code.value, error_message=error.message
            )
        for row in batch_jobs.open_attempts(self.store, job["id"]):
            if error is None:
                self.session.interrupt(row)
            else:
                self.session.fail(row, error)
        return error if state in (JobState.FAILED, JobState.EXPIRED) else None


def _job_error(ending: Ending, unkeyed: int) -> TranslationError | None:
    """What a variation left without a result failed with; None: it was interrupted."""
    state = ending.state
    if state is JobState.FAILED:
        status = ending.remote.error if ending.remote is not None else None
        if status is None:
            return TranslationError(ErrorCode.API_ERROR, "the batch job failed without saying why")
        error = classify_status(status)
        return replace(error, message=f"the batch job failed: {error.message}")
    if state is JobState.EXPIRED:
        return TranslationError(
            ErrorCode.TIMEOUT,
            "the batch job expired: Google did not finish it within 48 hours, so it has no results",
            api_status="BATCH_STATE_EXPIRED",
        )
    if state is JobState.SUCCEEDED:
        why = f" ({unkeyed} result lines had no key to match them by)" if unkeyed else ""
        return TranslationError(
            ErrorCode.API_ERROR, f"the batch job's results hold no answer for this variation{why}"
        )
    return None  # cancelled, or gone from the API


async def _from_thread(lines: Iterator[ResultLine]) -> AsyncIterator[ResultLine]:
    """A blocking iterator read in a worker thread, WORKERS items at a time."""
    while True:
        chunk = await anyio.to_thread.run_sync(list, itertools.islice(lines, WORKERS))
        if not chunk:
            return
        for line in chunk:
            yield line


async def _listed(lines: Iterator[ResultLine]) -> AsyncIterator[ResultLine]:
    for line in lines:
        yield line
