"""Options that `process` and `retry-failed` share, written once: how a round of attempts
behaves and where requests go. Their defaults come from the settings (`settings.resolve`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from imagelingo_cli.retry import RetryPolicy
    from imagelingo_cli.settings import Settings

MODEL = typer.Option(None, "--model", help="Gemini image model.")
CONCURRENCY = typer.Option(None, "--concurrency", "-c", help="Requests in flight at most.")
MAX_RETRIES = typer.Option(
    None, "--max-retries", help="Automatic retries per variation (transient errors; default 2)."
)
AUTO_RETRY = typer.Option(
    None, "--auto-retry/--no-auto-retry", help="Retry transient errors automatically."
)
AUTO_RETRY_ON = typer.Option(
    None,
    "--auto-retry-on",
    help="Error code to retry automatically (repeatable; default RATE_LIMIT, TIMEOUT).",
)
MAX_WAIT = typer.Option(
    None,
    "--max-wait",
    help="Longest server-requested wait (s; default 60) before giving up as QUOTA_EXHAUSTED.",
)
TIMEOUT = typer.Option(
    None, "--timeout", help="Deadline for one attempt, in seconds (default 120)."
)
RPM = typer.Option(None, "--rpm", help="Send at most this many requests per minute.")
BASE_URL = typer.Option(
    None, "--base-url", envvar="GOOGLE_GEMINI_BASE_URL", help="Gemini API base URL."
)
DB = typer.Option(
    None, "--db", help="Database file (default: IMAGELINGO_DB or the user data folder)."
)


def policy_flags(
    *,
    max_retries: int | None,
    auto_retry: bool | None,
    auto_retry_on: list[str] | None,
    max_wait: float | None,
    timeout: float | None,
) -> dict[str, Any]:
    """The policy options as `settings.resolve` flags (None: not given)."""
    return {
        "max_retries": max_retries,
        "auto_retry": auto_retry,
        "auto_retry_codes": auto_retry_on or None,
        "max_wait": max_wait,
        "timeout": timeout,
    }


def policy_from(settings: Settings) -> RetryPolicy:
    from imagelingo_cli.errors import ErrorCode
    from imagelingo_cli.retry import RetryPolicy

    return RetryPolicy(
        max_retries=settings.max_retries,
        auto_retry=settings.auto_retry,
        auto_retry_codes=frozenset(ErrorCode(c) for c in settings.auto_retry_codes),
        max_wait=settings.max_wait,
    )
