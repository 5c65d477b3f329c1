"""Running a batch from a command: the asyncio loop, Ctrl-C / SIGTERM, the reporter that
fits the output, and the outcome printed and turned into the exit code."""

from __future__ import annotations

import io
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import anyio
import anyio.abc
import typer
from rich.console import Console

from imagelingo_cli import events as ev
from imagelingo_cli.cli.common import exit_code, fail_setup
from imagelingo_cli.cli.reporters import (
    JsonReporter,
    LiveReporter,
    PlainReporter,
    Reporter,
    render_failure_panel,
    render_report_hint,
    render_summary_line,
)
from imagelingo_cli.clock import Clock, MonotonicClock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.errors import SetupError

STOP_GRACE_S = 10.0  # after the first Ctrl-C, in-flight requests get this long to finish


def clock_from(ctx: typer.Context) -> Clock:
    """The engine's clock: tests hand a VirtualClock in through the context object."""
    obj: Any = ctx.obj
    if isinstance(obj, dict) and obj.get("clock") is not None:
        clock: Clock = obj["clock"]
        return clock
    return MonotonicClock()


def run_batch(
    start: Callable[[BatchControl], Awaitable[ev.Summary]],
    *,
    emit: Callable[[ev.Event], None],
    grace: float = STOP_GRACE_S,
) -> ev.Summary:
    """Run one batch on the asyncio loop (google-genai needs asyncio). The first SIGINT or
    SIGTERM stops new attempts and gives those in flight `grace` seconds; a second one
    cancels them at once."""

    async def main() -> ev.Summary:
        control = BatchControl()
        async with anyio.create_task_group() as group:
            group.start_soon(_watch_signals, control, grace, group, emit)
            try:
                summary = await start(control)
            except SetupError as exc:
                group.cancel_scope.cancel()
                fail_setup(str(exc))
            group.cancel_scope.cancel()
        return summary

    return anyio.run(main, backend="asyncio")


async def _watch_signals(
    control: BatchControl,
    grace: float,
    group: anyio.abc.TaskGroup,
    emit: Callable[[ev.Event], None],
) -> None:
    if not _can_watch_signals():
        await anyio.sleep_forever()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if control.stop_requested:
                emit(ev.StopRequested(signal.Signals(signum).name, 0.0))
                control.abort()
                continue
            emit(ev.StopRequested(signal.Signals(signum).name, grace))
            control.request_stop()
            group.start_soon(_abort_after, control, grace)


async def _abort_after(control: BatchControl, grace: float) -> None:
    await anyio.sleep(grace)
    control.abort()


def _can_watch_signals() -> bool:
    return threading.current_thread() is threading.main_thread() and sys.platform != "win32"


def reporter_for(json_output: bool, clock: Clock) -> Reporter:
    """JSON lines for --json, the live table on a terminal, plain lines otherwise."""
    if json_output:
        return JsonReporter(sys.stdout)
    _tolerate_undecodable_names()
    console = Console(highlight=False)
    if console.is_terminal:
        return LiveReporter(console, clock.now)
    return PlainReporter(console)


def _tolerate_undecodable_names() -> None:
    """A file name may hold bytes that are not UTF-8 (Python keeps them as surrogates). On a
    UTF-8 terminal stdout is strict and printing such a name would kill the run: write those
    bytes back as they were, as `ls` shows them."""
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="surrogateescape")


def report_outcome(summary: ev.Summary, json_output: bool) -> NoReturn:
    """After a batch: the failure panel and summary (not with --json), then the exit code."""
    if not json_output:
        console = Console(highlight=False)
        if summary.failures:
            console.print(render_failure_panel(summary))
        console.print(render_summary_line(summary))
        hint = render_report_hint(summary)
        if hint:
            console.print(hint, style="dim", soft_wrap=True)
    raise typer.Exit(exit_code(summary))
