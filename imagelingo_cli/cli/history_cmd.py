"""`imagelingo history`: every variation, newest first, failures included."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import fail_setup, output_format, read_db
from imagelingo_cli.cli.text_output import TextOutput, text_output
from imagelingo_cli.cli.when import HELP as SINCE_HELP
from imagelingo_cli.cli.when import parse_since


def history(
    errors: bool = typer.Option(
        False, "--errors", help="Only failed variations, with code, message and retry count."
    ),
    run: str | None = options.RUN,
    code: list[str] | None = typer.Option(
        None,
        "--code",
        metavar="CODE",
        help="Only variations whose last error is this code (repeatable).",
    ),
    since: str | None = typer.Option(None, "--since", metavar="WHEN", help=SINCE_HELP),
    to: list[str] | None = options.LANGUAGES,
    limit: int = typer.Option(50, "--limit", metavar="N", help="Newest N variations (0: all)."),
    db: Path | None = options.DB,
    output: str = typer.Option(
        "table", "--format", metavar="FORMAT", help="table, tsv, csv or json."
    ),
    json_output: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    """Every variation, newest first, failures included ("Failed after 2 retries · Rate Limit").

    tsv, csv and json hold every field of a variation (the README's "JSON output" lists
    them); piped, the table prints one variation per line.

    \b
    Examples:
      imagelingo history --errors
      imagelingo history --run 01m8q0 --code RATE_LIMIT
      imagelingo history --errors --to fr
      imagelingo history --since 2h --format tsv | cut -f1,3,9
    """
    from imagelingo_cli.cli.records import VARIATION_FIELDS, variation_record, write_records
    from imagelingo_cli.cli.wording import parse_codes, parse_languages, resolve_run
    from imagelingo_cli.store import queries

    chosen = output_format(output, json_output)
    if limit < 0:
        fail_setup("--limit must be 0 (all) or more")
    try:
        since_stamp = parse_since(since) if since is not None else None
    except ValueError as exc:
        fail_setup(str(exc))
    codes = parse_codes(code)
    languages = parse_languages(to)
    store = read_db(db)
    try:
        filters = queries.HistoryFilter(
            errors=errors,
            run_id=resolve_run(store, run),
            codes=codes,
            since=since_stamp,
            languages=languages,
            limit=limit or None,
        )
        rows = queries.history(store, filters)
        total = queries.count_history(store, filters) if limit and len(rows) == limit else len(rows)
    finally:
        store.close()
    if chosen != "table":
        write_records([variation_record(row) for row in rows], VARIATION_FIELDS, chosen)
        return
    out = text_output()
    if not rows:
        filtered = run or codes or since or languages
        if errors:
            out.line("No failed variations" + (" match." if filtered else "."))
        else:
            out.line("No variations match." if filtered else "No variations recorded yet.")
        return
    if errors:
        out.table(ERRORS_COLUMNS, _error_cells(rows), no_wrap=("ID", "When", "Var", "Code"))
    else:
        out.table(COLUMNS, _cells(rows), no_wrap=("ID", "When", "Var"))
    if total > len(rows):
        out.line(f"Showing the newest {len(rows)} of {total:,} (--limit 0 shows all).")
    if errors:
        _errors_footer(out, rows, total, run=filters.run_id, codes=codes)


COLUMNS = ("ID", "When", "Image", "Var", "Lang", "Status", "Story")
ERRORS_COLUMNS = ("ID", "When", "Image", "Var", "Lang", "Code", "Retries", "May help", "Message")


def _cells(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    from imagelingo_cli.cli.wording import local, story

    return [
        (
            row["short_id"],
            local(row["updated_at"], short=True),
            row["relative_path"],
            f"v{row['variation']}",
            row["target_language"],
            row["status"].capitalize(),
            story(row),
        )
        for row in rows
    ]


def _error_cells(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    from imagelingo_cli.cli.wording import local, one_line

    return [
        (
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
        for row in rows
    ]


def _errors_footer(
    out: TextOutput,
    rows: list[dict[str, Any]],
    total: int,
    *,
    run: str | None,
    codes: tuple[str, ...],
) -> None:
    from imagelingo_cli.cli.common import plural

    helpful = sum(1 for row in rows if row["is_retryable"])
    shown = "" if total == len(rows) else f" of the {len(rows)} shown"
    out.line(f"{plural(total, 'failed variation')}; {helpful}{shown} may pass on a retry.")
    scope = (f" --run {run}" if run else "") + "".join(f" --code {c}" for c in codes)
    out.line(f"Retry them: imagelingo retry-failed{scope}")
    if 0 < helpful < len(rows):
        out.line(f"Only those that may pass: imagelingo retry-failed --transient-only{scope}")
    transient = Counter(r["error_code"] for r in rows if r["is_retryable"] and r["error_code"])
    if not codes and len({r["error_code"] for r in rows}) > 1 and transient:
        commonest = transient.most_common(1)[0][0]
        out.line(f"One code at a time: imagelingo retry-failed --code {commonest}")
    out.line("Details: imagelingo show ID · stop offering one: imagelingo abandon ID")
