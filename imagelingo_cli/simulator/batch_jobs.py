"""One batch job: its state on the clock, its lines answered like interactive requests, its output.

A job is PENDING for `pending` seconds, RUNNING for `running` seconds, then ends as its
`JobRule` scripts (SUCCEEDED by default). Nothing runs in the background: whenever a job is
looked at, `catch_up` answers the lines due by the clock (RUNNING progress is linear in time),
so ``batchStats`` grow while it runs and a cancel keeps what was done. Each line is answered by
the simulator's interactive decision (scenario rules, profile) through `JobBackend.answer_line`,
and `line_result` turns that HTTP reply into the line: a 200 body becomes ``response``, an
error a ``google.rpc.Status``, a reset/disconnect/stall a 503 UNAVAILABLE status.

File input streams from disk line by line into a JSONL responses file on disk
(``files/batch-<id>``); inline input keeps its responses in memory, as the API's 20 MB inline
limit allows. Jobs that end FAILED, EXPIRED or in the unknown state answer no line.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, TypeVar

from imagelingo_cli.simulator import faults
from imagelingo_cli.simulator.batch_script import JobRule
from imagelingo_cli.simulator.files import FileStore, Storage
from imagelingo_cli.simulator.timeline import Timeline

__all__ = [
    "BATCH_TYPE",
    "UNKNOWN_STATE",
    "BatchJob",
    "FileInput",
    "InlineInput",
    "JobBackend",
    "LineAnswerer",
    "Phase",
    "line_result",
]

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
UNKNOWN_STATE = "BATCH_STATE_SOMETHING_NEW"
_ENDED_STATES: Mapping[str, str] = {
    "succeeded": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "expired": "BATCH_STATE_EXPIRED",
    "unknown": UNKNOWN_STATE,
}
_GRPC_CODES: Mapping[str, int] = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
_STATUS_OF_HTTP: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_UNAVAILABLE_MESSAGE = "The service is currently unavailable."

# (request payload, model, api version) -> (outcome name, the reply an interactive call gets)
LineAnswerer = Callable[[Any, str, str], tuple[str, faults.Reply]]
LineKind = Literal["response", "error"]


@dataclass(frozen=True)
class JobBackend:
    """What a job needs from the simulator: the interactive answer, disk, the Files API, time."""

    answer_line: LineAnswerer
    storage: Storage
    files: FileStore
    timeline: Timeline


@dataclass(frozen=True)
class FileInput:
    """A JSONL input file: ``{"key": …, "request": {GenerateContentRequest}}`` per line."""

    file_name: str
    path: Path


@dataclass(frozen=True)
class InlineInput:
    """Inline requests: ``{"request": {…}, "metadata": {…}}`` each."""

    requests: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Phase:
    """Where a job stands at a clock reading."""

    state: str
    done: bool
    progress: float  # share of the lines answered by now
    since: float  # clock reading of the last state change
    ended: float | None


def line_result(reply: faults.Reply, rule: JobRule) -> tuple[LineKind, dict[str, Any]]:
    """The interactive `reply` as a batch line: ``("response", body)`` or ``("error", Status)``."""
    if reply.action != "respond":
        return "error", _status(503, "UNAVAILABLE", _UNAVAILABLE_MESSAGE, (), rule)
    try:
        parsed = json.loads(reply.body) if reply.body else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        parsed = None
    if reply.status == 200:
        if isinstance(parsed, dict):
            return "response", parsed
        return "error", _status(500, "INTERNAL", "Internal error encountered.", (), rule)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    status = _STATUS_OF_HTTP.get(reply.status, "UNKNOWN")
    if not isinstance(error, dict):
        return "error", _status(reply.status, status, HTTPStatus(reply.status).phrase, (), rule)
    return "error", _status(
        int(error.get("code", reply.status)),
        str(error.get("status", status)),
        str(error.get("message", "")),
        error.get("details") or (),
        rule,
    )


def _status(
    code: int, status: str, message: str, details: Sequence[Any], rule: JobRule
) -> dict[str, Any]:
    """A ``google.rpc.Status`` in the rule's style; details only when the rule asks for them."""
    if rule.status_codes == "grpc":
        out: dict[str, Any] = {"code": _GRPC_CODES.get(status, 2), "message": message}
    else:
        out = {"code": code, "message": message, "status": status}
    if rule.status_details:
        out["details"] = list(details) or [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": status,
                "domain": "generativelanguage.googleapis.com",
            }
        ]
    return out


