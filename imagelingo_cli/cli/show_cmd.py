"""`imagelingo show`: one variation's transaction details, every attempt in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from imagelingo_cli.cli.common import read_db

if TYPE_CHECKING:
    from rich.console import Console


def show(
    generation_id: str = typer.Argument(
        ..., help="Variation id, or a unique prefix of it (history's ID column)."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="Database file (default: IMAGELINGO_DB or the user data folder)."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="One JSON object (the variation, with an attempts array)."
    ),
) -> None:
    """One variation's details: each attempt, when, how long, outcome, code, message, the wait."""
    from imagelingo_cli.cli.wording import resolve_generation, story
    from imagelingo_cli.store import queries

    store = read_db(db)
    try:
        found = resolve_generation(store, generation_id)
        row = queries.variation(store, found)
        tries = queries.attempts(store, found)
    finally:
        store.close()
    if json_output:
        row["is_retryable"] = None if row["is_retryable"] is None else bool(row["is_retryable"])
        row["story"] = story(_with_final_round(row, tries))
        typer.echo(json.dumps({**row, "attempts": tries}, indent=2))
        return
    from rich.console import Console  # not needed for JSON: imported when drawing

    console = Console(highlight=False)
    _details(console, _with_final_round(row, tries))
    _attempts(console, tries)
    if row["status"] in ("failed", "interrupted"):
        console.print(
            f"\nRetry it: imagelingo retry-failed {row['id']} · "
            f"stop offering it: imagelingo abandon {row['id']}"
        )


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


def _details(console: Console, row: dict[str, Any]) -> None:
    from rich.text import Text

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
        console.print(Text(f"{name:<{width}}  ", style="bold") + Text(str(value)))


def _attempts(console: Console, tries: list[dict[str, Any]]) -> None:
    from rich.text import Text

    from imagelingo_cli.cli.wording import attempt_line

    if not tries:
        console.print("\nNo attempts: this variation was never sent.")
        return
    console.print(Text(f"\nAttempts ({len(tries)}, local time)", style="bold"))
    for index, attempt in enumerate(tries):
        if attempt["position"] == 1 and attempt["round"] > 1:
            how = "manual retry" if attempt["trigger"] == "manual" else "a new run"
            console.print(
                Text(
                    f"  Round {attempt['round']} ({how}, {attempt['run_command'] or 'run'} {attempt['run_id']})",
                    style="dim",
                )
            )
        following = tries[index + 1] if index + 1 < len(tries) else None
        followed = following is not None and following["round"] == attempt["round"]
        console.print(
            Text(f"  #{attempt['attempt_number']} " + attempt_line(attempt, followed=followed))
        )
        if attempt["error_message"]:
            console.print(Text(f"      {attempt['error_message']}"))
