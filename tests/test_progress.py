"""The display layer: events folded into the live table's state, the pure render, the
reporters, and what is printed after a run."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console, RenderableType

from imagelingo_cli import events as ev
from imagelingo_cli.cli.progress import (
    ProgressState,
    Row,
    detail_text,
    render_table,
    select_rows,
)
from imagelingo_cli.cli.records import EventRecords
from imagelingo_cli.cli.reporters import (
    JsonReporter,
    LiveReporter,
    PlainReporter,
    render_failure_panel,
    render_summary_line,
)
from imagelingo_cli.states import RunStatus, SkipReason

RATE_LIMIT = ev.ErrorInfo("RATE_LIMIT", "Rate Limit", "Resource has been exhausted.", True, 429)
TIMEOUT = ev.ErrorInfo("TIMEOUT", "Timeout", "The read operation timed out", True)
SERVER = ev.ErrorInfo("SERVER_ERROR", "Server Error", "The model is overloaded.", True, 503)
CONFIG = ev.ErrorInfo("CONFIG_ERROR", "Config Error", "API key not valid.", False, 400)
QUOTA = ev.ErrorInfo("QUOTA_EXHAUSTED", "Quota Exhausted", "not sent: per-day quota", True, 429)
INVALID = ev.ErrorInfo("INVALID_TYPE", "Invalid Type", "not an image", False)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t


def ref(
    n: int, image: str = "cafe-menu.jpg", variation: int = 1, lang: str = "es"
) -> ev.VariationRef:
    return ev.VariationRef(f"gen-{n:04d}", image, variation, lang)


def started(total: int, concurrency: int = 4) -> ev.BatchStarted:
    return ev.BatchStarted("run-1", "process", total, concurrency, 3)


def text_of(renderable: RenderableType, width: int = 120) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def render(state: ProgressState, max_rows: int = 50, width: int = 120) -> str:
    return text_of(render_table(state, max_rows=max_rows), width)


def one(state: ProgressState) -> Row:
    (row,) = state.rows.values()
    return row


def new_state(clock: FakeClock, total: int = 1) -> ProgressState:
    state = ProgressState(clock.now)
    state.apply(started(total))
    return state


def test_retry_countdown_counts_down_as_time_passes() -> None:
    """A retrying row reads `retrying in 2s`, then 1s, then `retrying now`, from retry_at - now;
    still not sent a second later, it waits for a send slot."""
    clock = FakeClock()
    state = new_state(clock)
    state.apply(ev.VariationQueued(ref(1)))
    state.apply(ev.AttemptStarted(ref(1), 1, 3, 1))
    assert "Attempt 1/3: Sending…" in render(state)
    state.apply(ev.AttemptFailed(ref(1), 1, 3, RATE_LIMIT, 2.0, clock.t + 2.0))
    assert "Attempt 1/3: Failed - Rate Limit · retrying in 2s" in render(state)
    clock.t += 1.2
    assert "Attempt 1/3: Failed - Rate Limit · retrying in 1s" in render(state)
    clock.t += 1
    assert "Attempt 1/3: Failed - Rate Limit · retrying now" in render(state)
    clock.t += 1
    assert "Attempt 1/3: Failed - Rate Limit · waiting for a send slot" in render(state)


def test_retry_countdown_without_retry_at_uses_retry_in_and_names_server_delay() -> None:
    """Without retry_at the countdown starts from retry_in; a server delay is named."""
    clock = FakeClock()
    state = new_state(clock)
    error = ev.ErrorInfo("RATE_LIMIT", "Rate Limit", "slow down", True, 429, retry_after_ms=17000)
    state.apply(ev.AttemptFailed(ref(1), 1, 3, error, 18.4))
    assert detail_text(one(state), clock.t) == (
        "Attempt 1/3: Failed - Rate Limit · retrying in 19s (server asked 17s)"
    )


def test_completed_row_says_which_attempt_succeeded() -> None:
    """After a retry, success reads `Attempt 2/3: Succeeded`."""
    clock = FakeClock()
    state = new_state(clock)
    state.apply(ev.AttemptStarted(ref(1), 1, 3, 1))
    state.apply(ev.AttemptFailed(ref(1), 1, 3, RATE_LIMIT, 2.0, clock.t + 2))
    clock.t += 2
    state.apply(ev.AttemptStarted(ref(1), 2, 3, 2))
    state.apply(ev.VariationCompleted(ref(1), 2, 3, "imagelingo-out/cafe-menu.es.v1.png"))
    out = render(state)
    assert "Attempt 2/3: Succeeded" in out
    assert one(state).output_path == "imagelingo-out/cafe-menu.es.v1.png"
    assert re.search(r"\bdone\b", out)


def test_final_transient_failure_after_retries() -> None:
    """Exhausted retries read `Failed after 2 retries - Timeout (transient: …)`."""
    clock = FakeClock()
    state = new_state(clock)
    for attempt in (1, 2, 3):
        state.apply(ev.AttemptStarted(ref(1), attempt, 3, attempt))
        retry_in = 2.0 if attempt < 3 else None
        state.apply(ev.AttemptFailed(ref(1), attempt, 3, TIMEOUT, retry_in))
    state.apply(ev.VariationFailed(ref(1), 3, TIMEOUT, sent=True))
    assert "Failed after 2 retries - Timeout (transient: imagelingo retry-failed)" in render(state)
    assert one(state).status == "failed"


def test_failure_wording_for_one_retry_and_none() -> None:
    """One retry is singular; a failure that was not retried says just `Failed - …`."""
    clock = FakeClock()
    state = new_state(clock, total=2)
    state.apply(ev.VariationFailed(ref(1), 2, TIMEOUT, sent=True))
    state.apply(ev.VariationFailed(ref(2), 1, SERVER, sent=True))
    out = render(state)
    assert "Failed after 1 retry - Timeout (transient: imagelingo retry-failed)" in out
    assert "Failed - Server Error (transient: imagelingo retry-failed)" in out


def test_permanent_failure_wording() -> None:
    """A permanent error reads `Failed - Config Error (permanent)`."""
    clock = FakeClock()
    state = new_state(clock)
    state.apply(ev.AttemptStarted(ref(1), 1, 3, 1))
    state.apply(ev.AttemptFailed(ref(1), 1, 3, CONFIG, None))
    state.apply(ev.VariationFailed(ref(1), 1, CONFIG, sent=True))
    assert "Failed - Config Error (permanent)" in render(state)


def test_not_sent_skipped_interrupted_and_waiting_wording() -> None:
    """Unsent, skipped, interrupted and queued rows each have their own words."""
    clock = FakeClock()
    state = new_state(clock, total=5)
    state.apply(ev.VariationFailed(ref(1), 0, QUOTA, sent=False))
    state.apply(ev.VariationFailed(ref(2), 0, INVALID, sent=False))
    state.apply(ev.VariationSkipped(ref(3), SkipReason.COMPLETED, "out/x.png"))
    state.apply(ev.VariationInterrupted(ref(4), 1))
    state.apply(ev.VariationQueued(ref(5)))
    out = render(state)
    assert "Not sent - Quota Exhausted (transient: imagelingo retry-failed)" in out
    assert "Not sent - Invalid Type (permanent)" in out
    assert "Skipped - already completed" in out
    assert "Interrupted - run again to resume" in out
    assert "Waiting" in out


def test_unclaimed_interrupted_variations_keep_separate_rows() -> None:
    """Variations interrupted before they had a generation id do not overwrite each other."""
    state = new_state(FakeClock(), total=2)
    state.apply(ev.VariationInterrupted(ev.VariationRef("", "a.png", 1, "es"), 0))
    state.apply(ev.VariationInterrupted(ev.VariationRef("", "a.png", 2, "es"), 0))
    assert state.counts["interrupted"] == 2


def _many(clock: FakeClock, total: int = 500) -> ProgressState:
    state = new_state(clock, total)
    for n in range(total):
        state.apply(ev.VariationQueued(ref(n, f"img-{n:03d}.png")))
    for n in range(40):  # finished, at increasing times
        clock.t += 1
        state.apply(ev.AttemptStarted(ref(n, f"img-{n:03d}.png"), 1, 3, 1))
        state.apply(ev.VariationCompleted(ref(n, f"img-{n:03d}.png"), 1, 3, f"out/{n}.png"))
    state.apply(ev.VariationFailed(ref(40, "img-040.png"), 1, CONFIG, sent=True))
    for n in range(100, 104):
        state.apply(ev.AttemptStarted(ref(n, f"img-{n:03d}.png"), 1, 3, 1))
    state.apply(ev.AttemptFailed(ref(104, "img-104.png"), 1, 3, RATE_LIMIT, 2.0))
    return state


def _row_lines(out: str) -> list[str]:
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("───"))
    rows = []
    for line in lines[rule + 1 :]:
        if not line.startswith("img-"):
            break
        rows.append(line)
    return rows


def test_many_variations_fold_into_one_line_and_keep_active_rows() -> None:
    """500 variations at max_rows=20: at most 20 lines with the fold, active rows shown first."""
    clock = FakeClock()
    state = _many(clock)
    out = render(state, max_rows=20)
    rows = _row_lines(out)
    assert len(rows) <= 19
    fold = next(line for line in out.splitlines() if line.startswith("… "))
    assert len(rows) + 1 <= 20
    for n in range(100, 105):
        assert f"img-{n:03d}.png" in "\n".join(rows[:5])
    assert "img-040.png" in out  # the most recently finished
    assert "img-039.png" in out
    hidden = int(fold.split()[1])
    assert hidden + len(rows) == 500
    assert re.fullmatch(r"… \d+ more \(\d+ waiting, \d+ done\)", fold)


def test_footer_counts_add_up_to_the_total() -> None:
    """The footer's counts sum to the number of variations, unlisted ones counted as waiting."""
    clock = FakeClock()
    state = _many(clock, total=500)
    state.total = 520  # 20 variations whose images are not hashed yet
    footer = render(state, max_rows=20).strip().splitlines()[-1]
    counts = {
        word: int(n)
        for n, word in re.findall(r"(\d+) (done|failed|retrying|sending|waiting)", footer)
    }
    assert counts == {"done": 40, "failed": 1, "retrying": 1, "sending": 4, "waiting": 474}
    assert sum(counts.values()) == 520
    assert "elapsed 0:40" in footer


