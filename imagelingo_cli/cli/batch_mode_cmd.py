"""`imagelingo batch list | status [JOB] | collect [JOB] | cancel JOB`, and what `process
--batch` and `retry-failed --batch` hand over to: Gemini Batch API jobs. (Interactive batches
are run by `cli/batch.py`.)"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    fail_setup,
    nothing_to_do,
    open_db,
    read_db,
)
from imagelingo_cli.cli.options import PlainHelp

if TYPE_CHECKING:
    from imagelingo_cli import events as ev
    from imagelingo_cli.batch_mode.runner import BatchModeOptions, BatchModeSummary, JobStatus
    from imagelingo_cli.cli.reporters import Reporter
    from imagelingo_cli.clock import Clock
    from imagelingo_cli.control import BatchControl
    from imagelingo_cli.engine.jobs import ImageJob
    from imagelingo_cli.runner import Connection, ProcessRequest, RetryRequest
    from imagelingo_cli.settings import Settings
    from imagelingo_cli.store import Store

app = typer.Typer(
    help="Gemini Batch API jobs (process --batch): half the price, results within 24 h.",
    no_args_is_help=True,
)

# What starts a Batch mode run, once its clock, display and stop switch are known.
Start = Callable[
    ["Clock", Callable[["ev.Event"], None], "BatchControl"], Awaitable["BatchModeSummary"]
]

JSON = typer.Option(False, "--json", help="JSON only on stdout.")
POLL = typer.Option(
    None,
    "--poll",
    metavar="SECONDS",
    help="Seconds before the first poll (default 5; polls back off to 5 min).",
)
JOB = typer.Argument(
    ..., metavar="JOB", help="The job: imagelingo's id (or a prefix), or its batches/… name."
)
SOME_JOB = typer.Argument(None, metavar="JOB", help="One job (default: every one not collected).")


def batch_mode_options(settings: Settings, *, wait: bool = True) -> BatchModeOptions:
    from imagelingo_cli.batch_mode.runner import BatchModeOptions

    return BatchModeOptions(
        wait=wait,
        max_input_bytes=int(settings.batch_max_mb * 1_000_000),
        first_poll=settings.batch_poll,
    )


def submit(
    ctx: typer.Context,
    request: ProcessRequest | RetryRequest,
    jobs: list[ImageJob],
    store: Store,
    settings: Settings,
    *,
    wait: bool,
    json_output: bool,
) -> NoReturn:
    """`process --batch` or `retry-failed --batch`: the planned variations as Batch API jobs
    (the store is closed)."""
    from imagelingo_cli.batch_mode import runner

    modes = batch_mode_options(settings, wait=wait)
    _run(
        ctx,
        store,
        json_output,
        lambda clock, emit, control: runner.submit(
            request, jobs, store, options=modes, clock=clock, emit=emit, control=control
        ),
    )


@app.command("list", cls=PlainHelp)
def list_jobs(
    limit: int = typer.Option(20, "--limit", metavar="N", help="Newest jobs shown (0: all)."),
    db: Path | None = options.DB,
    json_output: bool = JSON,
) -> None:
    """The jobs recorded here, newest first, as last seen (no request is made; `batch status`
    asks Google and shows each job's batches/… name).

    \b
    Examples:
      imagelingo batch list
      imagelingo batch list --limit 0 --json | jq '.[].state'
    """
    from imagelingo_cli.store import batch_jobs

    store = read_db(db)
    try:
        rows = batch_jobs.jobs(store, limit or None)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps([_public(row) for row in rows], default=str))
        return
    _print_jobs(rows)


@app.command(cls=PlainHelp)
def status(
    job: str | None = SOME_JOB,
    base_url: str | None = options.BASE_URL,
    timeout: float | None = options.TIMEOUT,
    db: Path | None = options.DB,
    json_output: bool = JSON,
) -> None:
    """What Google says of each job now: state, requests done and failed, its error.

    \b
    Examples:
      imagelingo batch status
      imagelingo batch status 01m8q0xa
    """
    import anyio

    from imagelingo_cli.batch_mode.runner import refresh
    from imagelingo_cli.errors import SetupError
    from imagelingo_cli.store import batch_jobs

    store = open_db(db, create=False)
    try:
        ids = (
            [_resolve(store, job)]
            if job
            else [str(r["id"]) for r in batch_jobs.unimported_jobs(store)]
        )
        connection = _connection(base_url, timeout)
        try:
            found = anyio.run(refresh, store, connection, ids, backend="asyncio")
        except SetupError as exc:
            fail_setup(str(exc))
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps([_status_json(item) for item in found], default=str))
        return
    if not found:
        typer.echo("No job waits at Google (imagelingo batch list shows them all).")
    for item in found:
        _print_status(item)


@app.command(cls=PlainHelp)
def collect(
    ctx: typer.Context,
    job: str | None = SOME_JOB,
    base_url: str | None = options.BASE_URL,
    timeout: float | None = options.TIMEOUT,
    poll: float | None = POLL,
    db: Path | None = options.DB,
    json_output: bool = JSON,
) -> None:
    """Wait for jobs already submitted and record their results (a rerun of the same
    `process --batch` does this too). Ctrl-C stops waiting; the jobs go on at Google.

    \b
    Examples:
      imagelingo batch collect
      imagelingo batch collect 01m8q0xa --poll 60
    """
    from imagelingo_cli.batch_mode import runner

    def start(store: Store, connection: Connection, job_id: str | None) -> Start:
        ids = [job_id] if job_id else None
        return lambda clock, emit, control: runner.collect(
            store, connection, ids, options=modes, clock=clock, emit=emit, control=control
        )

    modes = batch_mode_options(_settings(poll=poll, timeout=timeout))
    _on_jobs(ctx, job, base_url, timeout, db, json_output, start)


@app.command(cls=PlainHelp)
def cancel(
    ctx: typer.Context,
    job: str = JOB,
    base_url: str | None = options.BASE_URL,
    timeout: float | None = options.TIMEOUT,
    poll: float | None = POLL,
    db: Path | None = options.DB,
    json_output: bool = JSON,
) -> None:
    """Cancel a job at Google. What it finished is recorded; the rest is interrupted, and
    the next `process --batch` or `retry-failed` sends it again.

    \b
    Examples:
      imagelingo batch cancel 01m8q0xa
      imagelingo batch cancel batches/abc123
    """
    from imagelingo_cli.batch_mode import runner

    def start(store: Store, connection: Connection, job_id: str | None) -> Start:
        assert job_id is not None
        return lambda clock, emit, control: runner.cancel(
            store, connection, job_id, options=modes, clock=clock, emit=emit, control=control
        )

    modes = batch_mode_options(_settings(poll=poll, timeout=timeout))
    _on_jobs(ctx, job, base_url, timeout, db, json_output, start)


# --- running one ------------------------------------------------------------------------------


def _on_jobs(
    ctx: typer.Context,
    job: str | None,
    base_url: str | None,
    timeout: float | None,
    db: Path | None,
    json_output: bool,
    start: Callable[[Store, Connection, str | None], Start],
) -> NoReturn:
    """A run on recorded jobs (`job`, resolved, or every one not recorded yet): the present
    connection, then `_run`. With no job named and none left to record, no run is started."""
    from imagelingo_cli.store import batch_jobs

    connection = _connection(base_url, timeout)
    store = open_db(db, create=False)
    job_id = _resolve(store, job) if job else None
    if job_id is None and not batch_jobs.unimported_jobs(store):
        store.close()
        nothing_to_do(
            "No batch job to wait for (imagelingo batch list shows them all).", json_output
        )
        raise typer.Exit(EXIT_OK)
    _run(ctx, store, json_output, start(store, connection, job_id))


def _run(ctx: typer.Context, store: Store, json_output: bool, start: Start) -> NoReturn:
    """Run a Batch mode run with the display that fits, then print its outcome and exit."""
    from imagelingo_cli.cli.batch import clock_from, run_batch
    from imagelingo_cli.cli.batch_mode_display import jobs_reporter_for

    clock = clock_from(ctx)
    try:
        with jobs_reporter_for(json_output, clock) as reporter:

            def begin(control: BatchControl) -> Awaitable[BatchModeSummary]:
                return start(clock, reporter, control)

            outcome = run_batch(begin, reporter=reporter)
    finally:
        store.close()
    _finish(outcome, reporter, json_output)


def _finish(outcome: BatchModeSummary, reporter: Reporter, json_output: bool) -> NoReturn:
    from imagelingo_cli.cli.batch import print_failures
    from imagelingo_cli.cli.batch_mode_display import render_outcome
    from imagelingo_cli.cli.common import silence_stdout
    from imagelingo_cli.cli.reporters import PipeConsole

    summary = outcome.summary
    if not json_output and not reporter.closed:
        console = PipeConsole(highlight=False)
        try:
            print_failures(console, summary)
            console.print(
                render_outcome(outcome),
                markup=False,
                highlight=False,
                soft_wrap=not console.is_terminal,  # a terminal wraps it between words
            )
        except BrokenPipeError:
            silence_stdout()
    if summary.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_FAILED if summary.failed or outcome.problems else EXIT_OK)


def _settings(*, poll: float | None, timeout: float | None) -> Settings:
    from imagelingo_cli.errors import SetupError
    from imagelingo_cli.settings import resolve

    try:
        return resolve({"batch_poll": poll, "timeout": timeout})
    except SetupError as exc:
        fail_setup(str(exc))


def _connection(base_url: str | None, timeout: float | None) -> Connection:
    """The present key and base URL; each job's recorded backend decides the rest."""
    from imagelingo_cli.errors import SetupError
    from imagelingo_cli.gemini import api_key_from_env
    from imagelingo_cli.runner import Connection

    try:
        return Connection(
            api_key=api_key_from_env(),
            base_url=base_url,
            timeout=_settings(poll=None, timeout=timeout).timeout,
        )
    except SetupError as exc:
        fail_setup(str(exc))


def _resolve(store: Store, given: str) -> str:
    """The one job `given` names; otherwise exit 2 naming the candidates."""
    from imagelingo_cli.store import batch_jobs

    found = batch_jobs.find_jobs(store, given) if given.strip() else []
    if len(found) == 1:
        return str(found[0]["id"])
    if not found:
        fail_setup(f"no batch job is {given!r} (imagelingo batch list shows them)")
    shown = "; ".join(f"{r['display_name']} ({r['name'] or r['state']})" for r in found[:5])
    fail_setup(f"{given!r} matches several jobs: {shown}. Type more of the id.")


# --- printing -------------------------------------------------------------------------------


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "collector_run_id"}


