"""The live table's model and view: `ProgressState` folds engine events into one row per
variation plus counts; `render_table` draws that state, a pure function of (state, now)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from imagelingo_cli import events as ev
from imagelingo_cli.states import SkipReason

STATUSES = ("waiting", "sending", "retrying", "completed", "failed", "skipped", "interrupted")
ACTIVE = frozenset({"sending", "retrying"})
FINISHED = frozenset({"completed", "failed", "skipped", "interrupted"})

STATUS_STYLE = {
    "waiting": "dim",
    "sending": "cyan",
    "retrying": "yellow",
    "completed": "green",
    "failed": "red",
    "skipped": "dim",
    "interrupted": "magenta",
}
STATUS_WORD = {"completed": "done"}  # the Status column's word, where it differs
COUNT_WORD = {"completed": "done"}
RETRY_HINT = "transient: imagelingo retry-failed"
IMAGE_MIN = 24
IMAGE_FLOOR = 8
ETA_SMOOTHING = 0.2  # each event moves the shown end time a fifth of the way to the new one


@dataclass
class Row:
    """One variation as the table shows it."""

    ref: ev.VariationRef
    status: str
    attempt: int
    max_attempts: int
    detail: str  # the words for every status but "retrying", whose countdown is live
    changed_at: float
    error: ev.ErrorInfo | None = None
    retry_at: float | None = None
    output_path: str | None = None
    first_started_at: float | None = None  # the round's first attempt, for the ETA


def row_key(ref: ev.VariationRef) -> str:
    """The generation id; a variation interrupted before it was claimed has none yet."""
    return ref.generation_id or f"{ref.image}\x00{ref.variation}\x00{ref.language}"


class ProgressState:
    """Everything the table shows, folded from events. `now` is the engine clock's now."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.rows: dict[str, Row] = {}
        self.run_id: str | None = None
        self.command: str | None = None
        self.total = 0
        self.concurrency = 1
        self.max_attempts = 1
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.rate: ev.RateStatus | None = None
        self.stopped: ev.ErrorInfo | None = None  # a global error: the rest is not sent
        self.stopping: ev.StopRequested | None = None  # Ctrl-C / SIGTERM
        self.summary: ev.Summary | None = None
        self._durations = 0.0
        self._finished_sent = 0
        self._eta_end: float | None = None  # the smoothed estimate of when the run ends
        self._retry_at: dict[int, float] = {}  # by id(row): the run cannot end before these

    # -- folding --

    def apply(self, event: ev.Event) -> None:
        now = self.now()
        if self.started_at is None:
            self.started_at = now
        match event:
            case ev.BatchStarted():
                self.run_id = event.run_id
                self.command = event.command
                self.total = event.total
                self.concurrency = max(1, event.concurrency)
                self.max_attempts = event.max_attempts
                self.started_at = now
            case ev.VariationQueued(ref=ref):
                row = self._row(ref, now)
                row.status, row.detail, row.changed_at = "waiting", "Waiting", now
            case ev.AttemptStarted(ref=ref):
                row = self._row(ref, now)
                row.attempt, row.max_attempts = event.attempt, event.max_attempts
                row.retry_at = None
                if event.attempt == 1 or row.first_started_at is None:
                    row.first_started_at = now
                self._set(row, "sending", describe(event), now)
            case ev.AttemptFailed(ref=ref):
                row = self._row(ref, now)
                row.attempt, row.max_attempts, row.error = (
                    event.attempt,
                    event.max_attempts,
                    event.error,
                )
                if event.retry_in is None:
                    row.retry_at = None
                    self._set(row, "failed", describe(event), now)
                else:
                    row.retry_at = (
                        event.retry_at if event.retry_at is not None else now + event.retry_in
                    )
                    self._set(row, "retrying", describe(event), now)
            case ev.VariationCompleted(ref=ref):
                row = self._row(ref, now)
                row.attempt, row.max_attempts = event.attempt, event.max_attempts
                row.retry_at, row.output_path = None, event.output_path
                self._finish(row, now)
                self._set(row, "completed", describe(event), now)
            case ev.VariationFailed(ref=ref):
                row = self._row(ref, now)
                row.error, row.retry_at = event.error, None
                if event.sent:
                    self._finish(row, now)
                self._set(row, "failed", describe(event), now)
            case ev.VariationSkipped(ref=ref):
                row = self._row(ref, now)
                row.output_path = event.output_path
                self._set(row, "skipped", describe(event), now)
            case ev.VariationInterrupted(ref=ref):
                row = self._row(ref, now)
                row.retry_at = None
                self._set(row, "interrupted", describe(event), now)
            case ev.SendingStopped():
                self.stopped = event.error
            case ev.StopRequested():
                self.stopping = event
            case ev.RateStatus():
                self.rate = event
            case ev.BatchFinished():
                self.summary = event.summary
                self.finished_at = now
        self._update_eta(now)

    def _row(self, ref: ev.VariationRef, now: float) -> Row:
        key = row_key(ref)
        row = self.rows.get(key)
        if row is None:
            row = Row(ref, "waiting", 0, self.max_attempts, "Waiting", now)
            self.rows[key] = row
        else:
            row.ref = ref
        return row

    def _set(self, row: Row, status: str, detail: str, now: float) -> None:
        row.status, row.detail, row.changed_at = status, detail, now
        if status == "retrying" and row.retry_at is not None:
            self._retry_at[id(row)] = row.retry_at
        else:
            self._retry_at.pop(id(row), None)

    def _finish(self, row: Row, now: float) -> None:
        """Count a sent variation's time from first attempt to outcome, once, for the ETA."""
        if row.first_started_at is not None:
            self._durations += max(0.0, now - row.first_started_at)
            self._finished_sent += 1
            row.first_started_at = None

    # -- derived numbers --

    @property
    def counts(self) -> dict[str, int]:
        """Variations per status; those not listed yet (image not hashed) count as waiting."""
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.rows.values():
            counts[row.status] += 1
        counts["waiting"] += max(0, self.total - len(self.rows))
        return counts

    def elapsed(self, now: float) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else now
        return max(0.0, end - self.started_at)

    def eta(self, now: float) -> float | None:
        """Seconds until the run ends, smoothed over events, and never before the last
        retry already scheduled has had its average time; None until one variation has
        finished after being sent, and once nothing remains."""
        if self._eta_end is None or self.summary is not None:
            return None
        end = self._eta_end
        if self._retry_at:
            end = max(end, max(self._retry_at.values()) + self._durations / self._finished_sent)
        return max(0.0, end - now)

    def _update_eta(self, now: float) -> None:
        """Remaining variations at the rate they can finish: as many at once as the
        concurrency allows, each taking the average time so far, and never faster than the
        pace the rate limit sets."""
        counts = self.counts
        remaining = counts["waiting"] + counts["sending"] + counts["retrying"]
        if self._finished_sent == 0 or remaining == 0:
            self._eta_end = None
            return
        limit = self.rate.concurrency_limit if self.rate is not None else self.concurrency
        per_second = max(1, limit) * self._finished_sent / max(self._durations, 1e-9)
        if self.rate is not None and self.rate.pace_interval:
            per_second = min(per_second, 1 / self.rate.pace_interval)
        end = now + remaining / per_second
        if self._eta_end is None:
            self._eta_end = end
        else:
            self._eta_end += ETA_SMOOTHING * (end - self._eta_end)


