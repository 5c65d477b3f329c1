"""The three ways a batch is shown as it runs (a live table on a terminal, one plain line per
state change elsewhere, JSON lines for --json), and what is printed after it."""

from __future__ import annotations

import contextlib
import errno
import json
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self, TextIO

from rich.cells import cell_len
from rich.console import Console, ConsoleDimensions, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from imagelingo_cli import events as ev
from imagelingo_cli.cli.common import plural, silence_stdout, skipped_files
from imagelingo_cli.cli.progress import (
    FINISHED,
    ProgressState,
    countdown,
    describe,
    pace_text,
    render_table,
    stop_text,
)
from imagelingo_cli.cli.records import EventRecords

CHROME_LINES = 8  # header, rule, fold line, footer and room for messages above the table
COMPACT_STATUSES = ("failed", "interrupted")
MESSAGE_LIMIT = 160


class PipeConsole(Console):
    """A console whose closed output raises BrokenPipeError for the caller to handle (rich's
    own handling exits the process, which would leave the batch's records unfinished)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "the output was closed")


class Reporter(Protocol):
    """Receives the engine's events (as `emit`, on the event-loop thread)."""

    closed: bool  # its output was closed (a pipe's reader stopped reading)

    def __call__(self, event: ev.Event) -> None: ...

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call `callback` once if the output closes (the batch stops, as on SIGTERM)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Unframed:
    """A reporter with nothing to start or stop (no live display, no cursor to restore), that
    writes to a stream which may close: then it stops writing and says so once."""

    closed = False
    _when_closed: Callable[[], None] | None = None

    def on_closed(self, callback: Callable[[], None]) -> None:
        self._when_closed = callback

    def _write(self, write: Callable[[], None]) -> None:
        if self.closed:
            return
        try:
            write()
        except BrokenPipeError:
            self.closed = True
            silence_stdout()
            if self._when_closed is not None:
                self._when_closed()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class LiveReporter:
    """A rich Live table, redrawn on its own timer (events only change the state)."""

    closed = False  # a terminal does not close under a running batch

    def __init__(
        self, console: Console, now: Callable[[], float], *, refresh_per_second: float = 4
    ) -> None:
        self.console = console
        self._engine_now = now
        # The engine clock may only be readable on the event-loop thread (anyio's current_time),
        # so the refresh thread extrapolates from the offset seen at the last event.
        self._offset = 0.0
        self._sync_clock()
        self.state = ProgressState(self._now)
        self._lock = threading.Lock()
        self._final = False
        self._size: ConsoleDimensions | None = None
        self._live = Live(
            console=console,
            get_renderable=self._renderable,
            refresh_per_second=refresh_per_second,
            transient=False,
        )

    def on_closed(self, callback: Callable[[], None]) -> None:
        return None

    def _sync_clock(self) -> None:
        # Outside the event loop (before or after the run) the last offset stays.
        with contextlib.suppress(Exception):
            self._offset = self._engine_now() - time.monotonic()

    def _now(self) -> float:
        return time.monotonic() + self._offset

    def _max_rows(self) -> int:
        return max(3, self.console.size.height - CHROME_LINES)

    def _renderable(self) -> RenderableType:
        self._after_resize()
        with self._lock:
            if not self._final:
                return render_table(self.state, max_rows=self._max_rows())
            many = len(self.state.rows) > self._max_rows()
            return render_table(
                self.state,
                max_rows=self._max_rows(),
                statuses=COMPACT_STATUSES if many else None,
            )

    def _after_resize(self) -> None:
        """The terminal changed size: its re-flow of the last frame would leave stale rows
        that Live cannot reach, so clear the screen; the next frame is drawn from the top."""
        size = self.console.size
        if self._size is not None and size != self._size:
            self.console.file.write("\x1b[2J\x1b[H")
            self.console.file.flush()
        self._size = size

    def __call__(self, event: ev.Event) -> None:
        self._sync_clock()
        with self._lock:
            self.state.apply(event)

    def __enter__(self) -> Self:
        self._live.start(refresh=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Live.stop draws the last frame (now the final table) and shows the cursor again.
        with self._lock:
            self._final = True
        self._live.stop()


class PlainReporter(_Unframed):
    """One plain line per state change: no animation, no countdown, no colour needed."""

    def __init__(self, console: Console, *, now: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.state = ProgressState(now)  # the engine clock: cooldowns are on it
        self._rate: ev.RateStatus | None = None

    def __call__(self, event: ev.Event) -> None:
        self.state.apply(event)
        line = self._line(event)
        if line is not None:
            self._write(
                lambda: self.console.print(
                    line, markup=False, highlight=False, emoji=False, soft_wrap=True, crop=False
                )
            )

    def _line(self, event: ev.Event) -> str | None:
        match event:
            case ev.BatchStarted():
                return (
                    f"{event.command} run {event.run_id}: {plural(event.total, 'variation')}, "
                    f"concurrency {event.concurrency}"
                )
            case ev.AttemptStarted(ref=ref) | ev.VariationFailed(ref=ref):
                return self._about(ref, describe(event))
            case ev.VariationInterrupted(ref=ref):
                return self._about(ref, describe(event))
            case ev.AttemptFailed(ref=ref) if event.retry_in is not None:
                wait = countdown(event.retry_in, 0.0)
                words = f"retrying in {wait}s" if wait else "retrying now"
                if event.error.retry_after_ms:
                    words += f" (server asked {event.error.retry_after_ms / 1000:g}s)"
                return self._about(ref, f"{describe(event)} · {words}")
            case ev.VariationCompleted(ref=ref):
                return self._about(ref, f"{describe(event)} → {event.output_path}")
            case ev.VariationSkipped(ref=ref):
                where = f" → {event.output_path}" if event.output_path else ""
                return self._about(ref, f"{describe(event)}{where}")
            case ev.SendingStopped(error=error):
                return f"Sending stopped - {error.label}: {_one_line(error.message)}"
            case ev.StopRequested():
                return stop_text(event)
            case ev.RateStatus():
                return self._rate_line(event)
        return None

    def _about(self, ref: ev.VariationRef, words: str) -> str:
        """`[3/10] cafe-menu.jpg v1 es: …`; 3 is how many variations have finished."""
        counts = self.state.counts
        finished = sum(counts[s] for s in FINISHED)
        total = max(self.state.total, len(self.state.rows))
        return f"[{finished}/{total}] {ref.image} v{ref.variation} {ref.language}: {words}"

    def _rate_line(self, event: ev.RateStatus) -> str | None:
        previous, self._rate = self._rate, event
        if previous == event:
            return None
        words = f"Rate: {pace_text(event)}".replace(" · ", ", ")
        if event.cooldown_until is not None:
            left = countdown(event.cooldown_until, self.state.now())
            if left:
                words += f", cooling down {left}s"
        if event.retries_paused:
            words += (
                ", retry budget spent: server errors, timeouts and network errors are not retried"
            )
        return words


class JsonReporter(_Unframed):
    """One JSON object per event and line (`records.EventRecords`); nothing else is written
    to the stream."""

    def __init__(self, stream: TextIO, records: EventRecords) -> None:
        self.stream = stream
        self.records = records

    def __call__(self, event: ev.Event) -> None:
        line = json.dumps(self.records(event), default=str) + "\n"

        def write() -> None:
            self.stream.write(line)
            self.stream.flush()

        self._write(write)


# -- after the run --


def _one_line(message: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


PANEL_FRAME = 4  # a panel's borders and padding, in cells


def render_failure_panel(summary: ev.Summary, *, width: int, limit: int = 20) -> RenderableType:
    """Each failed variation: what, which code, the API's message, and the command that
    retries it; then how to retry them all. A command to copy is never cut by wrapping:
    when one would not fit in the box at `width`, all of them are listed under it, each on a
    line of its own if need be. Past `limit` failures, where to see the rest."""
    failures = summary.failures
    shown = failures[:limit]
    commands = _commands(shown, summary.run_id, hidden=len(failures) - limit)
    inside = all(
        cell_len(f"  {words}{command}") <= width - PANEL_FRAME for words, command in commands
    )
    lines: list[RenderableType] = []
    for failure in shown:
        ref, error = failure.ref, failure.error
        head = Text()
        head.append(f"{ref.image} v{ref.variation} {ref.language}", style="bold")
        head.append("  ")
        head.append(f"{error.code} ({error.label})", style="red")
        attempts = failure.attempts
        head.append(f" · {plural(attempts, 'attempt')}" if attempts else " · not sent")
        lines.append(head)
        lines.append(Text("  " + _one_line(error.message)))
        if failure.not_retried:
            lines.append(Text(f"  not retried: {failure.not_retried}", style="yellow"))
        if failure.kept_output:
            lines.append(Text(f"  the earlier output is kept: {failure.kept_output}"))
        elif inside:
            lines.append(_command_line(*commands[shown.index(failure)]))
    denied = summary.rate.retries_denied_by_budget
    if denied:
        lines.append(
            Text(
                f"{plural(denied, 'variation')} not retried automatically: the retry budget "
                f"({summary.rate.retry_budget} retries of server errors, timeouts and network "
                "errors) was spent, as happens in an outage. Once the service is back, retry them.",
                style="yellow",
            )
        )
    if inside:
        lines.append(Text())
        lines.extend(_command_line(*pair) for pair in commands[len(shown) :])
    title = f"{plural(summary.failed or len(failures), 'failed variation')}"
    panel = Panel(Group(*lines), title=title, title_align="left", border_style="red")
    if inside:
        return panel
    below = [line for pair in commands for line in command_lines(*pair, width=width)]
    return Group(panel, *below)


def command_lines(words: str, command: str, *, width: int | None) -> list[Text]:
    """A command to copy, on one line with its words, or, where that line is wider than the
    terminal (`width`; None: a pipe, never split), alone on the line after them."""
    if width is None or cell_len(words + command) <= width:
        return [_command_line(words, command, indent="")]
    return [Text(words[:1].upper() + words[1:].rstrip()), _command_line("", command, indent="")]


def failure_lines(summary: ev.Summary) -> list[str]:
    """The failure panel as plain lines for a pipe: one per failed variation, with its code,
    message and the command that retries it."""
    lines = []
    for failure in summary.failures:
        ref, error = failure.ref, failure.error
        then = (
            f"the earlier output is kept: {failure.kept_output}"
            if failure.kept_output
            else f"{'retry' if error.transient else 'permanent, then'}: "
            f"imagelingo retry-failed {ref.generation_id}"
        )
        denied = f" · not retried: {failure.not_retried}" if failure.not_retried else ""
        lines.append(
            f"FAILED {ref.image} v{ref.variation} {ref.language} {error.code}: "
            f"{_one_line(error.message)}{denied} · {then}"
        )
    return lines


def _commands(failures: list[ev.Failure], run_id: str, *, hidden: int) -> list[tuple[str, str]]:
    """(words, command) pairs: one per failure (in order; the permanent ones say so), then
    the run's: the rest, all of them, one code, the transient ones."""
    pairs = []
    for failure in failures:
        if failure.kept_output:
            continue
        words = "retry: " if failure.error.transient else "permanent: fix the cause, then "
        pairs.append((words, f"imagelingo retry-failed {failure.ref.generation_id}"))
    if hidden > 0:
        pairs.append((f"{hidden} more: ", f"imagelingo history --errors --run {run_id}"))
    retryable = [f for f in failures if not f.kept_output]
    if not retryable:
        return pairs
    pairs.append(("retry them all: ", "imagelingo retry-failed"))
    codes = sorted({f.error.code for f in retryable})
    transient = [f for f in retryable if f.error.transient]
    if len(codes) > 1:
        first = next((f.error.code for f in transient), codes[0])
        pairs.append(("one code: ", f"imagelingo retry-failed --code {first}"))
    if transient and len(transient) < len(retryable):
        pairs.append(("transient only: ", "imagelingo retry-failed --transient-only"))
    return pairs


def _command_line(words: str, command: str, *, indent: str = "  ") -> Text:
    line = Text(indent + words[:1].upper() + words[1:] if not indent else indent + words)
    line.append(command, style="cyan")
    line.no_wrap = True
    line.overflow = "ignore"
    return line


def render_summary_line(summary: ev.Summary) -> str:
    """`8 completed, 2 failed, 0 skipped in 14.2 s · 13 attempts · 8 credits`, plus what the
    rate limit did, retries the budget denied, and how to resume an interrupted run."""
    line = (
        f"{summary.completed} completed, {summary.failed} failed, {summary.skipped} skipped "
        f"in {summary.elapsed:.1f} s · {plural(summary.attempts, 'attempt')} · "
        f"{plural(summary.credits_charged, 'credit')}"
    )
    left_out = skipped_files(summary.files_skipped)
    if left_out:
        line += f"\nSkipped while searching: {left_out}"
    rate = summary.rate
    if rate.suggested_rpm is not None:
        line += (
            f"\nRate limited: the quota is {rate.quota_per_minute} requests/min, so the run "
            f"paced itself to {rate.paced_per_minute:g}/min "
            f"({plural(rate.throttled_attempts, 'request')} throttled).\nStart at that pace "
            f"next time: --rpm {rate.suggested_rpm} (or imagelingo settings set rpm "
            f"{rate.suggested_rpm})"
        )
    denied = rate.retries_denied_by_budget
    if denied:
        line += (
            f"\n{plural(denied, 'failure')} not retried: retry budget of {rate.retry_budget} "
            "spent in this run. Retry them later: imagelingo retry-failed"
        )
    if summary.status == "interrupted" or summary.interrupted:
        unfinished = summary.interrupted or max(
            0, summary.total - summary.completed - summary.failed - summary.skipped
        )
        line += (
            f"\nInterrupted: {plural(unfinished, 'variation')} not finished. "
            "Run the same command again to resume."
        )
    return line


def report_hint(summary: ev.Summary) -> tuple[str, str] | None:
    """The command that shows this run in a browser, with its words; None when the run
    worked on no variation."""
    if not (summary.completed or summary.failed or summary.interrupted):
        return None
    return "See the results side by side: ", f"imagelingo report --run {summary.run_id} --open"
