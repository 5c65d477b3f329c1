"""`imagelingo retry-failed`: retry failed variations, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagelingo_cli.cli.common import fail_setup, open_db
from imagelingo_cli.errors import ErrorCode, SetupError
from imagelingo_cli.settings import resolve

if TYPE_CHECKING:
    pass


def retry_failed(
    ctx: typer.Context,
    generation_ids: list[str] | None = typer.Argument(
        None, help="Variations to retry (id or unique prefix); default: every failed one."
    ),
    run: str | None = typer.Option(None, "--run", help="Only variations that failed in this run."),
    code: list[str] | None = typer.Option(
        None, "--code", help="Only this error code (repeatable)."
    ),
    transient_only: bool = typer.Option(
        False, "--transient-only", help="Only failures that may pass on a retry."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", help="Requests in flight at most."
    ),
    max_retries: int = typer.Option(
        2, "--max-retries", help="Automatic retries within this round."
    ),
    timeout: float = typer.Option(120.0, "--timeout", help="Deadline for one attempt, in seconds."),
    rpm: float | None = typer.Option(
        None,
        "--rpm",
        help="Send at most this many requests per minute (default: settings, else learned).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be sent; send nothing."),
    db: Path | None = typer.Option(None, "--db", help="Database file."),
    json_output: bool = typer.Option(False, "--json", help="JSON lines on stdout, nothing else."),
) -> None:
    """Retry failed variations with the parameters they were made with; never a completed one."""
    from imagelingo_cli.cli.batch import clock_from, report_outcome, reporter_for, run_batch
    from imagelingo_cli.gemini import api_key_from_env
    from imagelingo_cli.retry import RetryPolicy
    from imagelingo_cli.runner import run_retry_failed

    codes = [c.upper() for c in code or []]
    unknown = [c for c in codes if c not in ErrorCode.__members__]
    if unknown:
        fail_setup(f"unknown error code {unknown[0]!r} (valid: {', '.join(ErrorCode.__members__)})")
    try:
        settings = resolve({"concurrency": concurrency, "rpm": rpm})
    except SetupError as exc:
        fail_setup(str(exc))
    store = open_db(db, writable=True)
    try:
        store.recover_dead_runs()
        rows = store.select_for_retry(
            ids=generation_ids or [], run_id=run, codes=codes, transient_only=transient_only
        )
        if generation_ids and not rows:
            fail_setup(
                "none of the given ids is a failed variation (see imagelingo history --errors)"
            )
        if not rows or dry_run:
            _list(rows, dry_run=dry_run, json_output=json_output)
            raise typer.Exit(0)
        api_key = api_key_from_env()
        if not api_key and any(not str(r["backend"]).startswith("simulator:") for r in rows):
            fail_setup(
                "no API key: these variations were sent to Gemini. Set GEMINI_API_KEY "
                "(export GEMINI_API_KEY=your-key) and run imagelingo retry-failed again."
            )
        policy = RetryPolicy(
            max_retries=max_retries,
            auto_retry=settings.auto_retry,
            auto_retry_codes=frozenset(ErrorCode(c) for c in settings.auto_retry_codes),
        )
        clock = clock_from(ctx)
        with reporter_for(json_output, clock) as reporter:
            summary = run_batch(
                lambda control: run_retry_failed(
                    rows,
                    store,
                    policy=policy,
                    concurrency=settings.concurrency,
                    api_key=api_key,
                    timeout=timeout,
                    clock=clock,
                    emit=reporter,
                    control=control,
                    rpm=settings.rpm,
                ),
                emit=reporter,
            )
    finally:
        store.close()
    report_outcome(summary, json_output)


def _list(rows: list[dict[str, object]], *, dry_run: bool, json_output: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    if json_output:
        keys = (
            "id",
            "source_path",
            "variation",
            "target_language",
            "model",
            "backend",
            "error_code",
        )
        payload = {"dry_run": dry_run, "would_send": [{k: r[k] for k in keys} for r in rows]}
        typer.echo(json.dumps(payload))
        return
    console = Console(highlight=False)
    if not rows:
        console.print("Nothing to retry: no failed variations.")
        return
    table = Table(
        title=f"Would retry {len(rows)} variation{'s' * (len(rows) != 1)} (dry run, nothing sent)"
    )
    for column in ("ID", "Image", "Var", "Lang", "Model", "Last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["id"])[:10],
            Path(str(row["source_path"])).name,
            f"v{row['variation']}",
            str(row["target_language"]),
            str(row["model"]),
            str(row["error_code"] or row["status"]),
        )
    console.print(table)