def test_eta_is_blank_until_a_variation_finishes() -> None:
    """ETA appears once one variation finished: average time x remaining / concurrency."""
    clock = FakeClock()
    state = new_state(clock, total=9)
    state.apply(ev.AttemptStarted(ref(1), 1, 3, 1))
    assert "ETA" not in render(state)
    clock.t += 10
    state.apply(ev.VariationCompleted(ref(1), 1, 3, "out/1.png"))
    assert "ETA 0:20" in render(state)  # 10 s x 8 remaining / concurrency 4


def test_eta_is_never_before_the_last_retry_already_scheduled() -> None:
    """Fast successes do not make the ETA 0:00 while a variation waits 30 s to retry: the
    run ends no sooner than that retry plus the average time."""
    clock = FakeClock()
    state = new_state(clock, total=3)
    for n in (1, 2, 3):
        state.apply(ev.AttemptStarted(ref(n), 1, 3, 1))
    state.apply(ev.AttemptFailed(ref(3), 1, 3, RATE_LIMIT, 30.0, clock.t + 30.0))
    clock.t += 1
    state.apply(ev.VariationCompleted(ref(1), 1, 3, "out/1.png"))
    state.apply(ev.VariationCompleted(ref(2), 1, 3, "out/2.png"))
    assert "ETA 0:30" in render(state)  # 29 s to the retry, then 1 s on average
    clock.t += 29
    state.apply(ev.AttemptStarted(ref(3), 2, 3, 1))
    assert "ETA 0:30" not in render(state)


