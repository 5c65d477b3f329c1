"""`imagelingo show`: one variation's transaction details, every attempt in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import read_db
from imagelingo_cli.cli.text_output import TextOutput, text_output


def show(
    generation_id: str = typer.Argument(
        ..., metavar="ID", help="Variation id, or a unique prefix of it (history's ID column)."
    ),
    db: Path | None = options.DB,
    json_output: bool = typer.Option(
        False, "--json", help="One JSON object: the variation, with an attempts array."
    ),
) -> None:
    """One variation's details: each attempt, when, how long, outcome, code, message, the wait.

    \b
    Examples:
      imagelingo show 01m8q0v2
      imagelingo show 01m8q0v2 --json | jq '.attempts[] | {outcome, error_code, waited_s}'
    """

    from imagelingo_cli.cli.wording import resolve_generation
    from imagelingo_cli.store import queries

    store = read_db(db)
    try:
        found = resolve_generation(store, generation_id)
        row = queries.variation(store, found)
        tries = queries.attempts(store, found)
    finally:
        store.close()
    if json_output:
        from imagelingo_cli.cli.records import attempt_record, variation_record

        record = variation_record(_with_final_round(row, tries))
        typer.echo(json.dumps({**record, "attempts": [attempt_record(a) for a in tries]}, indent=2))
        return
    out = text_output()
    _details(out, _with_final_round(row, tries))
    _attempts(out, tries)
    if row["status"] in ("failed", "interrupted"):
        out.line("")
        out.line(f"imagelingo retry-failed {row['id']}", lead="Retry it:          ")
        out.line(f"imagelingo abandon {row['id']}", lead="Stop offering it:  ")


def _with_final_round(row: dict[str, Any], tries: list[dict[str, Any]]) -> dict[str, Any]:
    if not tries:
        return row
    last = tries[-1]
    return {
        **row,
        "rounds": last["round"],
        "last_position": last["position"],
        "round_max": last["round_max"],
    }


def _details(out: TextOutput, row: dict[str, Any]) -> None:
    from imagelingo_cli.cli.wording import label, local, story

    fields: list[tuple[str, str]] = [
        ("Variation", row["id"]),
        ("Image", row["source_path"]),
        (
            "Request",
            f"v{row['variation']} · {row['target_language']} · {row['model']} · {row['backend']}",
        ),
        ("Status", story(row)),
        ("Output", row["output_path"] or "—"),
        ("Credits", str(row["credits_charged"])),
        ("Run", f"{row['run_id']} ({row['run_command'] or '?'})"),
        ("Updated", f"{local(row['updated_at'])} (local time)"),
    ]
    if row["error_code"]:
        retryable = {1: "yes", 0: "no"}.get(row["is_retryable"], "unknown")
        fields += [
            (
                "Error",
                f"{row['error_code']} ({label(row['error_code'])}) · may pass on a retry: {retryable}",
            ),
            ("Message", row["error_message"] or ""),
            ("First error", local(row["first_error_at"])),
            ("Last retry", local(row["last_retry_at"])),
            ("Retries", str(row["retry_count"])),
        ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        out.line(str(value), lead=f"{name:<{width}}  ")


def _attempts(out: TextOutput, tries: list[dict[str, Any]]) -> None:
    from imagelingo_cli.cli.wording import attempt_line

    out.line("")
    if not tries:
        out.line("No attempts: this variation was never sent.")
        return
    out.line(f"Attempts ({len(tries)}, local time)", style="bold")
    for index, attempt in enumerate(tries):
        if attempt["position"] == 1 and attempt["round"] > 1:
            how = "manual retry" if attempt["trigger"] == "manual" else "a new run"
            out.line(
                f"  Round {attempt['round']} ({how}, {attempt['run_command'] or 'run'}"
                f" {attempt['run_id']})",
                style="dim",
            )
        following = tries[index + 1] if index + 1 < len(tries) else None
        followed = following is not None and following["round"] == attempt["round"]
        out.line(f"  #{attempt['attempt_number']} " + attempt_line(attempt, followed=followed))
        if attempt["error_message"]:
            out.line(f"      {attempt['error_message']}")
