"""`imagelingo report`: its data from a database made by real runs against the simulator, the
page the real CLI writes (escaped, offline, thumbnails beside it or embedded), and the hint
that names it after a run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SAMPLES, TEST_KEY, Cli, scenario_simulator
from PIL import Image
from test_light_imports import PROBE

from imagelingo_cli import pricing
from imagelingo_cli.report import Scope
from imagelingo_cli.report.data import ReportData, Variation, gather
from imagelingo_cli.store import open_store

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}
HOSTILE = "<img src=x onerror=alert(1)>.png"


@dataclass(frozen=True)
class Runs:
    """A process run with every kind of ending, a retry-failed run, and one abandon."""

    first: str  # process: 8 variations
    second: str  # retry-failed of concert-poster v2
    ids: dict[str, str]  # "cafe-menu.jpg v1" -> generation id


@pytest.fixture
def runs(cli: Cli, images: Path, tmp_path: Path) -> Runs:
    return make_runs(cli, images, tmp_path)


def make_runs(cli: Cli, images: Path, tmp_path: Path) -> Runs:
    """cafe-menu v1: 429 then success. concert-poster v2: 503, fixed by retry-failed.
    shop-sign v1: 400, abandoned. The hostile file name v1: a 502 whose body is HTML."""
    shutil.copy(SAMPLES / "tea-label.png", images / HOSTILE)
    rules = [
        {
            "image": "imgs/cafe-menu.jpg",
            "variation": 1,
            "responses": [{"fault": "rate_limit", "retry_delay": 1}],
        },
        {"image": "imgs/concert-poster.webp", "variation": 2, "responses": ["overloaded"]},
        {"image": "imgs/shop-sign.png", "variation": 1, "responses": ["invalid_argument"]},
        {"image": f"imgs/{HOSTILE}", "variation": 1, "responses": ["bad_gateway_html"]},
    ]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        args = ("--base-url", sim.base_url)
        result = cli("process", str(images), "-n", "2", "--to", "de", *args, env=KEY_ENV)
        assert result.exit_code == 1, result.output
        ids = {
            f"{Path(r['source_path']).name} v{r['variation']}": r["id"]
            for r in cli.rows("SELECT id, source_path, variation FROM generations")
        }
        result = cli("retry-failed", ids["concert-poster.webp v2"], env=KEY_ENV)
        assert result.exit_code == 0, result.output
    assert cli("abandon", ids["shop-sign.png v1"]).exit_code == 0
    first, second = (r["id"] for r in cli.rows("SELECT id FROM runs ORDER BY started_at"))
    return Runs(first, second, ids)


def report_data(cli: Cli, scope: Scope) -> ReportData:
    store = open_store(cli.db_path)
    try:
        return gather(store, scope)
    finally:
        store.close()


def by_name(data: ReportData) -> dict[str, Variation]:
    return {f"{s.name} v{v.number}": v for s in data.sources for v in s.variations}


# --- the data ------------------------------------------------------------------------------


def test_default_scope_is_the_last_run(cli: Cli, runs: Runs) -> None:
    """Without --run or --since the report shows the last run: the retry-failed of one variation."""
    data = report_data(cli, Scope())
    assert data.scope.run_id == runs.second
    assert [(s.name, [v.id for v in s.variations]) for s in data.sources] == [
        ("concert-poster.webp", [runs.ids["concert-poster.webp v2"]])
    ]


def test_variations_are_grouped_by_source_with_their_attempts(cli: Cli, runs: Runs) -> None:
    """The process run: 4 sources in path order, v1 then v2, each failure with its story."""
    data = report_data(cli, Scope(run_id=runs.first))
    assert [s.name for s in data.sources] == [
        HOSTILE,
        "cafe-menu.jpg",
        "concert-poster.webp",
        "shop-sign.png",
    ]
    assert all([v.number for v in s.variations] == [1, 2] for s in data.sources)
    found = by_name(data)
    cafe = found["cafe-menu.jpg v1"]
    assert cafe.status == "completed" and cafe.codes_hit == ("RATE_LIMIT",)
    first, second = cafe.attempts
    assert (first.outcome, first.code, first.http_status) == ("failed", "RATE_LIMIT", 429)
    assert first.wait_before_next_ms >= 1000 and (second.outcome, second.position) == (
        "succeeded",
        2,
    )
    assert cafe.output_file is not None and cafe.output_file.is_file()
    concert = found["concert-poster.webp v2"]
    assert concert.status == "completed"
    assert [(a.trigger, a.round, a.outcome) for a in concert.attempts] == [
        ("auto", 1, "failed"),
        ("manual", 2, "succeeded"),
    ]
    shop = found["shop-sign.png v1"]
    assert (shop.status, shop.code, shop.is_failure, shop.retry_command) == (
        "abandoned",
        "INVALID_REQUEST",
        True,
        None,
    )
    hostile = found[f"{HOSTILE} v1"]
    assert hostile.retry_command == f"imagelingo retry-failed {hostile.id}"
    assert "<a href=//www.google.com/>" in hostile.message
    assert hostile.retryable is True and hostile.output_file is None
    assert [(s.name, v.number) for s, v in data.failures] == [(HOSTILE, 1), ("shop-sign.png", 1)]
    assert data.codes == {"INVALID_REQUEST": 1, "RATE_LIMIT": 1, "SERVER_ERROR": 2}


def test_analytics_agree_with_stats_and_the_attempts_table(cli: Cli, runs: Runs) -> None:
    """The report's numbers are stats' numbers; retries, tokens and the timeline add up."""
    data = report_data(cli, Scope(run_id=runs.first))
    stats = json.loads(cli("stats", "--json", "--run", runs.first).output)
    assert stats.pop("estimated_spend_usd") == pytest.approx(data.estimated_usd, abs=1e-4)
    assert stats.pop("unpriced_models") == []
    assert data.stats == stats
    attempts = cli.rows("SELECT * FROM attempts WHERE run_id = ?", (runs.first,))
    assert len(attempts) == 9 and data.stats["attempts"]["total"] == 9
    assert [(r["code"], r["auto"], r["manual"]) for r in data.retries] == [("RATE_LIMIT", 1, 0)]
    assert data.timeline.totals == {
        "succeeded": 5,
        "limited": 1,
        "failed": 3,
        "interrupted": 0,
        "in_flight": 0,
    }
    (spend,) = data.spend
    assert (spend.model, spend.backend, spend.images) == ("gemini-2.5-flash-image", "gemini", 5)
    assert spend.prompt_tokens == sum(a["prompt_tokens"] or 0 for a in attempts)
    assert spend.estimate == pricing.estimate(
        "gemini-2.5-flash-image", 5, input_tokens=spend.prompt_tokens
    )
    everything = report_data(cli, Scope(since="2000-01-01T00:00:00.000Z"))
    assert {(r["code"], r["auto"], r["manual"]) for r in everything.retries} == {
        ("RATE_LIMIT", 1, 0),
        ("SERVER_ERROR", 0, 1),
    }
    assert len(everything.runs) == 2 and everything.stats["credits_charged"] == 6


def test_errors_only_keeps_what_did_not_complete(cli: Cli, runs: Runs) -> None:
    """--errors: the failed and the abandoned variation; analytics still cover the whole run."""
    data = report_data(cli, Scope(run_id=runs.first, errors_only=True))
    assert sorted(f"{s.name} v{v.number}" for s in data.sources for v in s.variations) == [
        f"{HOSTILE} v1",
        "shop-sign.png v1",
    ]
    assert data.stats["variations"]["variations"] == 8


# --- the page ------------------------------------------------------------------------------

SRC_OR_HREF = re.compile(r'\b(?:src|href)="([^"]*)"')


def test_report_command_writes_an_escaped_offline_page(cli: Cli, runs: Runs) -> None:
    """The page names every variation, shows the hostile name and HTML message as text, and
    links only to local files and its own thumbnails folder."""
    result = cli("report", "--run", runs.first[:14], "-o", "out/run.html")
    assert result.exit_code == 0, result.output
    page = Path("out/run.html")
    assert result.stdout.strip() == str(page.absolute())
    html = page.read_text("utf-8")
    assert all(gid in html for gid in runs.ids.values())
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.png" in html
    assert "<a href=//www.google.com/>" not in html and "&lt;a href=//www.google.com/&gt;" in html
    assert f"imagelingo retry-failed {runs.ids[f'{HOSTILE} v1']}" in html
    links = SRC_OR_HREF.findall(html)
    thumbs = [u for u in links if u.startswith("run_files/")]
    assert len(thumbs) == 4 + 6  # the originals and the completed translations
    assert all((page.parent / u).is_file() for u in thumbs)
    assert all(u.startswith(("run_files/", "file:///", "#")) for u in links), links
    assert len(list(Path("out/run_files").iterdir())) == 10


def test_self_contained_embeds_the_thumbnails(cli: Cli, runs: Runs) -> None:
    """--self-contained: one file, thumbnails as data: URIs, no folder beside it."""
    result = cli("report", "--run", runs.first, "--self-contained", "-o", "one.html")
    assert result.exit_code == 0, result.output
    html = Path("one.html").read_text("utf-8")
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert len(sources) == 10 and all(s.startswith("data:image/webp;base64,") for s in sources)
    assert not Path("one_files").exists()


def test_an_earlier_report_is_replaced_and_another_file_never(cli: Cli, runs: Runs) -> None:
    """A second report replaces the first; a file that is not a report stops it (exit 2)."""
    assert cli("report", "-o", "r.html").exit_code == 0
    assert cli("report", "--run", runs.first, "-o", "r.html").exit_code == 0
    assert runs.ids["cafe-menu.jpg v1"] in Path("r.html").read_text("utf-8")
    Path("notes.html").write_text("<p>my notes</p>")
    result = cli("report", "-o", "notes.html")
    assert result.exit_code == 2 and "not an imagelingo report" in result.output
    assert Path("notes.html").read_text() == "<p>my notes</p>"


def test_nothing_to_report(cli: Cli) -> None:
    """An empty database: a sentence, exit 0, no file."""
    result = cli("report")
    assert result.exit_code == 0 and "Nothing to report: no runs recorded yet." in result.output
    assert not Path("imagelingo-report.html").exists()


def test_a_run_names_the_command_that_reports_it(cli: Cli, images: Path) -> None:
    """The end of process names `imagelingo report --run <its id>`."""
    result = cli("process", str(images / "cafe-menu.jpg"), "--simulate", "ok")
    (run,) = cli.rows("SELECT id FROM runs")
    assert f"imagelingo report --run {run['id']} --open" in result.output


def test_open_starts_the_browser_named_by_browser(cli: Cli, runs: Runs, tmp_path: Path) -> None:
    """--open hands the page's file:// URL to the web browser (here: $BROWSER, a script)."""
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(0o755)
    env = os.environ | {"BROWSER": str(browser)}
    command = [sys.executable, "-m", "imagelingo_cli", "report", "-o", "b.html", "--open"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert opened.read_text() == (tmp_path / "b.html").as_uri()


def test_help_stays_light() -> None:
    """`report --help` imports neither Jinja2 nor Pillow."""
    heavy = "google,httpx2,PIL,jinja2"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, heavy, "report", "--help"], capture_output=True, text=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"exit": 0, "heavy": []}


