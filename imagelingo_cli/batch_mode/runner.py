"""The library entry points behind `process --batch`, `retry-failed --batch` and `batch …`.
Each is one run (a `runs` row with a heartbeat lease), callable without Typer:

    submit(request, jobs, store, ...) -> BatchModeSummary   build, submit and wait for jobs of a
                                                             process or retry-failed request
    collect(store, connection, job_ids, ...) -> BatchModeSummary    wait for jobs, import them
    cancel(store, connection, job_id, ...) -> BatchModeSummary      cancel at Google, then collect
    refresh(store, connection, job_ids) -> list[JobStatus]          what Google says now

A run follows a job (waits for it, imports it) only while it holds it (`batch_jobs.claim_job`):
two processes never import one job. A rerun of the same `process --batch` meets the variations
already in jobs as skipped (`in_batch`) and follows those jobs instead of making new ones.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import anyio

from imagelingo_cli import events as ev
from imagelingo_cli.batch_mode.building import JobBuilder
from imagelingo_cli.batch_mode.clients import BatchClients
from imagelingo_cli.batch_mode.importing import JobImport
from imagelingo_cli.batch_mode.session import BatchModeOptions, Session
from imagelingo_cli.batch_mode.submission import Submission
from imagelingo_cli.batch_mode.waiting import wait_for
from imagelingo_cli.clock import Clock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.engine.batch import renew_lease
from imagelingo_cli.engine.jobs import BatchOptions, ImageJob
from imagelingo_cli.engine.run import Run
from imagelingo_cli.engine.tally import Tally
from imagelingo_cli.errors import SetupError, TranslationError
from imagelingo_cli.gemini_batch import RemoteJob
from imagelingo_cli.outputs import remove_stale_temp_files
from imagelingo_cli.pathtext import encode_path
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.runner import Connection, ProcessRequest, RetryRequest
from imagelingo_cli.states import JobState, RunStatus, SkipReason, Trigger
from imagelingo_cli.store import Store, batch_jobs

__all__ = [
    "BatchModeOptions",
    "BatchModeSummary",
    "JobStatus",
    "cancel",
    "collect",
    "refresh",
    "submit",
]

Emit = Callable[[ev.Event], None]
WORK_PREFIX = "imagelingo-batch-"


@dataclass(frozen=True)
class BatchModeSummary:
    """A Batch mode run: the run's counts, and each job it submitted or followed as it stands."""

    summary: ev.Summary
    jobs: tuple[ev.JobView, ...] = ()
    waiting: int = 0  # variations still in jobs at Google
    left: tuple[ev.JobLeft, ...] = ()

    @property
    def problems(self) -> tuple[ev.JobLeft, ...]:
        return tuple(left for left in self.left if left.problem)


@dataclass(frozen=True)
class _Plan:
    """One Batch mode run: what it is recorded as, and where its requests go."""

    command: str
    connection: Connection
    concurrency: int = 4
    force: bool = False
    language: str | None = None
    model: str | None = None
    run_options: dict[str, Any] | None = None
    seed: int | None = None


async def submit(
    request: ProcessRequest | RetryRequest,
    jobs: Sequence[ImageJob],
    store: Store,
    *,
    options: BatchModeOptions,
    clock: Clock,
    emit: Emit,
    control: BatchControl | None = None,
) -> BatchModeSummary:
    """`process --batch` (the planned images' variations) or `retry-failed --batch` (the
    chosen failed ones) as jobs; wait for them unless told not to. Variations already in jobs
    are not sent again: their jobs are followed."""
    if isinstance(request, ProcessRequest):
        connections = [request.connection]
        plan = _Plan(
            "process",
            request.connection,
            request.concurrency,
            request.force,
            ",".join(language.tag for language in request.languages),
            request.model,
            dict(request.batch_options().run_options),
        )
    else:
        connections = list(request.connections().values())
        plan = _Plan(
            "retry-failed",
            request.connection,
            request.concurrency,
            language=",".join(sorted({str(r["target_language"]) for r in request.rows})),
            model=request.model or ",".join(sorted({str(r["model"]) for r in request.rows})),
            run_options=dict(request.batch_options().run_options),
            seed=request.seed,
        )
    for connection in connections:
        if connection.simulate and not options.wait:
            raise SetupError(
                "not waiting for the jobs needs a server that outlives this run, and a "
                "simulator started for the run stops with it (start one with imagelingo "
                "simulator serve, and point the base URL at it)"
            )
    return await _submit(plan, jobs, store, options, clock, emit, control)