# -- words --


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


def countdown(until: float, now: float) -> int:
    """Whole seconds left, rounded up, never below 0 (the 1e-6 absorbs float noise)."""
    return max(0, math.ceil(until - now - 1e-6))


SKIPPED = {
    SkipReason.COMPLETED: "already completed",
    SkipReason.RECOVERED: "already completed (its output, written before a crash, is now recorded)",
    SkipReason.SAME_CONTENT: "same content as another image of this run",
    SkipReason.ABANDONED: "abandoned (use --force to translate it again)",
    SkipReason.BUSY: "being processed by another imagelingo run",
    SkipReason.OUTPUT_OF_OURS: "this file is an output imagelingo wrote",
    SkipReason.IN_BATCH: "waiting in a Batch API job, for imagelingo batch collect",
}


def describe(event: ev.Event) -> str:
    """A variation's state after `event`, in the words the table's Detail column and the
    plain lines share: "Attempt 1/3: Failed - Rate Limit", "Skipped - already completed"."""
    match event:
        case ev.AttemptStarted():
            return f"Attempt {event.attempt}/{event.max_attempts}: Sending…"
        case ev.AttemptFailed():
            return f"Attempt {event.attempt}/{event.max_attempts}: Failed - {event.error.label}"
        case ev.VariationCompleted():
            return f"Attempt {event.attempt}/{event.max_attempts}: Succeeded"
        case ev.VariationFailed():
            return failure_text(event.error, event.attempts, event.sent, event.kept_output)
        case ev.VariationSkipped():
            return f"Skipped - {SKIPPED[event.reason]}"
        case ev.VariationInterrupted():
            return "Interrupted - run again to resume"
    return ""


