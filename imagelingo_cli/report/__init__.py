"""`imagelingo report`: one offline HTML page of a run's translations and its error analytics.

    write_report(store, scope, out, ...) -> Written     gather, make thumbnails, render, write

    data.py        what the page shows, from the database (all SQL is in store/queries.py)
    thumbnails.py  Pillow thumbnails, in `<name>_files/` beside the page or embedded
    charts.py      chart geometry for inline SVG
    render.py      Jinja2 with autoescaping; templates/ holds the page, its style and script

Nothing here imports rich or Typer: the command shows the progress and prints the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagelingo_cli.report.data import NothingToReport, Scope

if TYPE_CHECKING:
    from imagelingo_cli.report.thumbnails import Progress
    from imagelingo_cli.store import Store

__all__ = ["NothingToReport", "ReportError", "Scope", "Written", "files_folder", "write_report"]

_HEAD_BYTES = 4096  # where an earlier report has its generator tag


class ReportError(Exception):
    """The report cannot be written where asked; the message says why."""


@dataclass(frozen=True)
class Written:
    path: Path
    files: Path | None  # the thumbnails' folder; None when they are embedded
    variations: int
    failures: int
    previews: int  # images shown as thumbnails


def files_folder(out: Path) -> Path:
    """Where the thumbnails of the report `out` go: `report.html` -> `report_files/`."""
    return out.with_name(out.stem + "_files")


def write_report(
    store: Store,
    scope: Scope,
    out: Path,
    *,
    self_contained: bool = False,
    progress: Progress | None = None,
) -> Written:
    """Write the report of `scope` to `out` (replacing an earlier report there, never another
    file). Raises NothingToReport or ReportError."""
    from imagelingo_cli.outputs import write_atomic
    from imagelingo_cli.report.data import gather
    from imagelingo_cli.report.render import render_html
    from imagelingo_cli.report.thumbnails import make_previews

    _check_replaceable(out)
    data = gather(store, scope)
    files = [source.file for source in data.sources]
    files += [v.output_file for v in data.variations if v.output_file is not None]
    folder = None if self_contained else files_folder(out)
    previews = make_previews(files, folder=folder, progress=progress)
    html = render_html(data, previews, database=str(store.path or ""))
    write_atomic(out, html.encode("utf-8"))
    return Written(
        path=out,
        files=folder,
        variations=len(data.variations),
        failures=len(data.failures),
        previews=sum(1 for p in previews.values() if p.src is not None),
    )


def _check_replaceable(out: Path) -> None:
    from imagelingo_cli.report.render import GENERATOR

    if out.is_dir():
        raise ReportError(f"{out} is a folder: the report needs a file name")
    if not out.exists():
        return
    try:
        with out.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise ReportError(f"cannot read {out} to check it is an earlier report: {exc}") from None
    if f'name="generator" content="{GENERATOR}"'.encode() not in head:
        raise ReportError(f"{out} exists and is not an imagelingo report: it is left alone")
