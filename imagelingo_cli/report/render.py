"""The report as one HTML page: Jinja2 templates shipped in `templates/`, autoescaped, so a
file name or an API message is always text, never markup.

The page fetches nothing: its style and script are inline, its images are thumbnails beside
it or embedded, and a Content-Security-Policy allows exactly that (the inline style and
script by their hashes, images from files and data: URIs, no connections), so even markup
that slipped through could neither run nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from imagelingo_cli import __version__
from imagelingo_cli.report.charts import CATEGORIES, stack
from imagelingo_cli.report.data import ReportData, label
from imagelingo_cli.report.thumbnails import Preview

GENERATOR = "imagelingo report"  # in a <meta name="generator">: marks a file as ours


def render_html(data: ReportData, previews: dict[Path, Preview], *, database: str) -> str:
    """The whole page."""
    css, script = _asset("report.css"), _asset("report.js")
    policy = "; ".join(
        [
            "default-src 'none'",
            "img-src file: data:",
            f"style-src {_hash(css)}",
            f"script-src {_hash(script)}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            data=data,
            previews=previews,
            database=database,
            css=css,
            script=script,
            policy=policy,
            generator=GENERATOR,
            version=__version__,
            categories=CATEGORIES,
            no_preview=Preview(None, problem="no file"),
        )
    )


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("imagelingo_cli.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        clock=clock,
        seconds=seconds,
        elapsed=elapsed,
        percent=percent,
        usd=usd,
        count=count,
        file_url=file_url,
        language_name=language_name,
        backend_name=backend_name,
    )
    env.globals.update(label=label, stack=stack, plural=plural, run_seconds=run_seconds)
    return env


@cache
def _asset(name: str) -> str:
    return (resources.files("imagelingo_cli.report") / "templates" / name).read_text("utf-8")


def _hash(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


# --- filters: how values read on the page ----------------------------------------------------


def _moment(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone()


def when(stamp: str | None) -> str:
    """A stored UTC stamp in local time: `2026-11-30 20:46:03`."""
    return _moment(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else "—"


def clock(stamp: str | None) -> str:
    """The local time of day, to the millisecond: `20:46:03.429`."""
    return _moment(stamp).strftime("%H:%M:%S.%f")[:-3] if stamp else "—"


def seconds(ms: int | float | None) -> str:
    """A duration in milliseconds, as read: `76 ms`, `2.1 s`, `1 min 4 s`."""
    if ms is None:
        return "—"
    return elapsed(ms / 1000)


def elapsed(value: float) -> str:
    """Seconds, as read: `0 s`, `50 ms`, `2.5 s`, `3 min`, `1 min 4 s`, `2 h 5 min`."""
    if 0 < value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s".replace(".0 s", " s")
    minutes, rest = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


def usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.2f}" if value >= 1 else f"${value:.3f}"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def plural(number: int, word: str, words: str | None = None) -> str:
    return f"{number:,} {word if number == 1 else words or word + 's'}"


def file_url(path: Path) -> str:
    """A link to a local file that works from the report wherever the report is opened here."""
    return path.absolute().as_uri()


@cache
def language_name(tag: str) -> str:
    """`es` -> `Spanish`; a tag langcodes cannot name stays as it is."""
    from imagelingo_cli.languages import resolve_language

    try:
        return resolve_language(tag).name
    except ValueError:
        return tag


def backend_name(backend: str | None) -> str:
    """`simulator:flaky` -> `simulator (flaky profile)`; `gemini` -> `Gemini API`."""
    if not backend:
        return "—"
    if backend.startswith("simulator:"):
        return f"simulator ({backend.partition(':')[2]} profile)"
    return "Gemini API" if backend == "gemini" else backend


def run_seconds(run: dict[str, Any]) -> float | None:
    if not run.get("finished_at"):
        return None
    return (_moment(run["finished_at"]) - _moment(run["started_at"])).total_seconds()