def test_the_report_library_knows_neither_typer_nor_rich(cli: Cli, runs: Runs) -> None:
    """imagelingo_cli.report writes a whole report without importing typer or rich."""
    code = (
        "import sys; from pathlib import Path; "
        "from imagelingo_cli.report import Scope, write_report; "
        "from imagelingo_cli.store import open_store; "
        f"write_report(open_store(Path({str(cli.db_path)!r})), Scope(), Path('lib.html')); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'click'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
    assert Path("lib.html").is_file()


# --- thumbnails ----------------------------------------------------------------------------


@pytest.fixture
def turned(tmp_path: Path) -> Iterator[Path]:
    """A 400×200 JPEG whose EXIF says: turn it 90° (orientation 6), so it shows 200×400."""
    image = Image.new("RGB", (400, 200), "navy")
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    image.save(path, exif=exif)
    yield path


def test_thumbnails_are_upright_bounded_and_reused(turned: Path, tmp_path: Path) -> None:
    """EXIF orientation applied, longest side 320, made once while the file is unchanged."""
    from imagelingo_cli.report.thumbnails import BOX, make_previews

    big = tmp_path / "big.png"
    Image.new("RGBA", (2000, 1000), (200, 0, 0, 128)).save(big)
    folder = tmp_path / "r_files"
    calls: list[tuple[int, int]] = []
    previews = make_previews(
        [turned, big, turned], folder=folder, progress=lambda *a: calls.append(a)
    )
    assert (previews[turned].width, previews[turned].height) == (160, 320)
    assert (previews[big].width, previews[big].height) == (BOX, 160)
    with Image.open(folder / Path(previews[big].src or "").name) as thumb:
        assert thumb.format == "WEBP" and thumb.mode == "RGBA"
    assert sorted(calls) == [(1, 2), (2, 2)]
    made = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = make_previews([turned, big], folder=folder)
    assert again == previews and {p: p.stat().st_mtime_ns for p in folder.iterdir()} == made


def test_a_missing_or_unreadable_file_gets_a_reason(tmp_path: Path) -> None:
    """No thumbnail, but a reason the page shows: not found, not an image, truncated."""
    from imagelingo_cli.report.thumbnails import make_previews

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    half = tmp_path / "half.png"
    whole = (SAMPLES / "shop-sign.png").read_bytes()
    half.write_bytes(whole[: len(whole) // 2])
    previews = make_previews([tmp_path / "gone.png", text, half], folder=None)
    assert previews[tmp_path / "gone.png"].problem == "file not found"
    assert previews[text].problem == "no preview for this format"
    assert previews[half].src is None
    assert (previews[half].problem or "").startswith("cannot be previewed: image file is truncated")


# --- prices and charts ---------------------------------------------------------------------


def test_estimate_uses_the_price_table() -> None:
    """Per image and per input token; the Batch API at half; an unknown model has no estimate."""
    estimate = pricing.estimate("gemini-2.5-flash-image", 10, input_tokens=1_000_000)
    assert estimate is not None
    assert estimate.total_usd == pytest.approx(10 * 0.039 + 0.30)
    batch = pricing.estimate("gemini-2.5-flash-image", 10, input_tokens=1_000_000, batch=True)
    assert batch is not None and batch.total_usd == pytest.approx(estimate.total_usd / 2)
    assert pricing.estimate("gemini-9-image", 10) is None


def test_histogram_stacks_attempts_per_slice() -> None:
    """Attempts fall in slices of a readable width; each slice stacks its categories."""
    from imagelingo_cli.report.charts import MIN_SLICES, attempt_histogram

    t0 = 1_700_000_000.0
    chart = attempt_histogram(
        [(t0, "succeeded"), (t0 + 0.01, "limited"), (t0 + 0.02, "limited"), (t0 + 9.0, "failed")]
    )
    assert (chart.slice_seconds, chart.peak) == (0.2, 3)
    first = [r for r in chart.rects if r.x == 0]
    assert [(r.category, r.count) for r in first] == [("succeeded", 1), ("limited", 2)]
    assert first[0].y + first[0].height == pytest.approx(100) and first[1].y == pytest.approx(0)
    assert chart.totals["failed"] == 1 and chart.rects[-1].x > 95
    (alone,) = attempt_histogram([(t0, "succeeded")]).rects
    assert alone.width == pytest.approx(100 / MIN_SLICES)  # a thin bar, not the whole width
