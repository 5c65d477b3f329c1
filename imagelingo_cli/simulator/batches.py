"""The Batch API's jobs at the simulated Google: create, get, list, cancel, delete, and counts.

`BatchBook.create` reads a ``batchGenerateContent`` body (camelCase or snake_case), picks the
job's `JobRule` from the scenario's ``batch`` section, answers its scripted create faults
first, then records a `BatchJob`. Lists are newest first, paged by an opaque token that
survives jobs being created between pages. Refusals are `Rejected` with the API's error body.
Thread-safe: the book's lock guards the registry, each job's lock its own progress.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagelingo_cli.simulator import faults
from imagelingo_cli.simulator.batch_jobs import (
    BatchJob,
    FileInput,
    InlineInput,
    JobBackend,
    LineAnswerer,
)
from imagelingo_cli.simulator.batch_script import BatchScript, JobRule
from imagelingo_cli.simulator.files import FileStore, Storage, random_id
from imagelingo_cli.simulator.request import Rejected
from imagelingo_cli.simulator.timeline import Timeline

__all__ = ["BatchBook", "job_fault_reply"]

_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 1000
_ENQUEUED_TOKENS_LIMIT = 3_000_000
_RATE_LIMITS_DOC = "https://ai.google.dev/gemini-api/docs/rate-limits"


def job_fault_reply(spec: faults.FaultSpec, model: str, api_version: str) -> faults.Reply:
    """The reply to a job request for a scripted fault (batch-only names, or the catalogue's)."""
    if spec.name == "enqueued_tokens":
        metric = "generativelanguage.googleapis.com/batch_enqueued_tokens"
        message = (
            "You exceeded your current quota, please check your plan and billing details. For "
            f"more information on this error, head to: {_RATE_LIMITS_DOC}. To monitor your "
            "current usage, head to: https://ai.dev/rate-limit. \n"
            f"* Quota exceeded for metric: {metric}, limit: {_ENQUEUED_TOKENS_LIMIT}, "
            f"model: {model}"
        )
        violation = {
            "quotaMetric": metric,
            "quotaId": "BatchEnqueuedTokensPerModelPerProject",
            "quotaDimensions": {"model": model},
            "quotaValue": str(_ENQUEUED_TOKENS_LIMIT),
        }
        details = [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMITS_DOC}
                ],
            },
        ]
        return faults.error_reply(429, "RESOURCE_EXHAUSTED", message, details)
    if spec.name == "unavailable":
        return faults.error_reply(503, "UNAVAILABLE", "The service is currently unavailable.")
    return faults.fault_reply(spec, faults.Context(model=model, api_version=api_version))


def _field(body: Mapping[str, Any], camel: str, snake: str) -> Any:
    return body[camel] if camel in body else body.get(snake)


def _not_found(name: str) -> Rejected:
    reply = faults.error_reply(404, "NOT_FOUND", f"Requested entity was not found: {name}.")
    return Rejected(reply, "not_found")


def _invalid(message: str) -> Rejected:
    return Rejected(faults.invalid_argument(message), "invalid_argument")


@dataclass(frozen=True)
class _Source:
    kind: str  # "file" or "inline"
    source: FileInput | InlineInput
    request_count: int
    input_config: Mapping[str, Any]


