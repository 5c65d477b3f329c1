"""What the read commands share: how a recorded variation or attempt reads in words, and how
ids and codes typed by the user are resolved (unique prefixes, known codes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from imagelingo_cli.cli.common import fail_setup, plural
from imagelingo_cli.errors import ErrorCode
from imagelingo_cli.store import Store, queries


def label(code: str | None) -> str:
    """RATE_LIMIT -> "Rate Limit"; a code this version does not know is shown as it is."""
    if not code:
        return "Unknown Error"
    try:
        return ErrorCode(code).label
    except ValueError:
        return code


def one_line(text: str | None, limit: int = 100) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _of_round(row: dict[str, Any]) -> str:
    """`2/3` in the first round; `5 (2/3 of round 2)` once a new round (retry-failed) began."""
    position, maximum, rounds = row.get("last_position"), row.get("round_max"), row.get("rounds")
    if position is None:
        return str(row["attempt_count"])
    if rounds and rounds > 1:
        return f"{row['attempt_count']} ({position}/{maximum} of round {rounds})"
    return f"{position}/{maximum}"


def story(row: dict[str, Any]) -> str:
    """A variation's outcome in one phrase: "Completed on attempt 2/3", "Failed after 2
    retries · Rate Limit", "Failed · Quota Exhausted (not sent)", "Abandoned · Timeout"."""
    status = row["status"]
    code = row.get("error_code")
    attempts = int(row.get("attempt_count") or 0)
    retries = int(row.get("retry_count") or 0)
    if status == "completed":
        return f"Completed on attempt {_of_round(row)}"
    if status == "failed":
        if attempts == 0:
            return f"Failed · {label(code)} (not sent)"
        head = f"Failed after {plural(retries, 'retry', 'retries')}" if retries else "Failed"
        kind = " (permanent)" if row.get("is_retryable") == 0 else ""
        return f"{head} · {label(code)}{kind}"
    if status == "abandoned":
        return f"Abandoned · {label(code)}" if code else "Abandoned"
    if status == "interrupted":
        return f"Interrupted on attempt {_of_round(row)}" if attempts else "Interrupted (not sent)"
    if status == "retrying":
        return f"Retrying after attempt {_of_round(row)} · {label(code)}"
    if status == "running":
        return f"Running attempt {_of_round(row)}"
    if status == "batched":
        return "Waiting in a Batch API job (imagelingo batch status)"
    return str(status).capitalize()


def local(stamp: str | None, *, short: bool = False, now: datetime | None = None) -> str:
    """A stored UTC stamp in local time: `2026-11-28 20:31:02`; short: `20:31` today,
    `Nov 28 20:31` this year, `2025-11-28` before."""
    if not stamp:
        return "—"
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone()
    if not short:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    today = (now or datetime.now()).astimezone()
    if moment.date() == today.date():
        return moment.strftime("%H:%M")
    if moment.year == today.year:
        return moment.strftime("%b %d %H:%M")
    return moment.strftime("%Y-%m-%d")


def seconds(ms: int | None) -> str:
    return "?" if ms is None else f"{ms / 1000:.1f} s".replace(".0 s", " s")


def attempt_line(attempt: dict[str, Any], *, followed: bool) -> str:
    """`Attempt 1/3 (auto) 2026-11-28 20:31:02 · 412 ms · Failed - Rate Limit (HTTP 429
    RESOURCE_EXHAUSTED) (server asked 17 s) → waited 17.4 s` (or `→ not retried: why`).
    `followed`: a next attempt exists."""
    head = (
        f"Attempt {attempt['position']}/{attempt['round_max']} ({attempt['trigger']}) "
        f"{local(attempt['started_at'])}"
    )
    parts = [head]
    if attempt.get("batch_job_id"):
        parts.append(f"in Batch API job {attempt['batch_job_id']}")
    if attempt.get("model"):
        parts.append(f"asked {attempt['model']}")
    if attempt.get("duration_ms") is not None:
        parts.append(f"{attempt['duration_ms']} ms")
    outcome = attempt.get("outcome")
    if outcome == "succeeded":
        tokens = attempt.get("total_tokens")
        parts.append("Succeeded" + (f" · {tokens} tokens" if tokens else ""))
    elif outcome == "failed":
        text = f"Failed - {label(attempt.get('error_code'))}"
        wire = " ".join(
            str(x)
            for x in (
                f"HTTP {attempt['http_status']}" if attempt.get("http_status") else None,
                attempt.get("api_status"),
            )
            if x
        )
        if wire:
            text += f" ({wire})"
        if attempt.get("retry_after_ms"):
            text += f" (server asked {seconds(attempt['retry_after_ms'])})"
        planned, waited = attempt.get("wait_before_next_ms"), attempt.get("waited_ms")
        if followed and waited is not None:
            text += f" → waited {seconds(waited)}"
            if planned is not None and abs(waited - planned) >= 500:
                text += f" (planned {seconds(planned)})"
        elif planned is not None:
            text += f" → retry planned in {seconds(planned)}"
        elif attempt.get("not_retried"):
            text += f" → not retried: {attempt['not_retried']}"
        parts.append(text)
    elif outcome == "interrupted":
        parts.append("Interrupted")
    else:
        parts.append("In flight")
    return " · ".join(parts)


# --- what the user typed -------------------------------------------------------------------


def parse_codes(codes: list[str] | None) -> tuple[str, ...]:
    """--code values, upper-cased; an unknown code is a usage error listing the valid ones."""
    wanted = tuple(dict.fromkeys(c.strip().upper() for c in codes or []))
    for code in wanted:
        if code not in ErrorCode.__members__:
            fail_setup(f"unknown error code {code!r} (valid: {', '.join(ErrorCode.__members__)})")
    return wanted


def parse_languages(values: list[str] | None) -> tuple[str, ...]:
    """--to values (comma-separated or repeated) as canonical tags; exit 2 for one not
    understood."""
    if not values:
        return ()
    from imagelingo_cli.languages import resolve_languages

    try:
        return tuple(language.tag for language in resolve_languages(values))
    except ValueError as exc:
        fail_setup(f"--to: {exc}")


def resolve_generation(store: Store, prefix: str) -> str:
    """The one variation whose id starts with `prefix`; otherwise exit 2 naming candidates."""
    found = queries.find_generations(store, prefix) if prefix.strip() else []
    if len(found) == 1:
        return str(found[0]["id"])
    if not found:
        fail_setup(f"no variation id starts with {prefix!r} (see imagelingo history)")
    shown = "; ".join(
        f"{row['id']} ({row['relative_path']} v{row['variation']} {row['target_language']},"
        f" {row['status']})"
        for row in found[:5]
    )
    more = " and more" if len(found) > 5 else ""
    fail_setup(f"{prefix!r} matches several variations: {shown}{more}. Type more of the id.")


def resolve_run(store: Store, prefix: str | None) -> str | None:
    """The one run whose id starts with `prefix` (None stays None); otherwise exit 2."""
    if prefix is None:
        return None
    found = queries.find_runs(store, prefix) if prefix.strip() else []
    if len(found) == 1:
        return str(found[0]["id"])
    if not found:
        fail_setup(f"no run id starts with {prefix!r}")
    shown = "; ".join(f"{r['id']} ({r['command']}, {local(r['started_at'])})" for r in found[:5])
    more = " and more" if len(found) > 5 else ""
    fail_setup(f"{prefix!r} matches several runs: {shown}{more}. Type more of the id.")