async def collect(
    store: Store,
    connection: Connection,
    job_ids: Sequence[str] | None = None,
    *,
    options: BatchModeOptions,
    clock: Clock,
    emit: Emit,
    control: BatchControl | None = None,
) -> BatchModeSummary:
    """Wait for these jobs (default: every job whose outcome is not recorded yet), finish
    submitting any a crash left unsubmitted, and import each as it ends."""
    wanted = list(job_ids) if job_ids is not None else _unimported(store)
    plan = _Plan("batch collect", connection, run_options={"jobs": wanted})

    async def body(session: Session) -> list[str]:
        await _follow_all(session, wanted)
        return wanted

    total = sum(batch_jobs.open_count(store, job_id) for job_id in wanted)
    return await _in_run(plan, store, options, clock, emit, control, body, total)


async def cancel(
    store: Store,
    connection: Connection,
    job_id: str,
    *,
    options: BatchModeOptions,
    clock: Clock,
    emit: Emit,
    control: BatchControl | None = None,
) -> BatchModeSummary:
    """Cancel the job at Google, then record its end: what it finished is imported, the rest
    is interrupted (sent again by the next `process --batch` or `retry-failed`). A job that
    never reached Google is not created at all. SetupError: a job being submitted by a live
    run right now, or one that has ended already."""
    job = batch_jobs.job(store, job_id)
    if job["imported_at"] is not None or JobState(job["state"]).ended:
        raise SetupError(f"{ev.JobView.of(job).label} has ended already ({job['state']})")
    if job["state"] == JobState.SUBMITTING and store._run_alive(job["run_id"]):
        raise SetupError(
            f"{job['display_name']} is being submitted by run {job['run_id']} right now; "
            "cancel it once it is submitted"
        )
    plan = _Plan("batch cancel", connection, run_options={"jobs": [job_id]})

    async def body(session: Session) -> list[str]:
        await _cancel_at_google(session, batch_jobs.job(store, job_id))
        await _follow_all(session, [job_id])
        return [job_id]

    total = batch_jobs.open_count(store, job_id)
    return await _in_run(plan, store, options, clock, emit, control, body, total)


@dataclass(frozen=True)
class JobStatus:
    """A job as recorded, refreshed from Google when it can be."""

    job: ev.JobView
    row: dict[str, Any]
    remote: RemoteJob | None  # None: not at Google yet, ended and imported, or unreachable
    error: str | None = None  # why it could not be refreshed
    variations: dict[str, int] | None = None  # its variations by status


async def refresh(store: Store, connection: Connection, job_ids: Sequence[str]) -> list[JobStatus]:
    """Each job as Google shows it now (recorded as seen); jobs whose outcome is imported are
    shown as recorded."""
    found: list[JobStatus] = []
    async with BatchClients(connection) as clients:
        for job_id in job_ids:
            job = batch_jobs.job(store, job_id)
            remote: RemoteJob | None = None
            problem: str | None = None
            if job["name"] and job["imported_at"] is None:
                try:
                    client = await clients.get(str(job["backend"]), job.get("base_url"))
                    remote = await client.get(str(job["name"]))
                except (TranslationError, SetupError) as exc:
                    problem = str(exc)
                else:
                    batch_jobs.update_job(
                        store,
                        job_id,
                        state=remote.state,
                        api_state=remote.api_state,
                        succeeded_requests=remote.counts.succeeded,
                        failed_requests=remote.counts.failed,
                    )
            row = batch_jobs.job(store, job_id)
            found.append(
                JobStatus(
                    ev.JobView.of(row), row, remote, problem, batch_jobs.variations(store, job_id)
                )
            )
    return found


