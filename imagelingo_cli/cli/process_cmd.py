"""`imagelingo process`: translate every image found, N variations each."""

from __future__ import annotations

from pathlib import Path

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import fail_setup, open_db
from imagelingo_cli.errors import SetupError

PROFILES = ("ok", "flaky", "rate-limited", "outage")


def process(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    variations: int = typer.Option(1, "--variations", "-n", help="Variations per image."),
    to: str | None = typer.Option(
        None, "--to", help="Target language: a code (es, pt-BR) or a name."
    ),
    model: str | None = options.MODEL,
    concurrency: int | None = options.CONCURRENCY,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for the translated images (default imagelingo-out)."
    ),
    max_retries: int | None = options.MAX_RETRIES,
    auto_retry: bool | None = options.AUTO_RETRY,
    auto_retry_on: list[str] | None = options.AUTO_RETRY_ON,
    max_wait: float | None = options.MAX_WAIT,
    timeout: float | None = options.TIMEOUT,
    rpm: float | None = options.RPM,
    force: bool = typer.Option(
        False, "--force", help="Translate again even what is already completed."
    ),
    simulate: str | None = typer.Option(
        None,
        "--simulate",
        metavar="PROFILE",
        help="Use the built-in simulator (ok, flaky, rate-limited, outage); no key needed.",
    ),
    base_url: str | None = options.BASE_URL,
    db: Path | None = options.DB,
    json_output: bool = typer.Option(False, "--json", help="JSON lines on stdout, nothing else."),
    batch: bool = typer.Option(
        False, "--batch", help="Send through Gemini's Batch API: half the price, within 24 h."
    ),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="With --batch: return once submitted (imagelingo batch collect)."
    ),
) -> None:
    """Translate the text in every image found, N variations each, retrying what is transient."""
    from imagelingo_cli.cli.batch import clock_from, report_outcome, reporter_for, run_batch
    from imagelingo_cli.gemini import api_key_from_env
    from imagelingo_cli.languages import resolve_language
    from imagelingo_cli.runner import Connection, ProcessRequest, plan_process, run_process
    from imagelingo_cli.settings import resolve

    if no_wait and not batch:
        fail_setup("--no-wait goes with --batch")
    if simulate is not None and simulate not in PROFILES:
        fail_setup(f"unknown simulator profile {simulate!r} (valid: {', '.join(PROFILES)})")
    try:
        settings = resolve(
            {
                "language": to,
                "model": model,
                "concurrency": concurrency,
                "out": str(out) if out is not None else None,
                **options.policy_flags(
                    max_retries=max_retries,
                    auto_retry=auto_retry,
                    auto_retry_on=auto_retry_on,
                    max_wait=max_wait,
                    timeout=timeout,
                ),
            }
        )
        request = ProcessRequest(
            paths=paths,
            variations=variations,
            language=resolve_language(settings.language),
            model=settings.model,
            out_dir=Path(settings.out),
            policy=options.policy_from(settings),
            concurrency=settings.concurrency,
            connection=Connection(
                api_key=api_key_from_env(),
                simulate=simulate,
                base_url=None if simulate else base_url,
                timeout=settings.timeout,
            ),
            force=force,
            rpm=rpm,
        )
        request.batch_options()  # the batch's own checks, before anything is created
    except (SetupError, ValueError) as exc:
        fail_setup(str(exc))
    store = open_db(db)  # before plan_process creates the output folder:
    try:  # a refused database must not leave an empty output folder behind
        jobs = plan_process(request, store)
    except SetupError as exc:
        store.close()
        fail_setup(str(exc))
    if batch:
        from imagelingo_cli.cli.batch_mode_cmd import submit

        submit(ctx, request, jobs, store, settings, wait=not no_wait, json_output=json_output)
    clock = clock_from(ctx)
    try:
        with reporter_for(json_output, clock) as reporter:
            summary = run_batch(
                lambda control: run_process(
                    request, jobs, store, clock=clock, emit=reporter, control=control
                ),
                reporter=reporter,
            )
    finally:
        store.close()
    report_outcome(summary, reporter, json_output)
