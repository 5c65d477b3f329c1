"""Waiting for a job at Google: poll it, backing off from seconds to minutes, record what each
poll shows, and stop at its end, or when waiting longer would not help.

A poll that fails is tried again after the next interval (the job is not affected). Waiting
stops, the job left as it is at Google and its variations `batched`, when the run is asked to
stop (Ctrl-C never cancels a job), when the job stays PENDING past `pending_limit`, in a state
this version does not know past `unknown_limit`, when the API refuses to show it for a reason
a retry will not fix, or when it SUCCEEDED but offers no results past `results_limit` (then
it is treated as ended, and its variations fail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagelingo_cli import events as ev
from imagelingo_cli.batch_mode.session import Session
from imagelingo_cli.errors import TranslationError
from imagelingo_cli.gemini_batch import BatchClient, RemoteJob
from imagelingo_cli.states import JobState
from imagelingo_cli.store import batch_jobs

_NOT_FOUND = 404
STOPPED = "stopped waiting; the job goes on at Google"


@dataclass(frozen=True)
class Ending:
    """How waiting ended: the job as last seen (None when the API no longer knows it)."""

    remote: RemoteJob | None

    @property
    def state(self) -> JobState:
        return JobState.GONE if self.remote is None else self.remote.state


async def wait_for(session: Session, job: dict[str, Any], client: BatchClient) -> Ending | None:
    """The job once it has ended; None when waiting stopped first (said with JobLeft)."""
    run = session.run
    clock, options = run.clock, session.options
    name = str(job["name"])
    polls = 0
    since: dict[JobState, float] = {}  # when each limited condition was first seen
    while True:
        delay = options.poll_interval(polls)
        polls += 1
        try:
            remote = await client.get(name)
        except TranslationError as error:
            if error.http_status == _NOT_FOUND:
                batch_jobs.update_job(run.store, job["id"], state=JobState.GONE)
                return Ending(None)
            if not error.transient:
                session.left(job["id"], f"the API refused to show the job: {error}")
                return None
            if not await session.pause(job["id"], error, "polling", delay):
                session.left(job["id"], STOPPED, problem=False)
                return None
            continue
        _record(session, job, remote)
        state = remote.state
        waiting_for_results = state is JobState.SUCCEEDED and not remote.has_results
        if state.ended and not waiting_for_results:
            session.emit(ev.JobPolled(session.view(job["id"]), None))
            return Ending(remote)
        limited = JobState.SUCCEEDED if waiting_for_results else state
        for_s = clock.now() - since.setdefault(limited, clock.now())
        if waiting_for_results and for_s >= options.results_limit:
            return Ending(remote)  # ended without results: its variations fail
        reason = _over_limit(session, limited, for_s, remote.api_state)
        if reason is not None:
            session.left(job["id"], reason)
            return None
        session.emit(ev.JobPolled(session.view(job["id"]), clock.now() + delay))
        with run.control.waiting():
            await clock.sleep(delay)
        if run.control.stop_requested:
            session.left(job["id"], STOPPED, problem=False)
            return None


def _record(session: Session, job: dict[str, Any], remote: RemoteJob) -> None:
    error = remote.error
    batch_jobs.update_job(
        session.run.store,
        job["id"],
        state=remote.state,
        api_state=remote.api_state,
        succeeded_requests=remote.counts.succeeded,
        failed_requests=remote.counts.failed,
        result_file=remote.result_file,
        error_message=str(error.get("message") or "") if error else None,
    )


def _over_limit(session: Session, state: JobState, for_s: float, api_state: str) -> str | None:
    options = session.options
    if state is JobState.PENDING and for_s >= options.pending_limit:
        return (
            f"still pending after {_duration(for_s)} of waiting (Google aims at 24 h and expires"
            " jobs after 48 h); collect it later, or cancel it and submit again"
        )
    if state is JobState.UNKNOWN and for_s >= options.unknown_limit:
        return (
            f"in a state this version does not know ({api_state}) for {_duration(for_s)};"
            " see imagelingo batch status"
        )
    return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