class BatchJob:
    """A job at the simulated Google. All reads go through `catch_up` or `operation`."""

    def __init__(
        self,
        *,
        job_id: str,
        sequence: int,
        model: str,
        api_version: str,
        display_name: str | None,
        source: FileInput | InlineInput,
        input_config: Mapping[str, Any],
        request_count: int,
        rule: JobRule,
        pending: float,
        running: float,
        created: float,
        backend: JobBackend,
    ) -> None:
        self.id = job_id
        self.sequence = sequence
        self.model = model
        self.api_version = api_version
        self.display_name = display_name
        self.source = source
        self.input_config = input_config
        self.request_count = request_count
        self.rule = rule
        self.pending = pending
        self.running = running
        self.created = created
        self._backend = backend
        self._lock = threading.Lock()
        self._cancelled_at: float | None = None
        self._gets = 0
        self._answered = 0
        self._succeeded = 0
        self._failed = 0
        self._input_offset = 0
        self._lines_path: Path | None = None
        self._inline: list[dict[str, Any]] = []
        self._output: dict[str, Any] | None = None
        self._finished = False

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    # --- the clock --------------------------------------------------------------------------

    def phase(self, now: float) -> Phase:
        """The state at `now` (pure: answers no line)."""
        started = self.created + self.pending
        ends = started + self.running
        if self._cancelled_at is not None:
            at = self._cancelled_at
            return Phase("BATCH_STATE_CANCELLED", True, self._progress(at), at, at)
        if now < started:
            return Phase("BATCH_STATE_PENDING", False, 0.0, self.created, None)
        if now < ends:
            return Phase("BATCH_STATE_RUNNING", False, self._progress(now), started, None)
        state = _ENDED_STATES[self.rule.ending]
        done = self.rule.ending != "unknown"
        return Phase(state, done, self._progress(now), ends, ends if done else None)

    def _progress(self, moment: float) -> float:
        if self.rule.ending != "succeeded":
            return 0.0
        started = self.created + self.pending
        if moment < started:
            return 0.0
        if self.running <= 0 or moment >= started + self.running:
            return 1.0
        return (moment - started) / self.running

    def cancel(self, now: float) -> None:
        """Stop the job now, keeping the lines due by now. A finished job stays as it is."""
        with self._lock:
            if not self.phase(now).done:
                self._cancelled_at = now
        self.catch_up(now)

    def next_get_answer(self) -> faults.FaultSpec | None:
        """The scripted answer to this GET of the job, if the rule still has one."""
        with self._lock:
            used, self._gets = self._gets, self._gets + 1
        return self.rule.get[used] if used < len(self.rule.get) else None

    # --- lines ------------------------------------------------------------------------------

    def catch_up(self, now: float) -> Phase:
        """Answer the lines due by `now`; when the job has ended, settle its output."""
        with self._lock:
            phase = self.phase(now)
            due = math.floor(phase.progress * self.request_count + 1e-9)
            if due > self._answered:
                if isinstance(self.source, FileInput):
                    self._answer_file_lines(self.source, due)
                else:
                    self._answer_inline_requests(self.source, due)
            if phase.done and not self._finished:
                self._finished = True
                self._output = self._settle_output(phase)
        return phase

    def _answer(
        self, request: Any, refusal: faults.Reply | None = None
    ) -> tuple[LineKind, dict[str, Any]]:
        """Answer one request (or record the `refusal` of a line that could not be read)."""
        if refusal is None and isinstance(request, dict):
            _, reply = self._backend.answer_line(request, self.model, self.api_version)
        else:
            reply = refusal or faults.invalid_argument('Each line needs a "request" object.')
        kind, payload = line_result(reply, self.rule)
        self._answered += 1
        if kind == "response":
            self._succeeded += 1
        else:
            self._failed += 1
        return kind, payload

    def _answer_file_lines(self, source: FileInput, due: int) -> None:
        if self._lines_path is None:
            self._lines_path = self._backend.storage.new_path(f"batch-{self.id}.jsonl")
        with source.path.open("rb") as lines, self._lines_path.open("ab") as sink:
            lines.seek(self._input_offset)
            while self._answered < due:
                raw = lines.readline()
                if not raw:
                    break
                self._input_offset += len(raw)
                if not raw.strip():
                    continue
                refusal = None
                try:
                    line = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    line = None
                    refusal = faults.invalid_argument(f"Invalid JSON payload received. {exc}")
                if not isinstance(line, dict):
                    line = {}
                kind, payload = self._answer(line.get("request"), refusal)
                out: dict[str, Any] = {
                    "response" if kind == "response" else self.rule.error_field: payload
                }
                if "key" in line:
                    out["key"] = line["key"]
                sink.write(json.dumps(out, separators=(",", ":")).encode("utf-8") + b"\n")

    def _answer_inline_requests(self, source: InlineInput, due: int) -> None:
        for item in source.requests[self._answered : due]:
            kind, payload = self._answer(item.get("request"))
            self._inline.append(self._inline_entry(kind, payload, item.get("metadata")))

    def _inline_entry(
        self, kind: LineKind, payload: dict[str, Any], metadata: Any
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {kind: payload}
        if metadata is not None and self.rule.echo_metadata:
            entry["metadata"] = metadata
        return entry

    def _settle_output(self, phase: Phase) -> dict[str, Any] | None:
        wanted = phase.state == "BATCH_STATE_SUCCEEDED" and self.rule.output != "none"
        partial = phase.state == "BATCH_STATE_CANCELLED" and self._answered > 0
        if not (wanted or partial):
            return None
        if isinstance(self.source, InlineInput):
            inline = _reordered(self._inline, self.rule.order)
            return {"inlinedResponses": {"inlinedResponses": inline}}
        assert self._lines_path is not None  # at least one line was answered
        if self.rule.order != "input":
            self._lines_path = self._reordered_file(self._lines_path)
        if self.rule.output == "inline":
            return {"inlinedResponses": {"inlinedResponses": self._inline_from_file()}}
        file_id = f"batch-{self.id}"
        available = (phase.ended or self.created) + self.rule.output_delay
        self._backend.files.add_generated(file_id, self._lines_path, "application/jsonl", available)
        return {"responsesFile": f"files/{file_id}"}

    def _reordered_file(self, path: Path) -> Path:
        """A copy of a responses file with its lines in the rule's order."""
        with path.open("rb") as lines:
            kept = lines.readlines()
        copy = self._backend.storage.new_path(f"batch-{self.id}-{self.rule.order}.jsonl")
        reordered: list[bytes] = _reordered(kept, self.rule.order)
        copy.write_bytes(b"".join(reordered))
        return copy

    def _inline_from_file(self) -> list[dict[str, Any]]:
        """The responses file as inline responses, each tagged with its line's key."""
        assert self._lines_path is not None
        entries: list[dict[str, Any]] = []
        with self._lines_path.open("rb") as lines:
            for raw in lines:
                line = json.loads(raw)
                kind: LineKind = "response" if "response" in line else "error"
                payload = line["response"] if kind == "response" else line[self.rule.error_field]
                key = line.get("key")
                entries.append(
                    self._inline_entry(
                        kind, payload, {"key": str(key)} if key is not None else None
                    )
                )
        return entries

    # --- the resource -----------------------------------------------------------------------

    def operation(self, now: float) -> dict[str, Any]:
        """The job as ``GET batches/{id}`` shows it (an Operation), after catching up."""
        phase = self.catch_up(now)
        stamp = self._backend.timeline.stamp
        with self._lock:
            counts = {
                "requestCount": self.request_count,
                "successfulRequestCount": self._succeeded,
                "failedRequestCount": self._failed,
                "pendingRequestCount": self.request_count - self._answered,
            }
            output = self._output
        metadata: dict[str, Any] = {"@type": BATCH_TYPE, "model": f"models/{self.model}"}
        if self.display_name is not None:
            metadata["displayName"] = self.display_name
        metadata.update(
            inputConfig=self.input_config,
            createTime=stamp(self.created),
            updateTime=stamp(phase.since),
        )
        if phase.ended is not None:
            metadata["endTime"] = stamp(phase.ended)
        # proto3 JSON: int64 as strings, zeros omitted
        metadata["batchStats"] = {key: str(value) for key, value in counts.items() if value}
        metadata["state"] = phase.state
        metadata["name"] = self.name
        operation: dict[str, Any] = {"name": self.name, "metadata": metadata}
        if phase.done:
            operation["done"] = True
        if output is not None:
            metadata["output"] = output
            operation["response"] = {"@type": _OUTPUT_TYPE, **output}
        if phase.state == "BATCH_STATE_FAILED":
            operation["error"] = self.job_error()
        return operation

    def job_error(self) -> dict[str, Any]:
        """The top-level Status of a failed job (details objects when the rule asks)."""
        error: dict[str, Any] = {"code": self.rule.error_code, "message": self.rule.error_message}
        if self.rule.status_details:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.DebugInfo",
                    "detail": "batch failed while processing its requests",
                }
            ]
        return error


_T = TypeVar("_T")


def _reordered(items: list[_T], order: str) -> list[_T]:
    """Results in a batch rule's order: as asked, reversed, or all of them twice over."""
    if order == "reversed":
        return items[::-1]
    if order == "repeated":
        return items + items
    return items