def _print_jobs(rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from imagelingo_cli.cli import batch_mode_display as display
    from imagelingo_cli.cli.wording import local

    console = Console(highlight=False)
    if not rows:
        console.print("No batch job yet (imagelingo process PATH --batch submits one).")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("Job", "State", "Requests", "Done", "Failed", "Created", "Recorded"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(
            str(row["id"])[: display.SHORT_JOB_ID],
            str(row["state"]),
            str(row["requests"]),
            str(row["succeeded_requests"] or 0),
            str(row["failed_requests"] or 0),
            local(row["created_at"], short=True),
            local(row["imported_at"], short=True) if row["imported_at"] else "not yet",
        )
    console.print(table)


def _status_json(item: JobStatus) -> dict[str, Any]:
    return {
        **_public(item.row),
        "variations": item.variations,
        "refresh_error": item.error,
        "api": None
        if item.remote is None
        else {
            "state": item.remote.api_state,
            "request_count": item.remote.counts.requests,
            "succeeded": item.remote.counts.succeeded,
            "failed": item.remote.counts.failed,
            "pending": item.remote.counts.pending,
            "error": item.remote.error,
            "result_file": item.remote.result_file,
        },
    }


def _print_status(item: JobStatus) -> None:
    from rich.console import Console

    from imagelingo_cli.cli.batch_mode_display import state_text
    from imagelingo_cli.cli.wording import local

    console = Console(highlight=False)
    row, job = item.row, item.job
    lines = [
        f"{job.display_name}  {job.name or '(not at Google yet)'}",
        f"  state: {state_text(job)} · {job.requests} requests · {job.succeeded} done · "
        f"{job.failed} failed (batchStats)",
        f"  recorded {local(row['created_at'])} · submitted {local(row['submitted_at'])} · "
        f"ended {local(row['ended_at'])} · results recorded {local(row['imported_at'])}",
    ]
    if row["error_code"] or row["error_message"]:
        lines.append(f"  error: {row['error_code'] or ''} {row['error_message'] or ''}".rstrip())
    if item.variations:
        counted = ", ".join(f"{n} {status}" for status, n in sorted(item.variations.items()))
        lines.append(f"  variations: {counted}")
    if item.error:
        lines.append(f"  could not ask Google: {item.error}")
    if row["imported_at"] is None:
        lines.append(
            f"  collect: imagelingo batch collect {job.job_id} · "
            f"cancel: imagelingo batch cancel {job.job_id}"
        )
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)
