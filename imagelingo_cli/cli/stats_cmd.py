"""`imagelingo stats`: error analytics, read from the tallies the history keeps (counted from
the variations in scope for --since and --to)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import fail_setup, output_format, read_db, stdout_console
from imagelingo_cli.cli.when import HELP as SINCE_HELP
from imagelingo_cli.cli.when import parse_since

if TYPE_CHECKING:
    from rich.table import Table


BY_CODE_FIELDS = (
    "code",
    "failed_attempts",
    "variations",
    "recovered_auto",
    "recovered_manual",
    "still_failed",
    "abandoned",
    "unfinished",
    "never_sent",
)
CODE_COLUMNS = (
    ("failed_attempts", "Failed\nattempts"),
    ("variations", "Varia-\ntions"),
    ("recovered_auto", "Auto-\nfixed"),
    ("recovered_manual", "Manual-\nfixed"),
    ("still_failed", "Still\nfailed"),
    ("abandoned", "Aban-\ndoned"),
    ("unfinished", "Unfin-\nished"),
    ("never_sent", "Not\nsent"),
)
LEGEND = (
    "Variations: hit by the code (sent or not). Auto-fixed: a later attempt of the same round"
    " succeeded; manual-fixed: a later round did. Unfinished: interrupted or running now."
    " Not sent: failed with it before any request."
)


def stats(
    run: str | None = typer.Option(
        None, "--run", metavar="RUN", help="Only attempts made in this run (id or unique prefix)."
    ),
    since: str | None = typer.Option(None, "--since", metavar="WHEN", help=SINCE_HELP),
    to: list[str] | None = options.LANGUAGES,
    db: Path | None = options.DB,
    output: str = typer.Option(
        "table",
        "--format",
        metavar="FORMAT",
        help="table; tsv or csv (one line per error code); json (everything).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    """Error analytics: failures by code and how they ended, success rates, retry cost.

    \b
    Examples:
      imagelingo stats
      imagelingo stats --run 01m8q0 --json
      imagelingo stats --to fr
      imagelingo stats --since 7d --format csv > failures-by-code.csv

    Scope: the attempts made in --run and/or started since --since (all by default), and the
    variations they touched, plus those the run holds (or updated since) that were never sent;
    with --to, only the variations in those languages. With several languages, a line each.

    \b
    Per code, a variation hit by it counts once, by its first failure with it:
      auto-fixed     a later attempt of the same round succeeded
      manual-fixed   a later round succeeded (retry-failed, or a new run)
      still failed, abandoned, unfinished (interrupted or running): its status now
      not sent       failed with the code before any request (also in the above)
    First-try success rate: variations whose first attempt in scope succeeded, over the
    variations with an attempt in scope. Final success rate: of those, the ones completed
    now. Attempts per success: attempts in scope over those completed. Extra calls on
    retries: attempts in scope minus variations attempted. Credits: variations whose first
    success (the one charged) is in scope.
    """
    from imagelingo_cli.cli.records import write_records
    from imagelingo_cli.cli.wording import parse_languages, resolve_run
    from imagelingo_cli.pricing import spend
    from imagelingo_cli.store import queries

    try:
        since_stamp = parse_since(since) if since is not None else None
    except ValueError as exc:
        fail_setup(str(exc))
    languages = parse_languages(to)
    store = read_db(db)
    try:
        run_id = resolve_run(store, run)
        report = queries.stats(store, run_id=run_id, since=since_stamp, languages=languages)
        usage = queries.usage_by_model(store, run_id=run_id, since=since_stamp, languages=languages)
        usd, unpriced = spend(usage)
        report["estimated_spend_usd"] = round(usd, 4)
        report["unpriced_models"] = unpriced
    finally:
        store.close()
    chosen = output_format(output, json_output)
    if chosen == "json":
        typer.echo(json.dumps(report, indent=2))
        return
    if chosen != "table":
        write_records(report["by_code"], BY_CODE_FIELDS, chosen)
        return
    console = stdout_console()
    if not report["variations"]["variations"]:
        console.print(
            "No variations recorded yet." if not (run or since or to) else "Nothing in this scope."
        )
        return
    for line in _summary(report):
        console.print(line)
    if len(report["by_language"]) > 1:
        console.print(_languages_table(report["by_language"]))
    if report["by_code"]:
        console.print(_codes_table(report["by_code"]))
        console.print(LEGEND, style="dim")
    else:
        console.print("No failed attempts.")


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


def _summary(report: dict[str, Any]) -> list[str]:
    v, a = report["variations"], report["attempts"]
    lines = [
        f"Variations: {v['variations']} · completed {v['completed']} · failed {v['failed']}"
        f" · abandoned {v['abandoned']} · interrupted {v['interrupted']}"
        + (f" · in progress {v['in_progress']}" if v["in_progress"] else "")
        + (f" ({v['never_sent']} never sent)" if v["never_sent"] else ""),
        f"Attempts: {a['total']} · succeeded {a['succeeded']} · failed {a['failed']}"
        f" · interrupted {a['interrupted']}"
        + (f" · in flight {a['in_flight']}" if a["in_flight"] else ""),
        f"Success: first try {_percent(report['first_try_success_rate'])}"
        f" · final {_percent(report['final_success_rate'])} (of {v['attempted']} variations sent)",
        f"Cost: {report['attempts_per_success'] or '—'} attempts per success"
        f" · {report['retry_calls']} extra calls on retries"
        f" · {report['credits_charged']} credits charged · {report['total_tokens']:,} tokens",
        f"Spend: about ${report['estimated_spend_usd']:,.2f} at list price (requests to Gemini;"
        " the simulator costs nothing)"
        + (
            f"; no price known for {', '.join(report['unpriced_models'])}"
            if report["unpriced_models"]
            else ""
        ),
    ]
    return lines


def _languages_table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="By language", box=None, header_style="bold", pad_edge=False)
    table.add_column("Language", no_wrap=True)
    for heading in ("Variations", "Completed", "Failed", "Abandoned", "Interrupted", "Unfinished"):
        table.add_column(heading, justify="right")
    for row in rows:
        counts = ("variations", "completed", "failed", "abandoned", "interrupted", "in_progress")
        table.add_row(row["language"], *(str(row[name]) for name in counts))
    return table


def _codes_table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="Failures by error code", box=None, header_style="bold", pad_edge=False)
    table.add_column("Code", no_wrap=True)
    for _, heading in CODE_COLUMNS:
        table.add_column(heading, justify="right")
    for row in rows:
        table.add_row(
            row["code"],
            *(str(row[key]) for key, _ in CODE_COLUMNS),
        )
    return table
