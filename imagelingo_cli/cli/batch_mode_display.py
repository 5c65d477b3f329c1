"""How Batch mode is shown: its jobs while they wait (state, requests done and failed from
batchStats, elapsed, the next poll) over the variation counts, on a terminal as a live view and
elsewhere as one plain line per change; JSON lines for --json (`reporters.JsonReporter`).
Then the failures, a summary line, and how to come back to jobs still at Google."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from imagelingo_cli import events as ev
from imagelingo_cli.batch_mode.runner import BatchModeSummary
from imagelingo_cli.cli.progress import ProgressState, clock_text, countdown, stop_text
from imagelingo_cli.cli.reporters import (
    JsonReporter,
    LiveReporter,
    PipeConsole,
    PlainReporter,
    Reporter,
)
from imagelingo_cli.cli.wording import one_line
from imagelingo_cli.clock import Clock
from imagelingo_cli.states import JobState

STATE_STYLE = {
    JobState.SUBMITTING: "cyan",
    JobState.PENDING: "dim",
    JobState.RUNNING: "cyan",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.EXPIRED: "red",
    JobState.NOT_SUBMITTED: "red",
    JobState.CANCELLED: "magenta",
    JobState.GONE: "magenta",
    JobState.UNKNOWN: "yellow",
}
COME_BACK = "imagelingo batch collect"
SHORT_JOB_ID = 12  # ids are ULIDs: their first characters tell jobs apart; commands take them
NARROW = 80
WIDE_COLUMNS = ("Job", "State", "Requests", "Done", "Failed", "Elapsed")


@dataclass
class JobLine:
    """One job as the view shows it."""

    job: ev.JobView
    first_seen: float
    next_poll_at: float | None = None
    note: str = ""


class JobsState:
    """The jobs of a run, folded from job events (variation events go to a ProgressState)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.lines: dict[str, JobLine] = {}

    def apply(self, event: ev.Event) -> None:
        now = self.now()
        match event:
            case ev.JobRecorded(job=job):
                self._line(job, now).note = "uploading the requests"
            case ev.JobSubmitted(job=job, found=found):
                line = self._line(job, now)
                line.note = "found at Google, created before the interruption" if found else ""
            case ev.JobPolled(job=job, next_poll_at=next_poll_at):
                line = self._line(job, now)
                line.next_poll_at, line.note = next_poll_at, ""
            case ev.JobTrouble(job=job):
                line = self._line(job, now)
                line.next_poll_at, line.note = event.retry_at, trouble_text(event, now)
            case ev.JobImporting(job=job):
                line = self._line(job, now)
                line.next_poll_at, line.note = None, "recording its results"
            case ev.JobImported(job=job):
                self._line(job, now).note = imported_text(event)
            case ev.JobLeft(job=job, reason=reason):
                line = self._line(job, now)
                line.next_poll_at, line.note = None, reason

    def _line(self, job: ev.JobView, now: float) -> JobLine:
        line = self.lines.get(job.job_id)
        if line is None:
            line = self.lines[job.job_id] = JobLine(job, now)
        line.job = job
        return line


def trouble_text(event: ev.JobTrouble, now: float) -> str:
    text = f"{event.doing}: {event.error.label} - {one_line(event.error.message)}"
    if event.retry_at is not None:
        text += f" · trying again in {countdown(event.retry_at, now)}s"
    return text


def imported_text(event: ev.JobImported) -> str:
    parts = [f"{event.completed} completed", f"{event.failed} failed"]
    if event.interrupted:
        parts.append(f"{event.interrupted} interrupted")
    text = "recorded: " + ", ".join(parts)
    if event.error is not None:
        text += f" ({event.error.label}: {one_line(event.error.message)})"
    return text


def state_text(job: ev.JobView) -> str:
    if job.state is JobState.UNKNOWN and job.api_state:
        return job.api_state
    return job.state.value.replace("_", " ").upper()


def render_jobs(jobs: JobsState, progress: ProgressState) -> RenderableType:
    """The jobs table, then the variation counts and what Ctrl-C does."""
    now = jobs.now()
    counts = progress.counts
    footer = Text(
        f"{counts['completed']} done · {counts['failed']} failed · {counts['skipped']} skipped"
        f" · {counts['waiting']} in jobs │ elapsed {clock_text(progress.elapsed(now))}"
    )
    table = JobsTable(list(jobs.lines.values()), now)
    if progress.stopping is not None:
        return Group(table, footer, Text(stop_waiting_text(progress.stopping), "bold yellow"))
    if progress.summary is None:
        return Group(table, footer, Text("Ctrl-C stops waiting (jobs go on at Google)", "dim"))
    return Group(table, footer)


def stop_waiting_text(event: ev.StopRequested) -> str:
    """What Ctrl-C does here: the jobs go on at Google whatever happens to this process."""
    if not event.grace:
        return stop_text(event)
    return f"{event.signal}: stopping; the jobs go on at Google (Ctrl-C again to stop now)"


