"""`imagelingo retry-failed`: retry failed variations, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import db_path, fail_setup, nothing_to_do, open_db, stderr
from imagelingo_cli.errors import SetupError


def retry_failed(
    ctx: typer.Context,
    generation_ids: list[str] | None = typer.Argument(
        None,
        metavar="ID...",
        help="Variations to retry (id or unique prefix); default: every failed one.",
    ),
    run: str | None = typer.Option(
        None, "--run", metavar="RUN", help="Only variations that failed in this run."
    ),
    code: list[str] | None = options.CODES,
    to: list[str] | None = options.LANGUAGES,
    transient_only: bool = typer.Option(
        False, "--transient-only", help="Only failures that may pass on a retry."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        metavar="MODEL",
        help="Retry with this model instead of the one each variation used.",
    ),
    concurrency: int | None = options.CONCURRENCY,
    max_retries: int | None = options.MAX_RETRIES,
    auto_retry: bool | None = options.AUTO_RETRY,
    auto_retry_on: list[str] | None = options.AUTO_RETRY_ON,
    max_wait: float | None = options.MAX_WAIT,
    timeout: float | None = options.TIMEOUT,
    rpm: float | None = options.RPM,
    base_url: str | None = options.BASE_URL,
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be sent; send nothing."),
    yes: bool = options.YES,
    db: Path | None = options.DB,
    json_output: bool = options.JSON_LINES,
    batch: bool = typer.Option(
        False, "--batch", help="Retry as a new Gemini Batch API job instead of one by one."
    ),
    no_wait: bool = options.NO_WAIT,
) -> None:
    """Retry failed variations with the parameters they were made with; never a completed one.

    The key and the base URL come from the present environment and flags first, then from
    what each variation recorded; the policy options work as for `process`.

    \b
    Examples:
      imagelingo retry-failed                      # every failed variation
      imagelingo retry-failed 01m8q0v2 01m8q0w7    # these two
      imagelingo retry-failed --code RATE_LIMIT --dry-run
      imagelingo retry-failed --to fr                # only the French ones
      imagelingo retry-failed --transient-only --model gemini-3-pro-image-preview
    """
    from imagelingo_cli.cli.batch import clock_from, report_outcome, reporter_for, run_batch
    from imagelingo_cli.cli.preview import confirm_large_run, paid_retries, show_retry_plan
    from imagelingo_cli.cli.wording import (
        parse_codes,
        parse_languages,
        resolve_generation,
        resolve_run,
    )
    from imagelingo_cli.gemini import api_key_from_env
    from imagelingo_cli.runner import Connection, RetryRequest, plan_retry, run_retry
    from imagelingo_cli.settings import resolve
    from imagelingo_cli.store import queries

    if no_wait and not batch:
        fail_setup("--no-wait goes with --batch")
    codes = parse_codes(code)
    languages = parse_languages(to)
    try:
        settings = resolve(
            {
                "model": model,
                "concurrency": concurrency,
                "rpm": rpm,
                **options.policy_flags(
                    max_retries=max_retries,
                    auto_retry=auto_retry,
                    auto_retry_on=auto_retry_on,
                    max_wait=max_wait,
                    timeout=timeout,
                ),
            }
        )
        policy = options.policy_from(settings)
        connection = Connection(
            api_key=api_key_from_env(), base_url=base_url, timeout=settings.timeout
        )
    except (SetupError, ValueError) as exc:
        fail_setup(str(exc))
    if not db_path(db)[0].expanduser().exists():
        nothing_to_do("Nothing to retry: no failed variations.", json_output)
        raise typer.Exit(0)
    store = open_db(db)
    try:
        store.recover_dead_runs()
        ids = [resolve_generation(store, given) for given in dict.fromkeys(generation_ids or [])]
        rows = store.select_for_retry(
            ids=ids,
            run_id=resolve_run(store, run),
            codes=codes,
            languages=languages,
            transient_only=transient_only,
        )
        _say_skipped(store, ids, rows)
        if ids and not rows:
            fail_setup(
                "none of the given ids is a failed variation (see imagelingo history --errors)"
            )
        if not rows:
            nothing_to_do("Nothing to retry: no failed variations.", json_output)
            raise typer.Exit(0)
        if dry_run:
            short = queries.short_ids(store, [str(row["id"]) for row in rows])
            asked = settings.model if model else None
            show_retry_plan(rows, short, asked, batch=batch, json_output=json_output)
            raise typer.Exit(0)
        if not yes:
            confirm_large_run(
                paid_retries(rows, settings.model if model else None),
                settings.confirm_above,
                batch=batch,
            )
        try:
            request = RetryRequest(
                rows,
                policy=policy,
                concurrency=settings.concurrency,
                connection=connection,
                model=settings.model if model is not None else None,
                rpm=settings.rpm,
                seed=store.count_runs(),  # a later retry meets new weather in the simulator
            )
            request.batch_options()
            jobs = plan_retry(request)
        except SetupError as exc:
            fail_setup(str(exc))
        if batch:
            from imagelingo_cli.cli.batch_mode_cmd import submit

            submit(ctx, request, jobs, store, settings, wait=not no_wait, json_output=json_output)
        clock = clock_from(ctx)
        with reporter_for(json_output, clock) as reporter:
            summary = run_batch(
                lambda control: run_retry(
                    request, jobs, store, clock=clock, emit=reporter, control=control
                ),
                reporter=reporter,
            )
    finally:
        store.close()
    report_outcome(summary, reporter, json_output)


def _say_skipped(store: Any, ids: list[str], rows: list[dict[str, Any]]) -> None:
    """Name each given id that is not retried, and why."""
    from imagelingo_cli.store import queries

    chosen = {row["id"] for row in rows}
    for generation_id in ids:
        if generation_id in chosen:
            continue
        status = queries.variation(store, generation_id)["status"]
        short = queries.short_ids(store, [generation_id])[generation_id]
        stderr().print(
            f"{short}: not retried, it is {status}; only failed or interrupted ones are."
        )
