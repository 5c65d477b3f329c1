"""`imagelingo process`: translate every image found, N variations each."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagelingo_cli.cli import options
from imagelingo_cli.cli.common import fail_setup, nothing_to_do, open_db, skipped_files, stderr
from imagelingo_cli.errors import SetupError

if TYPE_CHECKING:
    from imagelingo_cli.runner import ProcessPlan, ProcessRequest
    from imagelingo_cli.settings import Settings
    from imagelingo_cli.store import Store

PROFILES = ("ok", "flaky", "rate-limited", "outage")


def process(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH...", help="Image files or folders (searched recursively)."
    ),
    variations: int = typer.Option(
        1, "--variations", "-n", metavar="N", help="Variations per image."
    ),
    to: list[str] | None = typer.Option(
        None,
        "--to",
        metavar="LANG",
        help="Target languages: codes (es, pt-BR) or names, comma-separated or repeated.",
    ),
    model: str | None = options.MODEL,
    concurrency: int | None = options.CONCURRENCY,
    out: Path | None = typer.Option(
        None, "--out", "-o", metavar="DIR", help="Folder for the translated images."
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
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would be sent and skipped, and the cost; send nothing."
    ),
    yes: bool = options.YES,
    db: Path | None = options.DB,
    json_output: bool = options.JSON_LINES,
    batch: bool = typer.Option(
        False, "--batch", help="Send through Gemini's Batch API: half the price, within 24 h."
    ),
    no_wait: bool = options.NO_WAIT,
) -> None:
    """Translate the text in every image found, N variations each, retrying what is transient.

    Folders are searched recursively for PNG, JPEG, WebP and HEIC/HEIF images. Each output is
    written to DIR/<folder>/<name>.<language>.v<N>.<ext>. A variation already done for the
    same image content, language and model is skipped; --force translates it again.

    \b
    Examples:
      imagelingo process ./photos --to es -n 2
      imagelingo process ./photos --to es,fr,pt-BR          # three languages, one run
      imagelingo process sample_images --simulate flaky    # no API key needed
      imagelingo process ./photos --to fr --dry-run        # what it would send and cost
      imagelingo process ./photos --to fr --json > events.jsonl
      imagelingo process ./big-folder --batch --no-wait     # half price, collect later

    With no image found it says so and exits 0, recording nothing.
    """
    if no_wait and not batch:
        fail_setup("--no-wait goes with --batch")
    with starting(json_output):  # the imports below take a moment: say so at once
        from imagelingo_cli.gemini import api_key_from_env
        from imagelingo_cli.languages import resolve_languages
        from imagelingo_cli.runner import Connection, ProcessRequest, plan_process
        from imagelingo_cli.settings import resolve

        if simulate is not None and simulate not in PROFILES:
            fail_setup(f"unknown simulator profile {simulate!r} (valid: {', '.join(PROFILES)})")
        try:
            settings = resolve(
                {
                    "language": ",".join(to) if to else None,
                    "model": model,
                    "concurrency": concurrency,
                    "out": str(out) if out is not None else None,
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
            request = ProcessRequest(
                paths=paths,
                variations=variations,
                languages=resolve_languages(settings.language),
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
                rpm=settings.rpm,
            )
            request.batch_options()  # the batch's own checks, before anything is created
        except (SetupError, ValueError) as exc:
            fail_setup(str(exc))
        store = open_db(db)  # before plan_process creates the output folder:
        try:  # a refused database must not leave an empty output folder behind
            plan = plan_process(request, store)
        except SetupError as exc:
            store.close()
            fail_setup(str(exc))
    _run(
        ctx,
        request,
        store,
        plan,
        settings,
        dry_run=dry_run,
        yes=yes,
        batch=batch,
        wait=not no_wait,
        json_output=json_output,
    )


def _run(
    ctx: typer.Context,
    request: ProcessRequest,
    store: Store,
    plan: ProcessPlan,
    settings: Settings,
    *,
    dry_run: bool,
    yes: bool,
    batch: bool,
    wait: bool,
    json_output: bool,
) -> None:
    from imagelingo_cli.cli.batch import clock_from, report_outcome, reporter_for, run_batch
    from imagelingo_cli.cli.preview import confirm_large_run, show_process_plan
    from imagelingo_cli.runner import preview_process, run_process

    try:
        if not plan.jobs:
            _no_images(list(request.paths), plan.files_skipped, json_output)
            return
        if dry_run:
            show_process_plan(
                preview_process(request, plan, store),
                simulated=request.connection.simulate is not None,
                batch=batch,
                json_output=json_output,
            )
            return
        if not yes and request.connection.simulate is None:
            wanted = Counter({request.model: plan.variations})
            confirm_large_run(wanted, settings.confirm_above, batch=batch)
        if batch:
            from imagelingo_cli.cli.batch_mode_cmd import submit

            submit(ctx, request, plan.jobs, store, settings, wait=wait, json_output=json_output)
        clock = clock_from(ctx)
        with reporter_for(json_output, clock) as reporter:
            summary = run_batch(
                lambda control: run_process(
                    request, plan, store, clock=clock, emit=reporter, control=control
                ),
                reporter=reporter,
            )
    finally:
        store.close()
    report_outcome(summary, reporter, json_output)


@contextmanager
def starting(json_output: bool) -> Iterator[None]:
    """On a terminal, say at once that work has begun (finding images can take a while)."""
    if json_output or not sys.stderr.isatty():
        yield
        return

    with stderr().status("Finding images…", spinner="dots"):
        yield


def _no_images(paths: list[Path], files_skipped: dict[str, int], json_output: bool) -> None:
    """No image found: say where was looked and what was found instead; no run is recorded."""
    where = ", ".join(str(p) for p in paths)
    left_out = skipped_files(files_skipped)
    nothing_to_do(
        f"No images found under {where}" + (f" (skipped: {left_out})." if left_out else "."),
        json_output,
        files_skipped=files_skipped,
    )
