"""The vocabulary of everything imagelingo prints for programs: one name per fact, in every
command's JSON and in the tsv/csv formats (the README's "JSON output" section lists them).

    variation_record(row)   a variation: id, image, variation, language, status, story, …
    attempt_record(row)     an attempt: attempt_number, trigger, started_at, duration_s, …
    event_record(event)     a `process`/`retry-failed` event line: {"event": …, "at": …}
    write_records(records, fields, format)   json, tsv or csv on stdout

Times are UTC ISO-8601 with milliseconds ("2026-11-30T20:31:02.123Z"); durations are seconds,
their names end in `_s`.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the events are imported by the runs that make them, not by history
    from imagelingo_cli import events as ev

VARIATION_FIELDS = (
    "id",
    "run_id",
    "image",
    "source_path",
    "variation",
    "language",
    "model",
    "backend",
    "status",
    "story",
    "error_code",
    "error_message",
    "is_retryable",
    "retry_count",
    "attempt_count",
    "credits_charged",
    "output_path",
    "created_at",
    "updated_at",
    "completed_at",
    "first_error_at",
    "last_retry_at",
)
ATTEMPT_FIELDS = (
    "attempt_number",
    "round",
    "position",
    "round_max",
    "trigger",
    "run_id",
    "run_command",
    "batch_job_id",
    "model",
    "started_at",
    "finished_at",
    "duration_s",
    "outcome",
    "error_code",
    "error_message",
    "http_status",
    "api_status",
    "retry_after_s",
    "wait_planned_s",
    "waited_s",
    "prompt_tokens",
    "output_tokens",
    "thoughts_tokens",
    "total_tokens",
    "model_version",
)
_RENAMED = {"relative_path": "image", "target_language": "language"}
_MILLISECONDS = {
    "duration_ms": "duration_s",
    "retry_after_ms": "retry_after_s",
    "wait_before_next_ms": "wait_planned_s",
    "waited_ms": "waited_s",
}


def seconds(ms: int | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def utc(moment: float) -> str:
    """A Unix time as UTC ISO-8601 with milliseconds."""
    stamp = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def variation_record(row: dict[str, Any]) -> dict[str, Any]:
    """A `generations` row (with its round, from `queries`) in the shared vocabulary."""
    from imagelingo_cli.cli.wording import story

    named = {_RENAMED.get(key, key): value for key, value in row.items()}
    named["story"] = story(row)
    retryable = row.get("is_retryable")
    named["is_retryable"] = None if retryable is None else bool(retryable)
    return {name: named.get(name) for name in VARIATION_FIELDS}


def attempt_record(row: dict[str, Any]) -> dict[str, Any]:
    """An `attempts` row (with round, position and the real wait, from `queries`)."""
    named = dict(row)
    for ms, secs in _MILLISECONDS.items():
        named[secs] = seconds(row.get(ms))
    return {name: named.get(name) for name in ATTEMPT_FIELDS}


class EventRecords:
    """Turns engine events into JSON-ready dicts. Times on the engine's clock (`retry_at`,
    `cooldown_until`) become UTC timestamps through the offset between that clock and the
    wall clock at each event."""

    def __init__(self, engine_now: Callable[[], float]) -> None:
        from imagelingo_cli import events

        self._engine_now = engine_now
        self._events = events

    def __call__(self, event: ev.Event) -> dict[str, Any]:
        wall = time.time()
        try:
            offset = wall - self._engine_now()
        except RuntimeError:  # the engine's clock is only readable inside its event loop
            offset = 0.0
        name = "".join("_" + c.lower() if c.isupper() else c for c in type(event).__name__)
        record: dict[str, Any] = {"event": name.lstrip("_"), "at": utc(wall)}
        if isinstance(event, self._events.BatchFinished):
            record.update(self._value(event.summary, offset))
        else:
            record.update(self._value(event, offset))
        return record

    def _value(self, value: Any, offset: float) -> Any:
        if isinstance(value, self._events.VariationRef):
            return {
                "id": value.generation_id or None,
                "image": value.image,
                "variation": value.variation,
                "language": value.language,
            }
        if is_dataclass(value) and not isinstance(value, type):
            out: dict[str, Any] = {}
            for field in fields(value):
                item = getattr(value, field.name)
                key, item = self._field(field.name, item, offset)
                out[key] = self._value(item, offset)
            return out
        if isinstance(value, list | tuple):
            return [self._value(item, offset) for item in value]
        return value

    @staticmethod
    def _field(name: str, value: Any, offset: float) -> tuple[str, Any]:
        if name == "ref":
            return "variation", value
        if name in ("retry_at", "cooldown_until"):
            return name, None if value is None else utc(value + offset)
        if name.endswith("_ms"):
            return name.removesuffix("_ms") + "_s", seconds(value)
        if name in ("retry_in", "grace", "elapsed"):
            return f"{name}_s", None if value is None else round(float(value), 3)
        if name == "signal":
            return "reason", value
        return name, value


def write_records(
    records: Iterable[dict[str, Any]], columns: Sequence[str], output_format: str
) -> None:
    """`json`: one array; `tsv` / `csv`: a header, then one line per record (a tab or a
    newline inside a value is written as a space in tsv; csv quotes as needed)."""
    if output_format == "json":
        sys.stdout.write(json.dumps(list(records), indent=2) + "\n")
        return
    if output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for record in records:
            writer.writerow(["" if record.get(c) is None else record[c] for c in columns])
        return
    sys.stdout.write("\t".join(columns) + "\n")
    for record in records:
        sys.stdout.write("\t".join(_cell(record.get(c)) for c in columns) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)
