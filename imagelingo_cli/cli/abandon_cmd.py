"""`imagelingo abandon`: stop offering failed variations for retry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagelingo_cli.cli.common import EXIT_FAILED, fail_setup, open_db, stderr

if TYPE_CHECKING:
    pass


def abandon(
    generation_ids: list[str] | None = typer.Argument(
        None, help="Variation ids (or unique prefixes)."
    ),
    run: str | None = typer.Option(
        None, "--run", help="Every failed or interrupted variation of this run."
    ),
    code: list[str] | None = typer.Option(
        None, "--code", help="Only those whose error is this code (repeatable)."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="Database file (default: IMAGELINGO_DB or the user data folder)."
    ),
) -> None:
    """Stop offering failed or interrupted variations for retry (history: Abandoned).

    A completed or running variation is refused (exit 1). `process --force` translates an
    abandoned variation again.
    """
    from rich.console import Console

    from imagelingo_cli.cli.wording import parse_codes, plural, resolve_generation, resolve_run
    from imagelingo_cli.store import queries

    ids = generation_ids or []
    codes = parse_codes(code)
    if ids and (run or codes):
        fail_setup("give variation ids, or --run/--code, not both")
    if not ids and not run and not codes:
        fail_setup(
            "nothing to abandon: give variation ids (imagelingo history --errors lists them), "
            "or --run ID and/or --code CODE"
        )
    console = Console(highlight=False)
    store = open_db(db)
    try:
        if not ids:
            count = queries.abandon_matching(store, run_id=resolve_run(store, run), codes=codes)
            console.print(f"Abandoned {plural(count, 'variation')}.")
            return
        refused = 0
        wanted: list[str] = []
        for given in dict.fromkeys(ids):
            found = resolve_generation(store, given)
            status = queries.variation(store, found)["status"]
            if status in queries.ABANDONABLE:
                wanted.append(found)
            elif status == "abandoned":
                stderr().print(f"{found[:10]}: already abandoned.")
            else:
                why = "it is completed" if status == "completed" else f"it is {status} right now"
                stderr().print(
                    f"{found[:10]}: not abandoned, {why}; only failed or interrupted ones are."
                )
                refused += 1
        count = queries.abandon(store, wanted)
    finally:
        store.close()
    console.print(f"Abandoned {plural(count, 'variation')}.")
    if refused:
        raise typer.Exit(EXIT_FAILED)