def test_footer_shows_concurrency_and_cooldown() -> None:
    """A rate status adds the concurrency and, while it lasts, the shared cooldown."""
    clock = FakeClock()
    state = new_state(clock)
    state.apply(ev.RateStatus(2, clock.t + 4.5))
    assert "· concurrency 2 · cooling down 5s" in render(state)
    clock.t += 5
    out = render(state)
    assert "concurrency 2" in out and "cooling down" not in out


def test_long_image_paths_are_truncated_from_the_left() -> None:
    """The end of a long path (the file name) survives truncation."""
    state = new_state(FakeClock())
    state.apply(ev.VariationQueued(ref(1, "menus/" * 12 + "street-sign.png")))
    out = render(state, width=80)
    assert re.search(r"…[a-z/]*street-sign\.png", out)


def test_render_is_pure_for_the_same_state_and_now() -> None:
    """Rendering twice at the same now gives the same text."""
    clock = FakeClock()
    state = _many(clock)
    assert render(state, max_rows=20) == render(state, max_rows=20)


def test_render_table_snapshot_at_width_100() -> None:
    """A small fixed state renders to exactly these lines."""
    clock = FakeClock()
    state = new_state(clock, total=3)
    state.apply(ev.VariationQueued(ref(1)))
    state.apply(ev.VariationQueued(ref(2, variation=2)))
    state.apply(ev.VariationQueued(ref(3, "menus/breakfast.png", 1, "fr")))
    state.apply(ev.AttemptStarted(ref(1), 1, 3, 1))
    state.apply(ev.AttemptStarted(ref(2, variation=2), 1, 3, 1))
    state.apply(ev.AttemptFailed(ref(1), 1, 3, RATE_LIMIT, 2.0, clock.t + 2.0))
    clock.t += 12
    state.apply(ev.VariationCompleted(ref(2, variation=2), 1, 3, "out/cafe-menu.es.v2.png"))
    lines = [line.rstrip() for line in render(state, max_rows=10, width=100).splitlines()]
    assert lines == [
        "Image                Var  Lang  Status    Detail",
        "─" * 100,
        "cafe-menu.jpg        v1   es    retrying  Attempt 1/3: Failed - Rate Limit · waiting for a send slot",
        "cafe-menu.jpg        v2   es    done      Attempt 1/3: Succeeded",
        "menus/breakfast.png  v1   fr    waiting   Waiting",
        "1 done · 0 failed · 1 retrying · 0 sending · 1 waiting │ elapsed 0:12 · ETA 0:06",
        "es 1/2 · fr 0/1",
    ]


