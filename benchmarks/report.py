"""How `imagelingo report` scales: a small run next to a 2,000-variation one, in one run.

Each database is made by a real `imagelingo process --variations 2` against the simulator,
with a scenario that fails every variation 2 with a 503 (so half the page is failures with
their attempts). Then, for each, the real command as a subprocess: `imagelingo report` with
no thumbnails yet (cold), again (warm: thumbnails reused), and `--self-contained`; and,
where Chromium and Playwright are installed, the page in headless Chromium: the time to its
load event, and to apply the "Failures only" filter and draw the result.

    .venv/bin/python benchmarks/report.py [--small 50] [--large 1000] [--size 1024]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import make_images, parser, print_table, write_json

from imagelingo_cli.simulator import Simulator

CHROMIUM = os.environ.get("IMAGELINGO_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
FILTER_AND_DRAW_MS = """async () => {
    const started = performance.now();
    document.querySelector('input[name="show"][value="failures"]').click();
    await new Promise(done => requestAnimationFrame(() => setTimeout(done)));
    return performance.now() - started;
}"""


def imagelingo(*args: str, env: dict[str, str], cwd: Path) -> float:
    """Seconds one real `imagelingo` subprocess takes."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "imagelingo_cli", *args],
        env=env,
        cwd=cwd,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - started


def make_database(work: Path, images: int, size: int) -> dict[str, str]:
    folder = work / "images"
    make_images(folder, images, size=size)
    scenario = work / "scenario.json"
    scenario.write_text(json.dumps({"rules": [{"variation": 2, "responses": ["overloaded"]}]}))
    env = os.environ | {"IMAGELINGO_DB": str(work / "db.sqlite"), "GEMINI_API_KEY": "bench"}
    with Simulator("ok", scenario=scenario) as sim:
        imagelingo(
            "process", str(folder), "-n", "2", "--base-url", sim.base_url, "--json",
            "-c", "8", env=env, cwd=work,
        )  # fmt: skip
    return env


def browser_times(page_file: Path) -> dict[str, float] | None:
    if not Path(CHROMIUM).exists():
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_file.as_uri(), wait_until="load")
        load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        filter_ms = page.evaluate(FILTER_AND_DRAW_MS)
        browser.close()
    return {"load_ms": float(load_ms), "filter_ms": float(filter_ms)}


def measure(work: Path, images: int, size: int) -> dict[str, Any]:
    env = make_database(work, images, size)
    cold = imagelingo("report", "-o", "r.html", env=env, cwd=work)
    warm = imagelingo("report", "-o", "r.html", env=env, cwd=work)
    embedded = imagelingo("report", "--self-contained", "-o", "one.html", env=env, cwd=work)
    row: dict[str, Any] = {
        "variations": images * 2,
        "cold_s": cold,
        "warm_s": warm,
        "self_contained_s": embedded,
        "page_kb": (work / "r.html").stat().st_size / 1024,
        "self_contained_kb": (work / "one.html").stat().st_size / 1024,
    }
    seen = browser_times(work / "r.html")
    if seen:
        row.update(seen)
    return row


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--small", type=int, default=50, help="images in the small run")
    parse.add_argument("--large", type=int, default=1000, help="images in the large run")
    parse.add_argument("--size", type=int, default=1024, help="side of each image, in pixels")
    args = parse.parse_args()
    rows = []
    for count in (args.small, args.large):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(Path(tmp), count, args.size))
    small, large = rows
    scale = large["variations"] / small["variations"]
    ratios = {
        key: large[key] / small[key] / scale
        for key in ("cold_s", "warm_s", "self_contained_s", "load_ms", "filter_ms")
        if key in large
    }
    print_table("report: time and size, small vs large run (2 variations per image)", rows)
    print(f"\ncost per variation, large / small ({scale:g}x the variations):")
    for key, ratio in ratios.items():
        print(f"  {key:18} {ratio:.2f}x")
    write_json(args.json, {"benchmark": "report", "rows": rows, "per_variation_ratio": ratios})


if __name__ == "__main__":
    main()