def failure_text(
    error: ev.ErrorInfo, attempts: int, sent: bool, kept_output: str | None = None
) -> str:
    """A variation's final failure, e.g. "Failed after 2 retries - Timeout (transient: …)"."""
    kind = RETRY_HINT if error.transient else "permanent"
    if kept_output:
        kind = "the earlier output is kept"
    if not sent:
        return f"Not sent - {error.label} ({kind})"
    retries = max(0, attempts - 1)
    if retries:
        plural = "retry" if retries == 1 else "retries"
        return f"Failed after {retries} {plural} - {error.label} ({kind})"
    return f"Failed - {error.label} ({kind})"


def pace_text(rate: ev.RateStatus) -> str:
    """`quota ≈ 30/min · pacing 1 every 2.0 s` once the rate is paced, else the concurrency."""
    parts = []
    if rate.quota_per_minute:
        parts.append(f"quota ≈ {rate.quota_per_minute}/min")
    if rate.pace_interval:
        parts.append(f"pacing 1 every {rate.pace_interval:.1f} s")
    else:
        parts.append(f"concurrency {rate.concurrency_limit}")
    return " · ".join(parts)


def stop_text(event: ev.StopRequested) -> str:
    """What Ctrl-C is doing, in the footer and in plain output."""
    if not event.grace:
        return f"{event.signal} again: stopping now"
    return (
        f"{event.signal}: stopping, no new requests; those in flight get {event.grace:g} s "
        "(Ctrl-C again to stop now)"
    )


def detail_text(row: Row, now: float) -> str:
    """The words in the Detail column; a retrying row counts down to its next attempt, then
    says it waits for a send slot if the pace holds it back."""
    if row.status != "retrying" or row.retry_at is None:
        return row.detail
    left = countdown(row.retry_at, now)
    if left:
        when = f"retrying in {left}s"
    elif now - row.retry_at < 1:
        when = "retrying now"
    else:  # due, and queued behind others for the shared pace
        when = "waiting for a send slot"
    text = f"{row.detail} · {when}"
    if row.error is not None and row.error.retry_after_ms:
        text += f" (server asked {_seconds(row.error.retry_after_ms)})"
    return text


_SERVER_ASKED = re.compile(r" \(server asked [^)]*\)$")
_ATTEMPT = re.compile(r"^Attempt \d+/\d+: ")


def detail_texts(row: Row, now: float) -> tuple[str, ...]:
    """The Detail column's words from the fullest to the fewest that still say what matters:
    "Attempt 1/3: Failed - Rate Limit · retrying in 3s (server asked 1s)" down to
    "Rate Limit · retry in 3s"."""
    full = detail_text(row, now)
    unasked = _SERVER_ASKED.sub("", full)
    bare = _ATTEMPT.sub("", unasked)
    hinted = bare.replace(f" ({RETRY_HINT})", " (transient)")
    fewest = hinted
    error = row.error
    if row.status == "retrying" and error is not None and row.retry_at is not None:
        fewest = f"{error.label} · retry in {countdown(row.retry_at, now)}s"
    elif row.status == "failed" and error is not None:
        fewest = f"{error.label} ({'transient' if error.transient else 'permanent'})"
    elif row.status == "completed":
        fewest = "Succeeded"
    elif row.status == "skipped":
        fewest = bare.removeprefix("Skipped - ")
    return tuple(dict.fromkeys((full, unasked, bare, hinted, fewest)))