@dataclass(frozen=True)
class JobsTable:
    """One row per job. The Next column takes what width is left and ends in "…" when its
    note is longer; below 80 columns, requests, done and elapsed fold into one "done" count."""

    lines: list[JobLine]
    now: float

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        narrow = options.max_width < NARROW
        names = ("Job", "State", "Done", "Failed") if narrow else WIDE_COLUMNS
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        for name in names:
            table.add_column(name, no_wrap=True)
        table.add_column("Next")  # wrappable, so it is the column that gives way
        for line in self.lines:
            job = line.job
            state = Text(state_text(job), style=STATE_STYLE[job.state])
            upcoming = Text(self._upcoming(line), no_wrap=True, overflow="ellipsis")
            if narrow:
                done = f"{job.succeeded}/{job.requests}"
                table.add_row(job.job_id[:SHORT_JOB_ID], state, done, str(job.failed), upcoming)
                continue
            table.add_row(
                job.job_id[:SHORT_JOB_ID],
                state,
                str(job.requests),
                str(job.succeeded),
                str(job.failed),
                clock_text(max(0.0, self.now - line.first_seen)),
                upcoming,
            )
        yield table

    def _upcoming(self, line: JobLine) -> str:
        if line.note:
            return line.note
        if line.next_poll_at is not None:
            return f"poll in {countdown(line.next_poll_at, self.now)}s"
        return ""


class LiveJobsReporter(LiveReporter):
    """The live view on a terminal (the engine's LiveReporter, drawing jobs)."""

    def __init__(self, console: Console, now: Callable[[], float]) -> None:
        self.jobs = JobsState(self._now)  # first: rich's Live draws once when it is made
        super().__init__(console, now)

    def __call__(self, event: ev.Event) -> None:
        super().__call__(event)
        with self._lock:
            self.jobs.apply(event)

    def _renderable(self) -> RenderableType:
        with self._lock:
            return render_jobs(self.jobs, self.state)


class PlainJobsReporter(PlainReporter):
    """One plain line per change, jobs included (a poll only when something changed)."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self._seen: dict[str, tuple[JobState, int, int]] = {}

    def _line(self, event: ev.Event) -> str | None:
        match event:
            case ev.JobRecorded(job=job):
                return f"job {job.display_name}: {job.requests} requests, uploading"
            case ev.JobSubmitted(job=job, found=found):
                how = "found at Google (created before the interruption)" if found else "submitted"
                return f"job {job.display_name}: {how} as {job.name}"
            case ev.JobPolled(job=job, next_poll_at=next_poll_at):
                seen = (job.state, job.succeeded, job.failed)
                if self._seen.get(job.job_id) == seen:
                    return None
                self._seen[job.job_id] = seen
                text = f"job {job.label}: {state_text(job)} · {job.succeeded}/{job.requests} done"
                text += f", {job.failed} failed"
                if next_poll_at is not None:
                    text += f" · next poll in {countdown(next_poll_at, self.state.now())}s"
                return text
            case ev.JobTrouble(job=job):
                return f"job {job.label}: {trouble_text(event, self.state.now())}"
            case ev.JobImporting(job=job):
                return f"job {job.label}: {state_text(job)}, recording its results"
            case ev.JobImported(job=job):
                return f"job {job.label}: {imported_text(event)}"
            case ev.JobLeft(job=job, reason=reason):
                return f"job {job.label}: {reason}"
            case ev.StopRequested():
                return stop_waiting_text(event)
        return super()._line(event)


def jobs_reporter_for(json_output: bool, clock: Clock) -> Reporter:
    """JSON lines for --json, the live view on a terminal, plain lines otherwise."""
    if json_output:
        import sys

        from imagelingo_cli.cli.records import EventRecords

        return JsonReporter(sys.stdout, EventRecords(clock.now))
    console = PipeConsole(highlight=False)
    if console.is_terminal:
        return LiveJobsReporter(console, clock.now)
    return PlainJobsReporter(console)


def render_outcome(outcome: BatchModeSummary) -> str:
    """`28 completed, 2 failed, 0 skipped in 3.0 s · 1 job · 28 credits at the batch rate`,
    then what still waits at Google and how to come back to it."""
    summary = outcome.summary
    jobs = len(outcome.jobs)
    lines = [
        f"{summary.completed} completed, {summary.failed} failed, {summary.skipped} skipped"
        f" in {summary.elapsed:.1f} s · {jobs} job{'s' * (jobs != 1)}"
        f" · {summary.credits_charged} credit{'s' * (summary.credits_charged != 1)}"
        " at the batch rate"
    ]
    for left in outcome.problems:
        lines.append(f"{left.job.label}: {left.reason}")
    if outcome.waiting:
        lines.append(
            f"{outcome.waiting} variation{'s' * (outcome.waiting != 1)} wait in jobs at Google"
            f" (Google aims at 24 h; jobs expire after 48 h). Come back with: {COME_BACK}"
        )
    if summary.interrupted:
        lines.append(
            f"Interrupted: {summary.interrupted} variation{'s' * (summary.interrupted != 1)}"
            " not sent. Run the same command again to resume."
        )
    return "\n".join(lines)