# --- one run ----------------------------------------------------------------------------------


async def _submit(
    plan: _Plan,
    jobs: Sequence[ImageJob],
    store: Store,
    options: BatchModeOptions,
    clock: Clock,
    emit: Emit,
    control: BatchControl | None,
) -> BatchModeSummary:
    async def body(session: Session) -> list[str]:
        for out_dir in sorted({spec.out_dir for job in jobs for spec in job.variations}):
            store.register_output_folder(encode_path(out_dir))  # outputs are never inputs
        builder = JobBuilder(session, Submission(session), plan.connection.base_url)
        await builder.add(jobs, plan.concurrency)
        await builder.finish()
        followed = list(dict.fromkeys([*builder.recorded, *session.held]))
        if options.wait:
            await _follow_all(session, followed)
            return followed
        for job_id in followed:
            view = session.view(job_id)
            if not view.state.ended:
                reason = "submitted; imagelingo batch collect waits for it and imports it"
                session.emit(ev.JobLeft(view, reason, problem=False))
        return followed

    total = sum(len(job.variations) for job in jobs)
    return await _in_run(plan, store, options, clock, emit, control, body, total)


async def _in_run(
    plan: _Plan,
    store: Store,
    options: BatchModeOptions,
    clock: Clock,
    emit: Emit,
    control: BatchControl | None,
    body: Callable[[Session], Awaitable[list[str]]],
    total: int,
) -> BatchModeSummary:
    """Start the run, keep its lease while `body` works (it returns the jobs it followed), and
    record how the run ended."""
    started = time.perf_counter()
    control = control or BatchControl()
    store.recover_dead_runs()
    run_id = store.start_run(
        plan.command,
        target_language=plan.language,
        model=plan.model,
        backend=plan.connection.backend,
        options={**(plan.run_options or {}), **options.run_options()},
    )
    batch_options = BatchOptions(
        plan.command,
        Trigger.BATCH,
        RetryPolicy(max_retries=0, auto_retry=False),
        max(1, plan.concurrency),
        force=plan.force,
        base_url=plan.connection.base_url,
    )
    tally = Tally()
    held: dict[str, None] = {}
    left: list[ev.JobLeft] = []
    in_jobs = 0  # planned variations met in jobs: followed, not skipped

    def observe(event: ev.Event) -> None:
        """Note the jobs that hold planned variations, and why waiting for a job stopped."""
        nonlocal in_jobs
        if isinstance(event, ev.VariationSkipped) and event.reason is SkipReason.IN_BATCH:
            in_jobs += 1
            holder = batch_jobs.job_holding(store, event.ref.generation_id)
            if holder is not None:
                held[holder] = None
        elif isinstance(event, ev.JobLeft):
            left.append(event)
        emit(event)

    run = Run(store, run_id, batch_options, clock, observe, control, tally)
    followed: list[str] = []
    status = RunStatus.INTERRUPTED
    emit(ev.BatchStarted(run_id, plan.command, total, batch_options.concurrency, 1))
    work_root = _work_root(store)
    if not store.other_live_runs():  # a live run's folder looks the same as a stale one
        _remove_stale_work(work_root)
    with tempfile.TemporaryDirectory(prefix=WORK_PREFIX, dir=work_root) as work:
        clients = BatchClients(plan.connection, seed=plan.seed if plan.seed is not None else 0)
        session = Session(run, clients, options, Path(work), held)
        try:
            async with clients, anyio.create_task_group() as lease:
                lease.start_soon(renew_lease, store, run_id)
                followed = await body(session)
                lease.cancel_scope.cancel()
            status = _status(store, tally, followed, control)
        finally:
            waiting = _waiting(store, followed)
            summary = replace(
                tally.summary(
                    run_id,
                    status,
                    total=total,
                    elapsed=time.perf_counter() - started,
                    files_skipped={},
                    rate=ev.RateRecord(),
                ),
                skipped=tally.skipped - in_jobs,
            )
            counts = {k: v for k, v in asdict(summary).items() if k not in ("failures", "run_id")}
            store.finish_run(run_id, status, counts | {"waiting": waiting, "jobs": followed})
    emit(ev.BatchFinished(summary))
    views = tuple(ev.JobView.of(batch_jobs.job(store, job_id)) for job_id in followed)
    return BatchModeSummary(summary, views, waiting, tuple(left))


