"""The three ways a batch is shown as it runs (a live table on a terminal, one plain line per
state change elsewhere, JSON lines for --json), and what is printed after it."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from imagelingo_cli import events as ev
from imagelingo_cli.cli.progress import (
    FINISHED,
    ProgressState,
    countdown,
    failure_text,
    pace_text,
    render_table,
    stop_text,
)
from imagelingo_cli.errors import ErrorCode

CHROME_LINES = 8  # header, rule, fold line, footer and room for messages above the table
COMPACT_STATUSES = ("failed", "interrupted")
MESSAGE_LIMIT = 160


class Reporter(Protocol):
    """Receives the engine's events (as `emit`, on the event-loop thread)."""

    def __call__(self, event: ev.Event) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Unframed:
    """A reporter with nothing to start or stop (no live display, no cursor to restore)."""

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
        self._live = Live(
            console=console,
            get_renderable=self._renderable,
            refresh_per_second=refresh_per_second,
            transient=False,
        )

    def _sync_clock(self) -> None:
        # Outside the event loop (before or after the run) the last offset stays.
        with contextlib.suppress(Exception):
            self._offset = self._engine_now() - time.monotonic()

    def _now(self) -> float:
        return time.monotonic() + self._offset

    def _max_rows(self) -> int:
        return max(3, self.console.size.height - CHROME_LINES)

    def _renderable(self) -> RenderableType:
        with self._lock:
            if not self._final:
                return render_table(self.state, max_rows=self._max_rows())
            many = len(self.state.rows) > self._max_rows()
            return render_table(
                self.state,
                max_rows=self._max_rows(),
                statuses=COMPACT_STATUSES if many else None,
            )

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
            self.console.print(
                line, markup=False, highlight=False, emoji=False, soft_wrap=True, crop=False
            )

    def _line(self, event: ev.Event) -> str | None:
        match event:
            case ev.BatchStarted():
                return (
                    f"{event.command} run {event.run_id}: {event.total} variations, "
                    f"concurrency {event.concurrency}"
                )
            case ev.AttemptStarted(ref=ref):
                return self._about(ref, f"Attempt {event.attempt}/{event.max_attempts}: Sending…")
            case ev.AttemptFailed(ref=ref) if event.retry_in is not None:
                wait = countdown(event.retry_in, 0.0)
                words = f"retrying in {wait}s" if wait else "retrying now"
                if event.error.retry_after_ms:
                    words += f" (server asked {event.error.retry_after_ms / 1000:g}s)"
                return self._about(
                    ref,
                    f"Attempt {event.attempt}/{event.max_attempts}: "
                    f"Failed - {event.error.label} · {words}",
                )
            case ev.VariationCompleted(ref=ref):
                return self._about(
                    ref,
                    f"Attempt {event.attempt}/{event.max_attempts}: Succeeded → "
                    f"{event.output_path}",
                )
            case ev.VariationFailed(ref=ref):
                return self._about(ref, failure_text(event.error, event.attempts, event.sent))
            case ev.VariationSkipped(ref=ref):
                where = f" → {event.output_path}" if event.output_path else ""
                return self._about(ref, f"Skipped - {event.reason}{where}")
            case ev.VariationInterrupted(ref=ref):
                return self._about(ref, "Interrupted - run again to resume")
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
    """One JSON object per event and line; nothing else is written to the stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: ev.Event) -> None:
        self.stream.write(json.dumps(ev.event_to_dict(event), default=str) + "\n")
        self.stream.flush()


# -- after the run --


def _one_line(message: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _label(code: str) -> str:
    try:
        return ErrorCode(code).label
    except ValueError:
        return code.replace("_", " ").title()


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def render_failure_panel(summary: ev.Summary, *, limit: int = 20) -> RenderableType:
    """Each failed variation: what, which code, the API's message, and the command that
    retries it; then how to retry them all. Past `limit` failures, where to see the rest."""
    failures: list[dict[str, Any]] = list(summary.failures)
    lines: list[RenderableType] = []
    for failure in failures[:limit]:
        code = str(failure.get("code", "API_ERROR"))
        gid = str(failure.get("generation_id", ""))
        head = Text()
        head.append(
            f"{failure.get('image', '?')} v{failure.get('variation', '?')} "
            f"{failure.get('language', '?')}",
            style="bold",
        )
        head.append("  ")
        head.append(f"{code} ({_label(code)})", style="red")
        attempts = int(failure.get("attempts") or 0)
        head.append(f" · {_plural(attempts, 'attempt')}" if attempts else " · not sent")
        lines.append(head)
        lines.append(Text("  " + _one_line(str(failure.get("message", "")))))
        if failure.get("not_retried"):
            lines.append(Text(f"  not retried: {failure['not_retried']}", style="yellow"))
        if failure.get("transient", True):
            how = Text("  retry: ")
        else:
            how = Text("  permanent: fix the cause, then ")
        how.append(f"imagelingo retry-failed {gid}", style="cyan")
        lines.append(how)
    hidden = len(failures) - limit
    if hidden > 0:
        lines.append(
            Text(
                f"… {hidden} more: imagelingo history --errors --run {summary.run_id}",
                style="dim",
            )
        )
    lines.append(Text())
    denied = summary.rate.retries_denied_by_budget
    if denied:
        lines.append(
            Text(
                f"{_plural(denied, 'variation')} not retried automatically: the retry budget "
                f"({summary.rate.retry_budget} retries of server errors, timeouts and network "
                "errors) was spent, as happens in an outage. Once the service is back:",
                style="yellow",
            )
        )
    lines.append(_retry_all_hint(failures))
    title = f"{_plural(summary.failed or len(failures), 'failed variation')}"
    return Panel(Group(*lines), title=title, title_align="left", border_style="red")


def _retry_all_hint(failures: list[dict[str, Any]]) -> Text:
    codes = sorted({str(f.get("code")) for f in failures})
    transient = [f for f in failures if f.get("transient", True)]
    hint = Text("Retry them all: ")
    hint.append("imagelingo retry-failed", style="cyan")
    if len(codes) > 1:
        hint.append(" · one code: ")
        first = next((str(f.get("code")) for f in transient), codes[0])
        hint.append(f"imagelingo retry-failed --code {first}", style="cyan")
    if transient and len(transient) < len(failures):
        hint.append(" · transient only: ")
        hint.append("imagelingo retry-failed --transient-only", style="cyan")
    return hint


def render_summary_line(summary: ev.Summary) -> str:
    """`8 completed, 2 failed, 0 skipped in 14.2 s · 13 attempts · 8 credits`, plus what the
    rate limit did, retries the budget denied, and how to resume an interrupted run."""
    line = (
        f"{summary.completed} completed, {summary.failed} failed, {summary.skipped} skipped "
        f"in {summary.elapsed:.1f} s · {_plural(summary.attempts, 'attempt')} · "
        f"{_plural(summary.credits_charged, 'credit')}"
    )
    rate = summary.rate
    if rate.suggested_rpm is not None:
        line += (
            f"\nRate limited: the quota is {rate.quota_per_minute} requests/min, so the run "
            f"paced itself to {rate.paced_per_minute:g}/min "
            f"({_plural(rate.throttled_attempts, 'request')} throttled). Start at that pace "
            f"next time: --rpm {rate.suggested_rpm} (or imagelingo settings set rpm "
            f"{rate.suggested_rpm})"
        )
    denied = rate.retries_denied_by_budget
    if denied:
        line += (
            f"\n{_plural(denied, 'failure')} not retried: retry budget of {rate.retry_budget} "
            "spent in this run. Retry them later: imagelingo retry-failed"
        )
    if summary.status == "interrupted" or summary.interrupted:
        unfinished = summary.interrupted or max(
            0, summary.total - summary.completed - summary.failed - summary.skipped
        )
        line += (
            f"\nInterrupted: {_plural(unfinished, 'variation')} not finished. "
            "Run the same command again to resume."
        )
    return line