class BatchBook:
    """Every batch job of one simulator."""

    def __init__(
        self,
        *,
        answer_line: LineAnswerer,
        files: FileStore,
        storage: Storage,
        timeline: Timeline,
        script: BatchScript,
        pending: float,
        running: float,
    ) -> None:
        self._files = files
        self._timeline = timeline
        self._script = script
        self._pending = pending
        self._running = running
        self._answer_line = answer_line
        self._backend = JobBackend(self._answer_and_count, storage, files, timeline)
        self._lock = threading.Lock()
        self._jobs: dict[str, BatchJob] = {}
        self._sequence = 0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._creates = 0
        self._created = 0
        self._create_faults_used: dict[int, int] = {}
        self._lines = 0
        self._line_outcomes: dict[str, int] = {}

    def reset_counters(self) -> None:
        """Zero the counters and the scripted create faults' progress (jobs stay)."""
        with self._lock:
            self._reset_counters()

    def _answer_and_count(
        self, request: Any, model: str, api_version: str
    ) -> tuple[str, faults.Reply]:
        outcome, reply = self._answer_line(request, model, api_version)
        with self._lock:
            self._lines += 1
            self._line_outcomes[outcome] = self._line_outcomes.get(outcome, 0) + 1
        return outcome, reply

    # --- create -----------------------------------------------------------------------------

    def create(self, model: str, api_version: str, body: Any) -> BatchJob | faults.Reply:
        """A new job from a create body, or the scripted fault answering this create."""
        with self._lock:
            self._creates += 1
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            raise _invalid('Invalid JSON payload received. The body needs a "batch" object.')
        display_name = _field(batch, "displayName", "display_name")
        if display_name is not None and not isinstance(display_name, str):
            raise _invalid("Invalid value at 'batch.display_name' (TYPE_STRING).")
        source = self._source(_field(batch, "inputConfig", "input_config"))
        rule = self._script.rule_for(display_name, model, source.kind)
        fault = self._scripted_create_fault(rule)
        if fault is not None:
            return job_fault_reply(fault, model, api_version)
        with self._lock:
            self._sequence += 1
            self._created += 1
            job = BatchJob(
                job_id=random_id(36),
                sequence=self._sequence,
                model=model,
                api_version=api_version,
                display_name=display_name,
                source=source.source,
                input_config=source.input_config,
                request_count=source.request_count,
                rule=rule,
                pending=self._timing(rule.pending, self._script.pending, self._pending),
                running=self._timing(rule.running, self._script.running, self._running),
                created=self._timeline.now(),
                backend=self._backend,
            )
            self._jobs[job.id] = job
        return job

    @staticmethod
    def _timing(rule: float | None, script: float | None, simulator: float) -> float:
        return next(value for value in (rule, script, simulator) if value is not None)

    def _scripted_create_fault(self, rule: JobRule) -> faults.FaultSpec | None:
        with self._lock:
            used = self._create_faults_used.get(rule.index, 0)
            if used >= len(rule.create):
                return None
            self._create_faults_used[rule.index] = used + 1
        return rule.create[used]

    def _source(self, config: Any) -> _Source:
        if not isinstance(config, dict):
            raise _invalid("batch.input_config is required.")
        file_name = _field(config, "fileName", "file_name")
        requests = config.get("requests")
        if (file_name is None) == (requests is None):
            raise _invalid("batch.input_config needs exactly one of file_name and requests.")
        if file_name is not None:
            if not isinstance(file_name, str) or not file_name.startswith("files/"):
                raise _invalid(f"Invalid input file name: {file_name!r}.")
            try:
                stored = self._files.get(file_name.removeprefix("files/"))
            except Rejected:
                raise _invalid(f"Input file {file_name} was not found.") from None
            with stored.path.open("rb") as lines:
                count = sum(1 for line in lines if line.strip())
            if count == 0:
                raise _invalid(f"Input file {file_name} holds no requests.")
            return _Source(
                "file", FileInput(file_name, stored.path), count, {"fileName": file_name}
            )
        items = requests.get("requests") if isinstance(requests, dict) else None
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise _invalid("batch.input_config.requests.requests must be a non-empty list.")
        return _Source("inline", InlineInput(items), len(items), {"requests": {"requests": items}})

    # --- the others -------------------------------------------------------------------------

    def get(self, job_id: str) -> BatchJob:
        """The job, or `Rejected` 404."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise _not_found(f"batches/{job_id}")
        return job

    def page(self, page_size: int | None, page_token: str | None) -> tuple[list[BatchJob], str]:
        """Newest first: one page of jobs and the token of the next page (``""`` at the end)."""
        size = min(page_size or _DEFAULT_PAGE_SIZE, _MAX_PAGE_SIZE)
        before = self._decode_token(page_token) if page_token else None
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda job: job.sequence, reverse=True)
        if before is not None:
            jobs = [job for job in jobs if job.sequence < before]
        page, rest = jobs[:size], jobs[size:]
        token = self._encode_token(page[-1].sequence) if rest else ""
        return page, token

    @staticmethod
    def _encode_token(sequence: int) -> str:
        return base64.urlsafe_b64encode(f"before:{sequence}".encode()).decode().rstrip("=")

    @staticmethod
    def _decode_token(token: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            return int(raw.removeprefix("before:"))
        except ValueError:
            raise _invalid(f"Invalid page token: {token!r}.") from None

    def operation(self, job: BatchJob) -> dict[str, Any]:
        """The job as the API shows it now (an Operation)."""
        return job.operation(self._timeline.now())

    def cancel(self, job_id: str) -> None:
        """Cancel the job (a finished job is left as it is)."""
        self.get(job_id).cancel(self._timeline.now())

    def delete(self, job_id: str) -> None:
        """Forget the job. Like the API, this does not cancel it; it only stops reporting it."""
        self.get(job_id)
        with self._lock:
            self._jobs.pop(job_id, None)

    def stats(self) -> dict[str, Any]:
        """``creates`` (create requests seen), ``jobs_created``, ``jobs`` (by state, deleted
        ones excluded), ``lines`` (requests answered inside jobs) and ``line_outcomes``."""
        now = self._timeline.now()
        with self._lock:
            jobs = list(self._jobs.values())
            counters: dict[str, Any] = {
                "creates": self._creates,
                "jobs_created": self._created,
                "lines": self._lines,
                "line_outcomes": dict(self._line_outcomes),
            }
        by_state: dict[str, int] = {}
        for job in jobs:
            state = job.phase(now).state
            by_state[state] = by_state.get(state, 0) + 1
        return {**counters, "jobs": by_state}
