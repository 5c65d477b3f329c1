"""The report in a real headless Chromium (Debian's `chromium`, driven by Playwright): the
thumbnails load, nothing leaves file://, nothing logs an error, the filters work, hostile
text stays text, and a screenshot is left for a person to look at.

Skipped, saying why, only where no Chromium or no Playwright is installed; with
IMAGELINGO_REQUIRE_BROWSER=1 (as .ci/run sets) that is a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from test_report import HOSTILE, Runs, make_runs

CHROMIUM = os.environ.get("IMAGELINGO_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set IMAGELINGO_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def chromium() -> str:
    """Chromium's path; the test skips (or, where it must run, fails) without it."""
    reason = _unavailable()
    if reason:
        if os.environ.get("IMAGELINGO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test must run here: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def browser_page(chromium: str, tmp_path: Path) -> Iterator[Any]:
    """One Chromium with a new empty profile, and a page of it. Playwright's loop runs on
    this thread while it is open: runs that the test needs are made before."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def runs(cli: Cli, images: Path, tmp_path: Path) -> Runs:
    return make_runs(cli, images, tmp_path)


def screenshot_path(tmp_path: Path) -> Path:
    """Where the screenshot goes: IMAGELINGO_SCREENSHOTS if set (CI keeps it), else tmp_path."""
    folder = Path(os.environ.get("IMAGELINGO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "report.png"


def visible_variations(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        ".variation:not([hidden])", "cards => cards.map(c => c.id.slice(2))"
    )
    return ids


def test_report_in_a_real_browser(
    chromium: str, cli: Cli, runs: Runs, browser_page: Any, tmp_path: Path
) -> None:
    """Completed, failed and abandoned variations render; thumbnails load; only file:// is
    requested; no console error; the failure and code filters work; no injected markup runs."""
    result = cli("report", "--run", runs.first, "-o", "report.html")
    assert result.exit_code == 0, result.output
    page = browser_page
    requests: list[str] = []
    problems: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto((tmp_path / "report.html").as_uri())

    images = page.locator("img")
    assert images.count() == 10
    for index in range(images.count()):  # lazy: each loads once it is near the viewport
        images.nth(index).scroll_into_view_if_needed()
    page.wait_for_function("[...document.images].every(img => img.complete)")
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(width > 0 for width in widths), widths
    assert all(alt for alt in page.eval_on_selector_all("img", "imgs => imgs.map(i => i.alt)"))

    everything = visible_variations(page)
    assert sorted(everything) == sorted(runs.ids.values())
    page.get_by_label("Failures only").check()
    failures = {runs.ids[f"{HOSTILE} v1"], runs.ids["shop-sign.png v1"]}
    assert set(visible_variations(page)) == failures
    assert page.locator(".source:not([hidden])").count() == 2
    page.get_by_label("All").check()
    page.get_by_role("button", name="Rate Limit").click()
    assert visible_variations(page) == [runs.ids["cafe-menu.jpg v1"]]
    assert page.get_by_role("status").inner_text() == "Showing 1 of 8 variations"
    page.get_by_role("button", name="Rate Limit").click()
    assert sorted(visible_variations(page)) == sorted(everything)

    assert page.locator('img[src="x"]').count() == 0  # the file name stayed text
    assert page.get_by_role("heading", name=HOSTILE).count() == 1
    assert page.locator('a[href*="google.com"], #logo').count() == 0  # so did the 502 page
    hostile = page.locator(f"#v-{runs.ids[f'{HOSTILE} v1']} .meta > .message")
    assert "<title>Error 502 (Server Error)!!1</title>" in hostile.inner_text()
    assert page.locator(".v-abandoned .abandoned-note").count() == 1

    page.evaluate("window.scrollTo(0, 0)")
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1280, "height": height})  # every group drawn
    shot = screenshot_path(tmp_path)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

    assert dialogs == []
    assert problems == []
    assert [u for u in requests if not u.startswith(("file://", "data:"))] == []
