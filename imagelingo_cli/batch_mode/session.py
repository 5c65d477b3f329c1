"""What the parts of a Batch mode run share: the engine's run (database, clock, events, stop
switch, tally), the Batch API clients, the folder for JSONL files, and the options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagelingo_cli import events as ev
from imagelingo_cli.batch_mode.clients import BatchClients
from imagelingo_cli.batch_mode.jsonl import MAX_INPUT_BYTES
from imagelingo_cli.batch_mode.members import elapsed_ms, ref_of
from imagelingo_cli.engine.run import Run
from imagelingo_cli.errors import SetupError, TranslationError
from imagelingo_cli.gemini_batch import BatchClient
from imagelingo_cli.store import batch_jobs

POLL_GROWTH = 1.5


@dataclass(frozen=True)
class BatchModeOptions:
    """How jobs are made and waited for. Polls back off from `first_poll` seconds to
    `max_poll`; a job still PENDING after `pending_limit` seconds of waiting, in a state
    this version does not know for `unknown_limit`, or SUCCEEDED without downloadable results
    for `results_limit`, is reported and no longer waited for."""

    wait: bool = True  # False: return once the jobs are submitted
    max_input_bytes: int = MAX_INPUT_BYTES  # a job's JSONL stays under this; more makes more jobs
    first_poll: float = 5.0
    max_poll: float = 300.0
    pending_limit: float = 24 * 3600.0  # Google's turnaround target
    unknown_limit: float = 600.0
    results_limit: float = 600.0

    def __post_init__(self) -> None:
        if self.max_input_bytes < 1:
            raise SetupError(
                f"a job's input must be allowed some bytes (got {self.max_input_bytes})"
            )
        for name in ("first_poll", "max_poll", "pending_limit", "unknown_limit", "results_limit"):
            if not getattr(self, name) > 0:
                raise SetupError(f"{name.replace('_', ' ')} must be more than 0 seconds")

    def poll_interval(self, polls: int) -> float:
        """Seconds before poll number `polls` + 1: seconds at first, then minutes (growing by
        half each time, so a job is seen ended at most half its age late)."""
        backoff: float = self.first_poll * POLL_GROWTH ** min(polls, 60)
        return min(backoff, max(self.max_poll, self.first_poll))

    def run_options(self) -> dict[str, Any]:
        return {
            "batch": True,
            "wait": self.wait,
            "max_input_bytes": self.max_input_bytes,
            # one attempt per variation per job: history numbers them 1/1
            "auto_retry": False,
            "max_retries": 0,
        }


@dataclass
class Session:
    run: Run
    clients: BatchClients
    options: BatchModeOptions
    work_dir: Path
    # Jobs found holding variations this run planned: they are followed, not sent again.
    held: dict[str, None] = field(default_factory=dict)

    def emit(self, event: ev.Event) -> None:
        self.run.emit(event)

    def fail(self, row: Mapping[str, Any], error: TranslationError, *, sent: bool = True) -> None:
        """The job's attempt in `row` (`batch_jobs.open_attempts`) ends failed, and with it
        its variation's round."""
        ref = ref_of(row)
        duration_ms = elapsed_ms(str(row["started_at"]))
        self.run.store.attempt_failed(
            batch_jobs.attempt_of(row),
            ref.generation_id,
            error,
            duration_ms=duration_ms,
            retry_in_ms=None,
        )
        self.run.failed(ref, error, attempts=1, sent=sent)

    def interrupt(self, row: Mapping[str, Any]) -> None:
        """The job's attempt in `row` ends without an answer: its variation is sent again
        by a later run."""
        duration_ms = elapsed_ms(str(row["started_at"]))
        self.run.store.attempt_interrupted(batch_jobs.attempt_of(row), duration_ms=duration_ms)
        self.run.interrupted(ref_of(row), 1)

    def left(self, job_id: str, reason: str, *, problem: bool = True) -> None:
        """Not waiting for the job any longer (it may still deliver): say why."""
        self.emit(ev.JobLeft(self.view(job_id), reason, problem))

    async def pause(self, job_id: str, error: TranslationError, doing: str, seconds: float) -> bool:
        """Say what failed about the job (not the job itself) and wait `seconds` before
        trying again; False when the run is stopping instead."""
        run = self.run
        info, retry_at = ev.ErrorInfo.of(error), run.clock.now() + seconds
        self.emit(ev.JobTrouble(self.view(job_id), info, doing, retry_at))
        with run.control.waiting():
            await run.clock.sleep(seconds)
        return not run.control.stop_requested

    def view(self, job_id: str) -> ev.JobView:
        return ev.JobView.of(batch_jobs.job(self.run.store, job_id))

    async def client(self, job: dict[str, Any]) -> BatchClient:
        return await self.clients.get(str(job["backend"]), job.get("base_url"))