def clock_text(seconds: float) -> str:
    """0:42, 1:10, 1:02:03."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def truncate_left(text: str, width: int) -> str:
    """Keep the end of a path, which names the file: "…nus/cafe-menu.jpg"."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    kept: list[str] = []
    used = 0
    for char in reversed(text):
        used += cell_len(char)
        if used > width - 1:
            break
        kept.append(char)
    return "…" + "".join(reversed(kept))


# -- the table --


def select_rows(
    state: ProgressState, max_rows: int, statuses: Collection[str] | None = None
) -> tuple[list[Row], dict[str, int]]:
    """The rows to show and the per-status counts of those folded away.

    Everything fits: all rows, image by image (images are read several at once, so they are
    listed in the order they are ready; within one image its variations come in order).
    Otherwise active rows first, then the most recently finished, then waiting ones; one line
    is kept for the fold."""
    rows = [r for r in state.rows.values() if statuses is None or r.status in statuses]
    unlisted = max(0, state.total - len(state.rows)) if statuses is None else 0
    limit = max(1, max_rows)
    if len(rows) + (1 if unlisted else 0) <= limit:
        rows.sort(key=lambda r: r.ref.image)
        return rows, {"waiting": unlisted} if unlisted else {}
    slots = limit - 1
    active = [r for r in rows if r.status in ACTIVE]
    finished = sorted(
        (r for r in rows if r.status in FINISHED), key=lambda r: r.changed_at, reverse=True
    )
    waiting = [r for r in rows if r.status == "waiting"]
    shown = (active + finished + waiting)[:slots]
    chosen = {id(r) for r in shown}
    folded = dict.fromkeys(STATUSES, 0)
    for r in rows:
        if id(r) not in chosen:
            folded[r.status] += 1
    folded["waiting"] += unlisted
    return shown, {k: v for k, v in folded.items() if v}


def _fold_line(folded: dict[str, int]) -> Text:
    order = ("waiting", "sending", "retrying", "completed", "failed", "skipped", "interrupted")
    parts = [f"{folded[s]} {COUNT_WORD.get(s, s)}" for s in order if folded.get(s)]
    return Text(f"… {sum(folded.values())} more ({', '.join(parts)})", style="dim")


class Footer:
    """`12 done · 2 failed · … │ elapsed 0:42 · ETA 1:10 · concurrency 4 · cooling down 5s`,
    on two lines (split at the bar) when the console is narrower than that."""

    def __init__(self, counts: Text, timing: Text, languages: Text | None = None) -> None:
        self.counts = counts
        self.timing = timing
        self.languages = languages

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        line = Text.assemble(self.counts, " │ ", self.timing)
        if line.cell_len <= options.max_width:
            yield line
        else:
            yield self.counts
            yield self.timing
        if self.languages is not None:
            yield self.languages