async def _follow_all(session: Session, job_ids: Sequence[str]) -> None:
    await _remove_stale_temp_files(session, job_ids)
    async with anyio.create_task_group() as group:
        for job_id in dict.fromkeys(job_ids):
            group.start_soon(_follow, session, job_id)


async def _remove_stale_temp_files(session: Session, job_ids: Sequence[str]) -> None:
    """The temp files of outputs a crash cut short, in the folders these jobs write to: before
    any of them is imported (the imports of this run write temp files that look the same), and
    only while no other run could be writing."""
    store = session.run.store
    if store.other_live_runs():
        return
    folders = {folder for job_id in job_ids for folder in batch_jobs.out_dirs(store, job_id)}
    for folder in sorted(folders):
        await anyio.to_thread.run_sync(remove_stale_temp_files, Path(folder))


async def _follow(session: Session, job_id: str) -> None:
    """Wait for one job and import it, while this run holds it."""
    store, run = session.run.store, session.run
    holder = batch_jobs.claim_job(store, job_id, run.run_id)
    if holder is not None:
        reason = f"another imagelingo run ({holder}) is waiting for it"
        session.emit(ev.JobLeft(session.view(job_id), reason, problem=False))
        return
    try:
        job = batch_jobs.job(store, job_id)
        if job["imported_at"] is not None:
            return
        if job["state"] == JobState.SUBMITTING:
            await Submission(session).resume(job)
            job = batch_jobs.job(store, job_id)
            if job["imported_at"] is not None or job["state"] == JobState.SUBMITTING:
                return  # refused (recorded), or still unknown whether Google has it (said)
        client = await session.client(job)
        ending = await wait_for(session, job, client)
        if ending is not None:
            await JobImport(session).settle(job, ending, client)
    finally:
        batch_jobs.release_job(store, job_id, run.run_id)


async def _cancel_at_google(session: Session, job: dict[str, Any]) -> None:
    """Cancel the job at Google. One recorded but never created is created no more: its
    variations are interrupted (they were never sent)."""
    store = session.run.store
    client = await session.client(job)
    name = job["name"]
    if name is None:
        name = await client.find(str(job["display_name"]))
        if name is None:
            for row in batch_jobs.open_attempts(store, job["id"]):
                session.interrupt(row)
            batch_jobs.update_job(store, job["id"], state=JobState.NOT_SUBMITTED)
            batch_jobs.mark_imported(store, job["id"])
            return
        batch_jobs.set_created(store, job["id"], name)
    await client.cancel(str(name))


def _status(
    store: Store, tally: Tally, followed: Sequence[str], control: BatchControl
) -> RunStatus:
    if control.stop_requested:
        return RunStatus.INTERRUPTED
    if _waiting(store, followed):
        return RunStatus.SUBMITTED
    return tally.status(stopped=False)


def _waiting(store: Store, job_ids: Sequence[str]) -> int:
    """Variations still waiting in these jobs."""
    return sum(batch_jobs.open_count(store, job_id) for job_id in job_ids)


def _unimported(store: Store) -> list[str]:
    return [str(row["id"]) for row in batch_jobs.unimported_jobs(store)]


def _remove_stale_work(root: str | None) -> None:
    """Folders of JSONL files left by runs that were killed (their jobs are rebuilt from the
    database when needed)."""
    for folder in Path(root or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def _work_root(store: Store) -> str | None:
    """JSONL files are written next to the database (the system's temporary folder may be
    too small for a job of gigabytes)."""
    if store.path is None:
        return None
    folder = store.path.expanduser().parent
    return str(folder) if folder.is_dir() else None
