"""Recording a job's outcome, once it has ended, into the same history as interactive attempts.

SUCCEEDED (and CANCELLED, for what it finished): the results, a file streamed to disk or
inline answers, are read line by line and matched to the job's open attempts by `key` (the
generation id), never by position. Each answer is read and verified as an interactive one
(`jsonl.outcome`) and its image written as one is (`OutputFiles`: atomic, its intent recorded
first; `engine.attempts.record_delivery`: one credit on the first success); each Status is
classified the same way. Lines are handled CHUNK at a time by a few workers at once, so
writing outputs overlaps checking the next, and their outcomes recorded RECORD_EVERY at a
time, in one transaction (an output written but not yet recorded is found by its recorded
intent and written again by the next collect).

What no line answered then ends by the job's state: SUCCEEDED, no result for it (API_ERROR);
FAILED, the job's own error; EXPIRED, TIMEOUT; CANCELLED or gone from the API, interrupted (not
an API failure: the next `process --batch` or `retry-failed` sends it again). Only when every
attempt is closed is the job marked imported: a crash or Ctrl-C part way leaves the rest for
the next `batch collect`, which removes the temp files of outputs cut short (before any import
begins), skips the lines already recorded, and writes an output left whole but unrecorded to
the same path again.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from imagelingo_cli import events as ev
from imagelingo_cli.answers import Usage
from imagelingo_cli.batch_mode.jsonl import ResultLine, inline_result, outcome, result_lines
from imagelingo_cli.batch_mode.members import elapsed_ms, image_job_of, ref_of
from imagelingo_cli.batch_mode.session import Session
from imagelingo_cli.batch_mode.waiting import Ending
from imagelingo_cli.digest import sha256
from imagelingo_cli.engine.attempts import record_delivery
from imagelingo_cli.engine.output_files import OutputFiles, PlannedOutput, Written
from imagelingo_cli.errors import ErrorCode, TranslationError, classify_status
from imagelingo_cli.gemini import Translation
from imagelingo_cli.gemini_batch import BatchClient, RemoteJob
from imagelingo_cli.states import JobState
from imagelingo_cli.store import batch_jobs

# Chunks in hand at once: checking images keeps a core busy, and writing their outputs then
# waits on the disk, so two per core keep both busy; more only thrash.
WORKERS = max(2, min(8, 2 * (os.cpu_count() or 1)))
_NOT_FOUND = 404
# Lines a worker handles at once: one query finds their attempts, one thread hop checks them,
# one transaction records their outputs' intents, one thread hop writes the outputs.
CHUNK = 16
CHUNK_BYTES = 4 * 1024 * 1024
RECORD_EVERY = 64  # outcomes recorded in one transaction: the tallies are counted once for them


class JobImport:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.store = session.run.store
        self.outputs = OutputFiles(self.store, force=session.run.options.force)
        self.unkeyed = 0  # result lines without a key: they cannot be matched
        # Keys of the lines taken whose outcome is not recorded yet: a repeated key meanwhile
        # is not taken twice (once recorded, its attempt is no longer open).
        self._taken: set[str] = set()
        self._outcomes: list[tuple[str, Callable[[], None]]] = []  # to record, by variation

    async def settle(self, job: dict[str, Any], ending: Ending, client: BatchClient) -> None:
        """Record the outcome of every variation of the ended job (or leave the rest for a
        later collect, said with JobLeft, when the run stops or the results stay out of
        reach)."""
        run, view = self.session.run, self.session.view(job["id"])
        self.session.emit(ev.JobImporting(view))
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
            chunks = _from_thread(result_lines(path))
        else:
            chunks = _listed(inline_result(entry) for entry in remote.inline_results or ())
        control = self.session.run.control
        send, receive = anyio.create_memory_object_stream[list[ResultLine]]()
        try:
            async with anyio.create_task_group() as group:
                for _ in range(WORKERS):
                    group.start_soon(self._worker, job, receive.clone())
                receive.close()
                async with send:
                    async for chunk in chunks:
                        if control.halted:
                            break
                        await send.send(chunk)
        finally:
            self._record()
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
        self, job: dict[str, Any], chunks: MemoryObjectReceiveStream[list[ResultLine]]
    ) -> None:
        async with chunks:
            async for chunk in chunks:
                await self._chunk(job, chunk)

    async def _chunk(self, job: dict[str, Any], lines: list[ResultLine]) -> None:
        """Results: each variation completed with its image, or failed with its error (none
        once an output could not be written for want of room: they wait for a later
        collect)."""
        run = self.session.run
        if run.control.global_error is not None:
            return
        taken = self._take(job, lines)
        checked = await anyio.to_thread.run_sync(_checked, [line for _, line in taken])
        planned: list[tuple[dict[str, Any], PlannedOutput]] = []
        for (attempt, _), result in zip(taken, checked, strict=True):
            if isinstance(result, TranslationError):
                self._later(attempt, functools.partial(self.session.fail, attempt, result))
                continue
            image_job, spec = image_job_of(attempt)
            output = self.outputs.plan(image_job, spec, ref_of(attempt).generation_id, *result)
            if isinstance(output, TranslationError):
                self._later(attempt, self._delivery(attempt, result[0].usage, output))
            else:
                planned.append((attempt, output))
        if run.control.global_error is not None:  # the disk filled while these were checked
            return
        results = await self.outputs.write([output for _, output in planned])
        # Shorter than planned after a full disk: the rest waits for a later collect.
        for (attempt, output), written in zip(planned, results, strict=False):
            if isinstance(written, TranslationError):
                run.stop_sending_if_global(written)  # at once: the next lines must not be written
            self._later(attempt, self._delivery(attempt, output.translation.usage, written))

    def _take(
        self, job: dict[str, Any], lines: list[ResultLine]
    ) -> list[tuple[dict[str, Any], ResultLine]]:
        """The lines answering one of the job's open attempts, each key once."""
        keyed = [line for line in lines if line.key is not None]
        self.unkeyed += len(lines) - len(keyed)
        wanted = {str(line.key) for line in keyed} - self._taken
        attempts = batch_jobs.open_attempts_among(self.store, job["id"], wanted) if wanted else {}
        taken: list[tuple[dict[str, Any], ResultLine]] = []
        for line in keyed:
            # None: recorded already (a collect cut short), not this job's, or a repeated key.
            attempt = attempts.pop(str(line.key), None)
            if attempt is not None:
                self._taken.add(str(line.key))
                taken.append((attempt, line))
        return taken

    def _delivery(
        self, attempt: dict[str, Any], usage: Usage, written: Written
    ) -> Callable[[], None]:
        return functools.partial(
            record_delivery,
            self.session.run,
            ref_of(attempt),
            batch_jobs.attempt_of(attempt),
            usage,
            written,
            attempt=1,
            max_attempts=1,
            duration_ms=elapsed_ms(attempt["started_at"]),
        )

    def _later(self, attempt: dict[str, Any], record: Callable[[], None]) -> None:
        """Record an attempt's outcome with others, RECORD_EVERY at a time."""
        self._outcomes.append((str(attempt["generation_id"]), record))
        if len(self._outcomes) >= RECORD_EVERY:
            self._record()

    def _record(self) -> None:
        """Record the outcomes in hand, in one transaction."""
        chosen, self._outcomes = self._outcomes, []
        if not chosen:
            return
        with self.store.together(generation_id for generation_id, _ in chosen):
            for _, record in chosen:
                record()
        self._taken.difference_update(generation_id for generation_id, _ in chosen)

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


def _checked(lines: list[ResultLine]) -> list[tuple[Translation, str] | TranslationError]:
    """Each line's verified image and the SHA-256 of its bytes, or why it has none (blocking)."""
    checked: list[tuple[Translation, str] | TranslationError] = []
    for line in lines:
        try:
            translation = outcome(line)
        except TranslationError as error:
            checked.append(error)
        else:
            checked.append((translation, sha256(translation.data)))
    return checked


async def _from_thread(lines: Iterator[ResultLine]) -> AsyncIterator[list[ResultLine]]:
    """A blocking iterator read in a worker thread, a chunk at a time."""
    while chunk := await anyio.to_thread.run_sync(_chunk_of, lines):
        yield chunk


async def _listed(lines: Iterator[ResultLine]) -> AsyncIterator[list[ResultLine]]:
    while chunk := _chunk_of(lines):
        yield chunk


def _chunk_of(lines: Iterator[ResultLine]) -> list[ResultLine]:
    """The next CHUNK lines, fewer when they hold CHUNK_BYTES: large images are taken a few at
    a time, so that the chunks in hand stay small in memory."""
    chunk: list[ResultLine] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += line.size
        if len(chunk) == CHUNK or size >= CHUNK_BYTES:
            break
    return chunk