def _summary() -> ev.Summary:
    rate = ev.ErrorInfo(
        "RATE_LIMIT",
        "Rate Limit",
        "Resource has been exhausted\n(e.g. check quota). " + "x" * 300,
        True,
    )
    key = ev.ErrorInfo(
        "CONFIG_ERROR", "Config Error", "API key not valid. Please pass a valid API key.", False
    )
    failures = [
        ev.Failure(ev.VariationRef("01JA-RATE", "cafe-menu.jpg", 1, "es"), rate, 3),
        ev.Failure(ev.VariationRef("01JB-KEY", "menus/breakfast.png", 2, "fr"), key, 1),
    ]
    return ev.Summary("run-1", RunStatus.FAILED, 10, 8, 2, 0, 0, 13, 8, 14.23, failures)


def test_failure_panel_lists_each_failure_with_its_retry_command() -> None:
    """Each failure shows what, code, label, a one-line message and its retry command."""
    out = text_of(render_failure_panel(_summary(), width=200))
    assert "cafe-menu.jpg v1 es" in out
    assert "RATE_LIMIT (Rate Limit)" in out
    assert "imagelingo retry-failed 01JA-RATE" in out
    assert "menus/breakfast.png v2 fr" in out
    assert "CONFIG_ERROR (Config Error)" in out
    assert "permanent: fix the cause, then imagelingo retry-failed 01JB-KEY" in out
    assert "Resource has been exhausted (e.g. check quota)." in out
    assert "x" * 170 not in out  # trimmed to one short line
    assert "imagelingo retry-failed --code RATE_LIMIT" in out
    assert re.search(r"imagelingo retry-failed(\s|$)", out)


def test_summary_line_and_interrupted_hint() -> None:
    """The summary counts outcomes; an interrupted run says how to resume."""
    assert render_summary_line(_summary()) == (
        "8 completed, 2 failed, 0 skipped in 14.2 s · 13 attempts · 8 credits"
    )
    stopped = ev.Summary("run-2", RunStatus.INTERRUPTED, 10, 7, 0, 0, 3, 7, 7, 3.0)
    assert render_summary_line(stopped).splitlines()[1] == (
        "Interrupted: 3 variations not finished. Run the same command again to resume."
    )


