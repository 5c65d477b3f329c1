"""`imagelingo abandon`: stop offering failed variations for retry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import EXIT_FAILED, fail_setup, open_db, stderr


def abandon(
    generation_ids: list[str] | None = typer.Argument(
        None, metavar="ID...", help="Variation ids (or unique prefixes)."
    ),
    run: str | None = typer.Option(
        None, "--run", metavar="RUN", help="Every failed or interrupted variation of this run."
    ),
    code: list[str] | None = typer.Option(
        None,
        "--code",
        metavar="CODE",
        help="Only those whose error is this code (repeatable).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List what --run/--code would abandon; change nothing."
    ),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Abandon what --run/--code select without asking."
    ),
    db: Path | None = options.DB,
) -> None:
    """Stop offering failed or interrupted variations for retry (history: Abandoned).

    A completed or running variation is refused (exit 1). A selection by --run or --code is
    listed first and asked about on a terminal; elsewhere it needs --yes. `process --force`
    translates an abandoned variation again.

    \b
    Examples:
      imagelingo abandon 01m8q0v2
      imagelingo abandon --run 01m8q0 --code SAFETY_BLOCKED --dry-run
      imagelingo abandon --code NO_IMAGE --yes
    """
    from rich.console import Console

    from imagelingo_cli.cli.common import plural
    from imagelingo_cli.cli.wording import parse_codes, resolve_generation, resolve_run
    from imagelingo_cli.states import GenerationStatus
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
    store = open_db(db, create=False)
    try:
        if not ids:
            selected = queries.abandonable(store, run_id=resolve_run(store, run), codes=codes)
            if not _confirmed(console, store, selected, dry_run=dry_run, yes=yes):
                return
            count = queries.abandon(store, [str(row["id"]) for row in selected])
            console.print(f"Abandoned {plural(count, 'variation')}.")
            return
        refused = 0
        wanted: list[str] = []
        for given in dict.fromkeys(ids):
            found = resolve_generation(store, given)
            status = GenerationStatus(queries.variation(store, found)["status"])
            short = queries.short_ids(store, [found])[found]
            if status in queries.ABANDONABLE:
                wanted.append(found)
            elif status is GenerationStatus.ABANDONED:
                stderr().print(f"{short}: already abandoned.")
            else:
                why = (
                    "it is completed"
                    if status is GenerationStatus.COMPLETED
                    else (f"it is {status} right now")
                )
                stderr().print(
                    f"{short}: not abandoned, {why}; only failed or interrupted ones are."
                )
                refused += 1
        count = queries.abandon(store, wanted)
    finally:
        store.close()
    console.print(f"Abandoned {plural(count, 'variation')}.")
    if refused:
        raise typer.Exit(EXIT_FAILED)


def _confirmed(
    console: Any, store: Any, selected: list[dict[str, Any]], *, dry_run: bool, yes: bool
) -> bool:
    """List a --run/--code selection; True when it is to be abandoned now."""
    from imagelingo_cli.cli.common import plural
    from imagelingo_cli.store import queries

    if not selected:
        console.print("Nothing to abandon: no failed or interrupted variation matches.")
        return False
    short = queries.short_ids(store, [str(row["id"]) for row in selected])
    verb = "Would abandon" if dry_run or not yes else "Abandoning"
    console.print(f"{verb} {plural(len(selected), 'variation')}:")
    for row in selected:
        console.print(
            f"  {short[str(row['id'])]}  {row['relative_path']} v{row['variation']} "
            f"{row['target_language']}  {row['error_code'] or row['status']}",
            markup=False,
        )
    if dry_run or yes:
        return not dry_run
    if not sys.stdin.isatty():
        fail_setup("abandoning a selection needs --yes when nobody is at a terminal to confirm")
    return bool(typer.confirm("Abandon them?", default=False))
