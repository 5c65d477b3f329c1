"""What a run would do before it does it: `process --dry-run` and `retry-failed --dry-run`
(what would be sent, what resume would skip, how many requests, the estimated cost), and
the question `process` asks on a terminal before a large run."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import typer

from imagelingo_cli.cli.common import plural, stdout_console
from imagelingo_cli.cli.progress import SKIPPED
from imagelingo_cli.cli.records import utc
from imagelingo_cli.pricing import Estimate, estimate
from imagelingo_cli.runner import Planned


def cost_words(estimates: Sequence[Estimate | None], models: Sequence[str]) -> str:
    """`about $0.47 at list price` or why there is no estimate."""
    if not models:
        return "no cost: the simulator answers"
    known = [e for e in estimates if e is not None]
    unknown = sorted({m for m, e in zip(models, estimates, strict=True) if e is None})
    words = f"about ${sum(e.total_usd for e in known):,.2f} at list price" if known else ""
    if unknown:
        words += ("; " if words else "") + f"no price known for {', '.join(unknown)}"
    return words


def estimates_by_model(
    counts: Counter[str], *, batch: bool = False
) -> tuple[list[Estimate | None], list[str]]:
    models = sorted(counts)
    return [estimate(model, counts[model], batch=batch) for model in models], models


def show_process_plan(
    planned: Sequence[Planned], *, simulated: bool, batch: bool, json_output: bool
) -> None:
    sending = [p for p in planned if p.skip is None and p.problem is None]
    skipping = [p for p in planned if p.skip is not None]
    refused = [p for p in planned if p.problem is not None]
    paid = Counter() if simulated else Counter(p.model for p in sending)
    estimates, models = estimates_by_model(paid, batch=batch)
    if json_output:
        _print_json(
            "process",
            would_send=[_planned(p) for p in sending],
            would_skip=[{**_planned(p), "reason": str(p.skip)} for p in skipping],
            not_sendable=[{**_planned(p), "problem": p.problem} for p in refused],
            requests=len(sending),
            estimates=estimates,
        )
        return
    console = stdout_console()
    for item in sending:
        console.print(f"send  {_named(item)}", markup=False)
    for item in skipping:
        assert item.skip is not None
        console.print(f"skip  {_named(item)}  ({SKIPPED[item.skip]})", markup=False)
    for item in refused:
        console.print(f"fail  {_named(item)}  ({item.problem}: not sendable)", markup=False)
    line = f"Would send {plural(len(sending), 'request')}"
    if sending:
        line += f", {_price(estimates, models, batch)}"
    reasons = Counter(SKIPPED[p.skip] for p in skipping if p.skip is not None)
    if reasons:
        line += "; would skip " + ", ".join(f"{n} {why}" for why, n in reasons.items())
    console.print(line + ". Nothing was sent (dry run); retries are not counted.")


def paid_retries(rows: Sequence[dict[str, Any]], model: str | None) -> Counter[str]:
    """Requests a retry of `rows` sends to Gemini (not the simulator), by model."""
    return Counter(model or str(row["model"]) for row in rows if row["backend"] == "gemini")


def show_retry_plan(
    rows: Sequence[dict[str, Any]],
    short_ids: dict[str, str],
    model: str | None,
    *,
    batch: bool,
    json_output: bool,
) -> None:
    models = [model or str(row["model"]) for row in rows]
    estimates, names = estimates_by_model(paid_retries(rows, model), batch=batch)
    if json_output:
        _print_json(
            "retry-failed",
            would_send=[
                {
                    "id": row["id"],
                    "image": row["relative_path"],
                    "variation": row["variation"],
                    "language": row["target_language"],
                    "model": asked,
                    "error_code": row["error_code"],
                }
                for row, asked in zip(rows, models, strict=True)
            ],
            would_skip=[],
            not_sendable=[],
            requests=len(rows),
            estimates=estimates,
        )
        return
    console = stdout_console()
    for row, asked in zip(rows, models, strict=True):
        console.print(
            f"send  {short_ids[str(row['id'])]}  {row['relative_path']} v{row['variation']} "
            f"{row['target_language']}  {asked}  (last: {row['error_code'] or row['status']})",
            markup=False,
        )
    console.print(
        f"Would send {plural(len(rows), 'request')}"
        + (f", {_price(estimates, names, batch)}" if rows else "")
        + ". Nothing was sent (dry run); retries are not counted."
    )


def confirm_large_run(requests: Counter[str], threshold: int, *, batch: bool = False) -> None:
    """On a terminal, ask before sending more than `threshold` requests (counted by model);
    exit 0 on no."""
    total = sum(requests.values())
    if total <= threshold or not (sys.stdin.isatty() and sys.stdout.isatty()):
        return
    estimates, models = estimates_by_model(requests, batch=batch)
    question = f"Send up to {plural(total, 'request')} to {', '.join(models)} ({_price(estimates, models, batch)})?"
    if not typer.confirm(question, default=False):
        typer.echo("Nothing sent.")
        raise typer.Exit(0)


def _price(estimates: Sequence[Estimate | None], models: Sequence[str], batch: bool) -> str:
    return cost_words(estimates, models) + (" (Batch API: half price)" if batch else "")


def _planned(item: Planned) -> dict[str, Any]:
    return {
        "image": item.image,
        "variation": item.variation,
        "language": item.language,
        "model": item.model,
    }


def _named(item: Planned) -> str:
    return f"{item.image} v{item.variation} {item.language}"


def _print_json(command: str, *, estimates: list[Estimate | None], **fields: Any) -> None:
    known = [e for e in estimates if e is not None]
    record = {
        "event": "dry_run",
        "at": utc(time.time()),
        "command": command,
        **fields,
        "estimated_usd": round(sum(e.total_usd for e in known), 4) if known else None,
    }
    sys.stdout.write(json.dumps(record) + "\n")