def language_counts(state: ProgressState) -> Text | None:
    """With several languages, how far each is: `es 4/6 · fr 6/6 (1 failed)`; else None."""
    by_language: dict[str, Counter[str]] = {}
    for row in state.rows.values():
        by_language.setdefault(row.ref.language, Counter())[row.status] += 1
    if len(by_language) < 2:
        return None
    total = max(1, state.total // len(by_language))
    text = Text()
    for index, (language, seen) in enumerate(by_language.items()):
        if index:
            text.append(" · ")
        done = seen["completed"] + seen["skipped"]
        text.append(f"{language} {done}/{max(total, sum(seen.values()))}")
        if seen["failed"]:
            text.append(f" ({seen['failed']} failed)", style=STATUS_STYLE["failed"])
    return text


def render_footer(state: ProgressState, now: float) -> Footer:
    counts = state.counts
    text = Text()
    shown = ["completed", "failed", "retrying", "sending", "waiting"]
    shown += [s for s in ("skipped", "interrupted") if counts[s]]
    for i, status in enumerate(shown):
        if i:
            text.append(" · ")
        style = STATUS_STYLE[status] if counts[status] and status != "waiting" else ""
        text.append(f"{counts[status]} {COUNT_WORD.get(status, status)}", style=style)
    timing = Text(f"elapsed {clock_text(state.elapsed(now))}")
    eta = state.eta(now)
    if eta is not None:
        timing.append(f" · ETA {clock_text(eta)}")
    if state.rate is not None:
        timing.append(f" · {pace_text(state.rate)}")
        until = state.rate.cooldown_until
        if until is not None and until > now:
            timing.append(f" · cooling down {countdown(until, now)}s", style="yellow")
        if state.rate.retries_paused:
            timing.append(
                " · retry budget spent: server errors, timeouts and network errors are not retried",
                style="yellow",
            )
    if state.stopped is not None:
        timing.append(f" · sending stopped: {state.stopped.label}", style="red")
    if state.stopping is not None and state.summary is None:
        timing.append(f" · {stop_text(state.stopping)}", style="bold yellow")
    elif state.stopping is not None:
        timing.append(f" · stopped ({state.stopping.signal})", style="yellow")
    return Footer(text, timing, language_counts(state))


@dataclass(frozen=True)
class _Line:
    image: str
    variation: str
    language: str
    status: str
    details: tuple[str, ...]  # the same detail, from the full words to the fewest

    def detail(self, width: int) -> str:
        """The longest wording that fits `width` cells (the shortest, cut, if none does)."""
        return next((d for d in self.details if cell_len(d) <= width), self.details[-1])


class _ProgressView:
    """A snapshot of the table, laid out when the console's width is known (the Image column
    shrinks first, truncated from the left)."""

    def __init__(self, lines: list[_Line], fold: Text | None, footer: Footer) -> None:
        self.lines = lines
        self.fold = fold
        self.footer = footer

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        def widest(values: list[str], header: str, least: int = 0) -> int:
            return max([least, cell_len(header), *(cell_len(v) for v in values)])

        lines = self.lines
        var = widest([line.variation for line in lines], "Var")
        lang = widest([line.language for line in lines], "Lang")
        status = widest([STATUS_WORD.get(line.status, line.status) for line in lines], "Status", 8)
        image_wanted = widest([line.image for line in lines], "Image")
        detail_wanted = widest([line.details[0] for line in lines], "Detail")
        detail_needed = widest([line.details[-1] for line in lines], "Detail")
        # Columns are 2 cells apart. Detail matters most: the Image column gives way first,
        # to IMAGE_MIN cells so the detail keeps its full words, then to IMAGE_FLOOR so it
        # keeps its fewest (the code, the countdown); each row words itself to fit.
        room = max(10, options.max_width - var - lang - status - 4 * 2)
        image = min(
            image_wanted,
            max(room - detail_wanted, min(IMAGE_MIN, room - detail_needed), IMAGE_FLOOR),
        )
        detail = max(1, min(detail_wanted, room - image))
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        table.add_column("Image", no_wrap=True, width=image)
        table.add_column("Var", no_wrap=True, width=var)
        table.add_column("Lang", no_wrap=True, width=lang)
        table.add_column("Status", no_wrap=True, width=status)
        table.add_column("Detail", no_wrap=True, overflow="ellipsis", width=detail)
        for line in lines:
            table.add_row(
                truncate_left(line.image, image),
                line.variation,
                line.language,
                Text(STATUS_WORD.get(line.status, line.status), style=STATUS_STYLE[line.status]),
                line.detail(detail),
            )
        parts: list[RenderableType] = [table]
        if self.fold is not None:
            parts.append(self.fold)
        parts.append(self.footer)
        yield Group(*parts)


def render_table(
    state: ProgressState, *, max_rows: int, statuses: Collection[str] | None = None
) -> RenderableType:
    """The table, the fold line and the footer, at the state's `now`. `statuses` limits the
    rows (the compact final table shows only failed and interrupted ones)."""
    now = state.now()
    rows, folded = select_rows(state, max_rows, statuses)
    if statuses is not None and not rows:
        return render_footer(state, now)
    lines = [_line(row, now) for row in rows]
    fold = _fold_line(folded) if folded else None
    return _ProgressView(lines, fold, render_footer(state, now))


def _line(row: Row, now: float) -> _Line:
    ref = row.ref
    return _Line(ref.image, f"v{ref.variation}", ref.language, row.status, detail_texts(row, now))
