"""`imagelingo history`: every variation, newest first, failures included."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from imagelingo_cli.cli.common import fail_setup, read_db
from imagelingo_cli.cli.when import HELP as SINCE_HELP
from imagelingo_cli.cli.when import parse_since

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


JSON_COLUMNS = (
    "id",
    "source_path",
    "relative_path",
    "variation",
    "target_language",
    "model",
    "backend",
    "status",
    "error_code",
    "error_message",
    "retry_count",
    "attempt_count",
    "is_retryable",
    "credits_charged",
    "first_error_at",
    "last_retry_at",
    "created_at",
    "updated_at",
    "completed_at",
    "output_path",
    "run_id",
)
RENAMED = {"source_path": "image", "target_language": "language"}


def history(
    errors: bool = typer.Option(
        False, "--errors", help="Only failed variations, with code, message and retry count."
    ),
    run: str | None = typer.Option(
        None, "--run", help="Only variations this run worked on (id or unique prefix)."
    ),
    code: list[str] | None = typer.Option(
        None, "--code", help="Only variations whose last error is this code (repeatable)."
    ),
    since: str | None = typer.Option(None, "--since", metavar="WHEN", help=SINCE_HELP),
    limit: int = typer.Option(50, "--limit", "-n", help="Newest N variations (0: all)."),
    db: Path | None = typer.Option(
        None, "--db", help="Database file (default: IMAGELINGO_DB or the user data folder)."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="One JSON array of objects on stdout (see below), nothing else."
    ),
) -> None:
    """Every variation, newest first, failures included ("Failed after 2 retries · Rate Limit").

    --json prints one JSON array; each object has id, image (absolute source path),
    relative_path, variation, language, model, backend, status, story, error_code,
    error_message, retry_count, attempt_count, is_retryable (true/false/null),
    credits_charged, first_error_at, last_retry_at, created_at, updated_at (UTC),
    completed_at, output_path and run_id.
    """
    from imagelingo_cli.cli.wording import parse_codes, resolve_run
    from imagelingo_cli.store import queries

    if limit < 0:
        fail_setup("--limit must be 0 (all) or more")
    try:
        since_stamp = parse_since(since) if since is not None else None
    except ValueError as exc:
        fail_setup(str(exc))
    codes = parse_codes(code)
    store = read_db(db)
    try:
        filters = queries.HistoryFilter(
            errors=errors,
            run_id=resolve_run(store, run),
            codes=codes,
            since=since_stamp,
            limit=limit or None,
        )
        rows = queries.history(store, filters)
        total = queries.count_history(store, filters) if limit and len(rows) == limit else len(rows)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps([_json(row) for row in rows], indent=2))
        return
    from rich.console import Console  # not needed for JSON: imported when drawing

    console = Console(highlight=False)
    if not rows:
        filtered = run or codes or since
        if errors:
            console.print("No failed variations" + (" match." if filtered else "."))
        else:
            console.print("No variations match." if filtered else "No variations recorded yet.")
        return
    console.print(_errors_table(rows) if errors else _table(rows))
    if total > len(rows):
        console.print(f"Showing the newest {len(rows)} of {total:,} (--limit 0 shows all).")
    if errors:
        _errors_footer(console, rows, total, run=filters.run_id, codes=codes)


def _json(row: dict[str, Any]) -> dict[str, Any]:
    from imagelingo_cli.cli.wording import story

    out = {RENAMED.get(column, column): row[column] for column in JSON_COLUMNS}
    out["is_retryable"] = None if row["is_retryable"] is None else bool(row["is_retryable"])
    out["story"] = story(row)
    return out


def _table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    from imagelingo_cli.cli.wording import local, story

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ID", "When", "Image", "Var", "Lang", "Status", "Story"):
        table.add_column(name, no_wrap=name in ("ID", "When", "Var"), overflow="fold")
    for row in rows:
        table.add_row(
            row["short_id"],
            local(row["updated_at"], short=True),
            row["relative_path"],
            f"v{row['variation']}",
            row["target_language"],
            row["status"].capitalize(),
            story(row),
        )
    return table


def _errors_table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    from imagelingo_cli.cli.wording import local, one_line

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("ID", "When", "Image", "Var", "Lang", "Code", "Retries", "May help", "Message"):
        table.add_column(name, no_wrap=name in ("ID", "When", "Var", "Code"), overflow="fold")
    for row in rows:
        table.add_row(
            row["short_id"],
            local(row["updated_at"], short=True),
            row["relative_path"],
            f"v{row['variation']}",
            row["target_language"],
            row["error_code"] or "?",
            str(row["retry_count"]) if row["attempt_count"] else "not sent",
            {1: "yes", 0: "no"}.get(row["is_retryable"], "?"),
            one_line(row["error_message"]),
        )
    return table


def _errors_footer(
    console: Console,
    rows: list[dict[str, Any]],
    total: int,
    *,
    run: str | None,
    codes: tuple[str, ...],
) -> None:
    from imagelingo_cli.cli.wording import plural

    helpful = sum(1 for row in rows if row["is_retryable"])
    shown = "" if total == len(rows) else f" of the {len(rows)} shown"
    console.print(f"{plural(total, 'failed variation')}; {helpful}{shown} may pass on a retry.")
    scope = (f" --run {run}" if run else "") + "".join(f" --code {c}" for c in codes)
    console.print(f"Retry them: imagelingo retry-failed{scope}")
    if 0 < helpful < len(rows):
        console.print(f"Only those that may pass: imagelingo retry-failed --transient-only{scope}")
    transient = Counter(r["error_code"] for r in rows if r["is_retryable"] and r["error_code"])
    if not codes and len({r["error_code"] for r in rows}) > 1 and transient:
        commonest = transient.most_common(1)[0][0]
        console.print(f"One code at a time: imagelingo retry-failed --code {commonest}")
    console.print("Details: imagelingo show ID · stop offering one: imagelingo abandon ID")