def _script() -> list[ev.Event]:
    return [
        started(2),
        ev.VariationQueued(ref(1)),
        ev.VariationQueued(ref(2, variation=2)),
        ev.AttemptStarted(ref(1), 1, 3, 1),
        ev.AttemptFailed(ref(1), 1, 3, RATE_LIMIT, 2.0, 1002.0),
        ev.AttemptStarted(ref(1), 2, 3, 2),
        ev.VariationCompleted(ref(1), 2, 3, "imagelingo-out/cafe-menu.es.v1.png"),
        ev.AttemptStarted(ref(2, variation=2), 1, 3, 1),
        ev.AttemptFailed(ref(2, variation=2), 1, 3, CONFIG, None),
        ev.VariationFailed(ref(2, variation=2), 1, CONFIG, sent=True),
        ev.BatchFinished(_summary()),
    ]


def test_plain_reporter_prints_one_line_per_state_change() -> None:
    """Plain output: one line per change of a variation's state, no animation."""
    console = Console(width=80, file=io.StringIO(), color_system=None)
    with PlainReporter(console) as report:
        for event in _script():
            report(event)
    assert isinstance(console.file, io.StringIO)
    lines = console.file.getvalue().splitlines()
    assert lines == [
        "process run run-1: 2 variations, concurrency 4",
        "[0/2] cafe-menu.jpg v1 es: Attempt 1/3: Sending…",
        "[0/2] cafe-menu.jpg v1 es: Attempt 1/3: Failed - Rate Limit · retrying in 2s",
        "[0/2] cafe-menu.jpg v1 es: Attempt 2/3: Sending…",
        "[1/2] cafe-menu.jpg v1 es: Attempt 2/3: Succeeded → imagelingo-out/cafe-menu.es.v1.png",
        "[1/2] cafe-menu.jpg v2 es: Attempt 1/3: Sending…",
        "[2/2] cafe-menu.jpg v2 es: Failed - Config Error (permanent)",
    ]


def test_json_reporter_writes_one_object_per_line() -> None:
    """JSON lines: every line parses, one per event, the last is batch_finished."""
    stream = io.StringIO()
    with JsonReporter(stream, EventRecords(FakeClock().now)) as report:
        for event in _script():
            report(event)
    objects = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(objects) == len(_script())
    assert objects[0]["event"] == "batch_started"
    assert objects[-1]["event"] == "batch_finished"
    assert objects[-1]["failures"][1]["variation"]["id"] == "01JB-KEY"
    assert all(obj["at"].endswith("Z") for obj in objects)


def test_live_reporter_leaves_the_final_table_and_survives_a_clock_outside_the_loop() -> None:
    """The live table ends with the final table printed once, even when `now` cannot be read."""

    def no_loop() -> float:
        raise RuntimeError("no running event loop")

    console = Console(
        width=100, height=40, file=io.StringIO(), force_terminal=True, color_system=None
    )
    with LiveReporter(console, no_loop, refresh_per_second=50) as report:
        for event in _script():
            report(event)
    assert isinstance(console.file, io.StringIO)
    out = console.file.getvalue()
    assert "Attempt 2/3: Succeeded" in out
    assert "Failed - Config Error (permanent)" in out
    assert "\x1b[?25h" in out  # the cursor is shown again


def test_compact_table_shows_only_failed_and_interrupted_rows() -> None:
    """The final table of a big run keeps only failed and interrupted rows, plus the counts."""
    clock = FakeClock()
    state = _many(clock)
    state.apply(ev.VariationInterrupted(ref(100, "img-100.png"), 1))
    out = text_of(render_table(state, max_rows=20, statuses=("failed", "interrupted")))
    assert "img-040.png" in out and "img-100.png" in out
    assert "img-039.png" not in out and "img-101.png" not in out
    assert "40 done" in out


