"""Running a batch from a command: the asyncio loop, Ctrl-C / SIGTERM, the reporter that
fits the output, and the outcome printed and turned into the exit code."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import anyio
import anyio.abc
import typer
from rich.console import Console

from imagelingo_cli import events as ev
from imagelingo_cli.cli.common import exit_code, fail_setup, silence_stdout
from imagelingo_cli.cli.records import EventRecords
from imagelingo_cli.cli.reporters import (
    JsonReporter,
    LiveReporter,
    PipeConsole,
    PlainReporter,
    Reporter,
    command_lines,
    failure_lines,
    render_failure_panel,
    render_summary_line,
    report_hint,
)
from imagelingo_cli.clock import Clock, MonotonicClock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.errors import SetupError

STOP_GRACE_S = 10.0  # after the first Ctrl-C, in-flight requests get this long to finish
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

T = TypeVar("T")


def clock_from(ctx: typer.Context) -> Clock:
    """The engine's clock: tests hand a VirtualClock in through the context object."""
    obj: Any = ctx.obj
    if isinstance(obj, dict) and obj.get("clock") is not None:
        clock: Clock = obj["clock"]
        return clock
    return MonotonicClock()


def run_batch(
    start: Callable[[BatchControl], Awaitable[T]],
    *,
    reporter: Reporter,
    grace: float = STOP_GRACE_S,
) -> T:
    """Run one batch (or Batch mode run) on the asyncio loop (google-genai needs asyncio).
    The first SIGINT, SIGTERM or SIGHUP, or the output closing (`| head`), stops new attempts and
    gives those in flight `grace` seconds; a second signal cancels them at once. A SetupError
    found on the way is exit 2, one line."""

    # Known before a hang-up: a terminal that has hung up no longer says it is one.
    terminal_fds = [fd for fd in (1, 2) if os.isatty(fd)]

    async def main() -> T | SetupError:
        control = BatchControl()
        result: T | SetupError
        async with anyio.create_task_group() as group:
            stopper = _Stopper(control, group, grace, reporter)
            reporter.on_closed(lambda: stopper.stop("output closed", escalate=False))
            group.start_soon(_watch_signals, stopper, terminal_fds)
            try:
                result = await start(control)
            except (SetupError, BaseExceptionGroup) as exc:
                result = _setup_error(exc)
            group.cancel_scope.cancel()
        return result

    result = anyio.run(main, backend="asyncio")
    if isinstance(result, SetupError):
        fail_setup(str(result))
    return result


def _setup_error(exc: BaseException) -> SetupError:
    """The SetupError that stopped the batch, also from inside its task groups; anything
    else is raised on."""
    if isinstance(exc, SetupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found, rest = exc.split(SetupError)
        if found is not None and rest is None:
            first: BaseException = found
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            assert isinstance(first, SetupError)
            return first
    raise exc


class _Stopper:
    """Stops the batch once gently (no new attempts, `grace` seconds for those in flight),
    and at once the second time."""

    def __init__(
        self, control: BatchControl, group: anyio.abc.TaskGroup, grace: float, emit: Reporter
    ) -> None:
        self.control = control
        self.group = group
        self.grace = grace
        self.emit = emit

    def stop(self, reason: str, *, escalate: bool = True) -> None:
        """`escalate`: a second stop cuts what is in flight (a signal does; the output
        closing while the batch is already stopping does not)."""
        if self.control.stop_requested and not escalate:
            return
        if self.control.stop_requested:
            self.emit(ev.StopRequested(reason, 0.0))
            self.control.abort()
            return
        self.emit(ev.StopRequested(reason, self.grace))
        self.control.request_stop()
        self.group.start_soon(self._abort_after)

    async def _abort_after(self) -> None:
        await anyio.sleep(self.grace)
        self.control.abort()


async def _watch_signals(stopper: _Stopper, terminal_fds: list[int]) -> None:
    """SIGINT and SIGTERM stop the batch; so does SIGHUP (the terminal closed), after the
    output on that terminal is pointed at /dev/null, where writing cannot fail. A signal
    the process was started ignoring (`nohup`) stays ignored."""
    watched = [s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    if not _can_watch_signals() or not watched:
        await anyio.sleep_forever()
    with anyio.open_signal_receiver(*watched) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                _write_to_null(terminal_fds)
            stopper.stop(signal.Signals(signum).name)


def _write_to_null(fds: list[int]) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in fds:
        os.dup2(devnull, fd)
    os.close(devnull)


def _can_watch_signals() -> bool:
    return threading.current_thread() is threading.main_thread() and sys.platform != "win32"


def reporter_for(json_output: bool, clock: Clock) -> Reporter:
    """JSON lines for --json, the live table on a terminal, plain lines otherwise."""
    if json_output:
        return JsonReporter(sys.stdout, EventRecords(clock.now))
    _tolerate_undecodable_names()
    console = PipeConsole(highlight=False)
    if console.is_terminal:
        return LiveReporter(console, clock.now)
    return PlainReporter(console)


def _tolerate_undecodable_names() -> None:
    """A file name may hold bytes that are not UTF-8 (Python keeps them as surrogates). On a
    UTF-8 terminal stdout is strict and printing such a name would kill the run: write those
    bytes back as they were, as `ls` shows them."""
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="surrogateescape")


def print_failures(console: Console, summary: ev.Summary) -> None:
    """The failure panel on a terminal; piped, one line per failure, never wrapped."""
    if not summary.failures:
        return
    if console.is_terminal:
        panel = render_failure_panel(summary, width=console.width)
        console.print(panel, crop=False)  # a command under it may be wider
        return
    for line in failure_lines(summary):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def report_outcome(summary: ev.Summary, reporter: Reporter, json_output: bool) -> NoReturn:
    """After a batch: the failure panel and summary (not with --json, not to a closed
    output), then the exit code."""
    if not json_output and not reporter.closed:
        console = PipeConsole(highlight=False)
        try:
            print_failures(console, summary)
            # A terminal wraps it between words; a pipe gets each sentence on one line.
            console.print(
                render_summary_line(summary), markup=False, soft_wrap=not console.is_terminal
            )
            hint = report_hint(summary)
            width = console.width if console.is_terminal else None
            for line in command_lines(*hint, width=width) if hint else ():
                console.print(line, style="dim", soft_wrap=True)
        except BrokenPipeError:
            silence_stdout()
    raise typer.Exit(exit_code(summary))
