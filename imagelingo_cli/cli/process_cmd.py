"""`imagelingo process`: translate every image found, N variations each."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagelingo_cli.cli.common import fail_setup, open_db
from imagelingo_cli.errors import ErrorCode, SetupError
from imagelingo_cli.settings import resolve

if TYPE_CHECKING:
    pass

PROFILES = ("ok", "flaky", "rate-limited", "outage")


def process(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    variations: int = typer.Option(1, "--variations", "-n", help="Variations per image."),
    to: str | None = typer.Option(
        None, "--to", help="Target language: a code (es, pt-BR) or a name."
    ),
    model: str | None = typer.Option(None, "--model", help="Gemini image model."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", help="Requests in flight at most."
    ),
    out: Path = typer.Option(
        Path("imagelingo-out"), "--out", "-o", help="Folder for the translated images."
    ),
    max_retries: int = typer.Option(
        2, "--max-retries", help="Automatic retries per variation (transient errors)."
    ),
    auto_retry: bool | None = typer.Option(
        None, "--auto-retry/--no-auto-retry", help="Retry transient errors automatically."
    ),
    auto_retry_on: list[str] | None = typer.Option(
        None,
        "--auto-retry-on",
        help="Error code to retry automatically (repeatable; default RATE_LIMIT, TIMEOUT).",
    ),
    max_wait: float = typer.Option(
        60.0,
        "--max-wait",
        help="Longest server-requested wait (s) before giving up as QUOTA_EXHAUSTED.",
    ),
    timeout: float = typer.Option(120.0, "--timeout", help="Deadline for one attempt, in seconds."),
    rpm: float | None = typer.Option(
        None,
        "--rpm",
        help="Send at most this many requests per minute (default: settings, else learned).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Translate again even what is already completed."
    ),
    simulate: str | None = typer.Option(
        None,
        "--simulate",
        metavar="PROFILE",
        help="Use the built-in simulator (ok, flaky, rate-limited, outage); no key needed.",
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", envvar="GOOGLE_GEMINI_BASE_URL", help="Gemini API base URL."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="Database file (default: IMAGELINGO_DB or the user data folder)."
    ),
    json_output: bool = typer.Option(False, "--json", help="JSON lines on stdout, nothing else."),
) -> None:
    """Translate the text in every image found, N variations each, retrying what is transient."""
    from imagelingo_cli.cli.batch import clock_from, report_outcome, reporter_for, run_batch
    from imagelingo_cli.gemini import api_key_from_env
    from imagelingo_cli.languages import resolve_language
    from imagelingo_cli.retry import RetryPolicy
    from imagelingo_cli.runner import Connection, ProcessRequest, plan_process, run_process

    try:
        settings = resolve(
            {
                "language": to,
                "model": model,
                "concurrency": concurrency,
                "auto_retry": auto_retry,
                "auto_retry_codes": auto_retry_on or None,
                "rpm": rpm,
            }
        )
        language = resolve_language(settings.language)
    except (SetupError, ValueError) as exc:
        fail_setup(str(exc))
    if variations < 1:
        fail_setup("--variations must be at least 1")
    if max_retries < 0 or max_retries > 10:
        fail_setup("--max-retries must be between 0 and 10")
    if timeout <= 0 or max_wait < 0:
        fail_setup("--timeout must be positive and --max-wait not negative")
    if simulate is not None and simulate not in PROFILES:
        fail_setup(f"unknown simulator profile {simulate!r} (valid: {', '.join(PROFILES)})")
    api_key = api_key_from_env()
    if simulate is None and not api_key:
        fail_setup(
            "no API key. Set GEMINI_API_KEY (export GEMINI_API_KEY=your-key; get one at "
            "https://aistudio.google.com/apikey), or try the built-in simulator: "
            "imagelingo process PATH --simulate flaky"
        )
    request = ProcessRequest(
        paths=paths,
        variations=variations,
        language=language,
        model=settings.model,
        out_dir=out,
        policy=RetryPolicy(
            max_retries=max_retries,
            auto_retry=settings.auto_retry,
            auto_retry_codes=frozenset(ErrorCode(c) for c in settings.auto_retry_codes),
            max_wait=max_wait,
        ),
        concurrency=settings.concurrency,
        connection=Connection(
            api_key=api_key,
            simulate=simulate,
            base_url=None if simulate else base_url,
            timeout=timeout,
        ),
        force=force,
        rpm=settings.rpm,
    )
    store = open_db(db, writable=True)  # before plan_process creates the output folder:
    try:  # a refused database must not leave an empty output folder behind
        jobs = plan_process(request)
    except SetupError as exc:
        store.close()
        fail_setup(str(exc))
    clock = clock_from(ctx)
    try:
        with reporter_for(json_output, clock) as reporter:
            summary = run_batch(
                lambda control: run_process(
                    request, jobs, store, clock=clock, emit=reporter, control=control
                ),
                emit=reporter,
            )
    finally:
        store.close()
    report_outcome(summary, json_output)