def test_rows_that_fit_are_listed_image_by_image_in_the_order_of_their_names() -> None:
    """Images are read several at once and queued as they are ready; the table lists them by
    name, each image's variations in the order they were queued (language by language)."""
    state = new_state(FakeClock(), total=5)
    for image, variation, language in [
        ("tea-label.png", 1, "fr"),
        ("tea-label.png", 1, "de"),
        ("cafe-menu.jpg", 1, "fr"),
        ("cafe-menu.jpg", 2, "fr"),
        ("shop-sign.png", 1, "fr"),
    ]:
        state.apply(ev.VariationQueued(ref(len(state.rows) + 1, image, variation, language)))
    rows, _ = select_rows(state, max_rows=10)
    assert [(r.ref.image, r.ref.variation, r.ref.language) for r in rows] == [
        ("cafe-menu.jpg", 1, "fr"),
        ("cafe-menu.jpg", 2, "fr"),
        ("shop-sign.png", 1, "fr"),
        ("tea-label.png", 1, "fr"),
        ("tea-label.png", 1, "de"),
    ]


def test_plain_reporter_counts_cooldown_on_the_engine_clock() -> None:
    """A rate change prints one line, its cooldown measured on the injected engine clock."""
    clock = FakeClock(5.0)
    console = Console(width=80, file=io.StringIO(), color_system=None)
    report = PlainReporter(console, now=clock.now)
    report(ev.RateStatus(2, 9.5))
    report(ev.RateStatus(2, 9.5))
    assert isinstance(console.file, io.StringIO)
    assert console.file.getvalue().splitlines() == ["Rate: concurrency 2, cooling down 5s"]


def test_narrow_console_keeps_every_column_and_one_line_per_row() -> None:
    """At width 100 a long detail is cut, not the Var column; the footer splits at the bar."""
    clock = FakeClock()
    state = new_state(clock, total=2)
    long_ref = ref(1, "menus/2024/autumn/seasonal-specials-board.png", 2)
    state.apply(ev.VariationFailed(long_ref, 3, TIMEOUT, sent=True))
    state.apply(ev.RateStatus(3, clock.t + 4))
    state.apply(ev.VariationQueued(ref(2)))
    lines = render(state, width=100).splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert re.match(r"cafe-menu\.jpg\s+v1\s+es\s+waiting\s+Waiting", lines[2])
    assert re.match(r"…\S*board\.png\s+v2\s+es\s+failed\s+Failed after 2 retries", lines[3])
    assert lines[-2].startswith("0 done · 1 failed") and lines[-1].startswith("elapsed 0:00")


def test_ctrl_c_is_announced_in_the_footer_and_in_plain_output() -> None:
    """A stop request shows in the live footer and as a plain line, with the grace period."""
    clock = FakeClock()
    state = new_state(clock)
    state.apply(ev.StopRequested("SIGINT", 10.0))
    footer = text_of(render_table(state, max_rows=10), width=200)
    assert "SIGINT: stopping, no new requests; those in flight get 10 s" in footer
    console = Console(width=200, file=io.StringIO(), color_system=None)
    report = PlainReporter(console)
    report(ev.StopRequested("SIGINT", 0.0))
    assert isinstance(console.file, io.StringIO)
    assert console.file.getvalue().splitlines() == ["SIGINT again: stopping now"]


def test_footer_says_the_quota_and_the_pace_and_the_eta_moves_smoothly_to_it() -> None:
    """Once paced, the footer says `quota ≈ 30/min · pacing 1 every 2.0 s`; the ETA moves a
    fifth of the way per event towards remaining x pace, instead of jumping."""
    clock = FakeClock()
    state = new_state(clock, total=31)
    state.apply(ev.AttemptStarted(ref(1), 1, 3, 1))
    clock.t += 1
    state.apply(ev.VariationCompleted(ref(1), 1, 3, "out/1.png"))
    assert state.eta(clock.t) == 7.5  # 30 remaining, 4 at a time, 1 s each
    paced = ev.RateStatus(4, None, quota_per_minute=30, pace_interval=2.04)
    etas = []
    for _ in range(12):
        state.apply(paced)
        etas.append(state.eta(clock.t) or 0.0)
    assert "quota ≈ 30/min · pacing 1 every 2.0 s" in render(state)
    assert etas[0] == pytest.approx(7.5 + 0.2 * (30 * 2.04 - 7.5))
    assert etas == sorted(etas) and etas[-1] == pytest.approx(30 * 2.04, rel=0.1)
