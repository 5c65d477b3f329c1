"""Scripted Batch API behaviour: the ``batch`` section of a scenario.

::

    {"rules": [...],
     "batch": {
       "pending": 2, "running": 10,
       "upload_status_missing": 1,
       "jobs": [
         {"display_name": "nightly-*", "ending": "expired"},
         {"create": ["enqueued_tokens"]},
         {"input": "file", "get": ["unavailable"], "output_delay": 30},
         {"ending": "failed", "error": {"code": 13, "message": "Batch failed."}}
       ]}}

``pending``/``running``: seconds a job spends in PENDING, then RUNNING, before it ends
(default: the simulator's ``batch_pending``/``batch_running``). ``upload_status_missing``: the
first N upload chunk replies lack the ``X-Goog-Upload-Status`` header (the SDK sleeps 1 s, 2 s,
4 s and resends the chunk).

Each job is matched, when created, against ``jobs`` in order; the first rule whose criteria all
hold scripts it (no match: a plain job that succeeds). Criteria: ``display_name`` (an
`fnmatch` pattern), ``model`` (``gemini-2.5-flash-image``), ``input`` (``file`` or ``inline``).
What a rule scripts:

* ``create``: answers to the create requests it matches, in arrival order, before one is
  accepted: ``enqueued_tokens`` (429 RESOURCE_EXHAUSTED for the batch token quota),
  ``unavailable`` (503), or an HTTP fault of the interactive catalogue (``internal``,
  ``reset``, ``bad_key``… see `HTTP_FAULTS`).
* ``get``: answers to the job's first GETs, the same kinds as ``create``.
* ``pending``, ``running``: this job's timing.
* ``ending``: ``succeeded`` (default), ``failed`` (top-level ``error``, no output), ``expired``
  (no output), ``unknown`` (``BATCH_STATE_SOMETHING_NEW`` for ever, never done).
* ``error``: ``{"code", "message"}`` of a failed job.
* ``output``: ``auto`` (default: a responses file for file input, inline responses for inline
  input), ``inline`` (inline responses even for file input, as Google does for small jobs),
  ``none`` (SUCCEEDED without any output).
* ``output_delay``: seconds after the end during which the responses file answers 404.
* ``status_details``: true puts ``details`` objects (``[{"@type": …}]``) in line errors and the
  job error, which google-genai's ``JobError.details: list[str]`` cannot parse.
* ``status_codes``: ``http`` (default: ``{"code": 429, "status": "RESOURCE_EXHAUSTED"}``) or
  ``grpc`` (``{"code": 8}`` with no status string) in line errors.
* ``error_field``: ``error`` (default) or ``status``: the key of a failed line in the file.
* ``echo_metadata``: false drops the request ``metadata`` from inline responses.
* ``order``: ``input`` (default), ``reversed``: the results come back in the reverse order
  of the requests (Google does not keep their order), or ``repeated``: all the results twice
  over (nothing promises a key appears once), in the file and inline.

`parse_batch_script` validates it all and raises ValueError naming the problem.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from imagelingo_cli.simulator.faults import FaultSpec, parse_fault
from imagelingo_cli.simulator.fields import optional_model, optional_text, reject_unknown

__all__ = [
    "DEFAULT_JOB_RULE",
    "HTTP_FAULTS",
    "JOB_FAULTS",
    "BatchScript",
    "JobRule",
    "parse_batch_script",
]

# Faults from the interactive catalogue that make sense as the answer to a job request.
HTTP_FAULTS = frozenset(
    {
        "rate_limit",
        "rate_limit_plain",
        "quota_daily",
        "quota_zero",
        "prepay_depleted",
        "overloaded",
        "internal",
        "deadline",
        "bad_gateway_html",
        "empty_503",
        "bad_key",
        "permission_denied",
        "location",
        "invalid_argument",
        "teapot",
        "invalid_json",
        "reset",
        "disconnect",
    }
)
# Faults only the batch endpoints answer (bodies in `batch_jobs`).
JOB_FAULTS = frozenset({"enqueued_tokens", "unavailable"})

Ending = Literal["succeeded", "failed", "expired", "unknown"]
_ENDINGS = ("succeeded", "failed", "expired", "unknown")
_OUTPUTS = ("auto", "inline", "none")
_TOP_FIELDS = frozenset({"pending", "running", "upload_status_missing", "jobs", "description"})
_CRITERIA = frozenset({"display_name", "model", "input"})
_RULE_FIELDS = _CRITERIA | {
    "create",
    "get",
    "pending",
    "running",
    "ending",
    "error",
    "output",
    "output_delay",
    "status_details",
    "status_codes",
    "error_field",
    "echo_metadata",
    "order",
    "description",
}
_DEFAULT_ERROR_CODE = 13  # INTERNAL
_DEFAULT_ERROR_MESSAGE = "The batch failed: an internal error occurred while processing it."


@dataclass(frozen=True)
class JobRule:
    """How the jobs matching the criteria (None = any) behave."""

    index: int
    display_name: str | None = None
    model: str | None = None
    input: Literal["file", "inline"] | None = None
    create: tuple[FaultSpec, ...] = ()
    get: tuple[FaultSpec, ...] = ()
    pending: float | None = None
    running: float | None = None
    ending: Ending = "succeeded"
    error_code: int = _DEFAULT_ERROR_CODE
    error_message: str = _DEFAULT_ERROR_MESSAGE
    output: Literal["auto", "inline", "none"] = "auto"
    output_delay: float = 0.0
    status_details: bool = False
    status_codes: Literal["http", "grpc"] = "http"
    error_field: Literal["error", "status"] = "error"
    echo_metadata: bool = True
    order: Literal["input", "reversed", "repeated"] = "input"

    @property
    def source(self) -> str:
        """``batch.jobs[i]``, or ``default`` for jobs no rule matched."""
        return f"batch.jobs[{self.index}]" if self.index >= 0 else "default"

    def matches(self, display_name: str | None, model: str, input_kind: str) -> bool:
        """Whether every criterion this rule gives holds for a job being created."""
        if self.display_name is not None and not fnmatch.fnmatchcase(
            display_name or "", self.display_name
        ):
            return False
        if self.model is not None and self.model != model:
            return False
        return self.input is None or self.input == input_kind


DEFAULT_JOB_RULE = JobRule(index=-1)


@dataclass(frozen=True)
class BatchScript:
    """The validated ``batch`` section (empty: plain jobs on the simulator's timing)."""

    pending: float | None = None
    running: float | None = None
    upload_status_missing: int = 0
    jobs: tuple[JobRule, ...] = ()

    def rule_for(self, display_name: str | None, model: str, input_kind: str) -> JobRule:
        """The first job rule matching a job being created, or `DEFAULT_JOB_RULE`."""
        return next(
            (rule for rule in self.jobs if rule.matches(display_name, model, input_kind)),
            DEFAULT_JOB_RULE,
        )


def parse_batch_script(raw: object, where: str) -> BatchScript:
    """Validate a scenario's ``batch`` section. Raises ValueError."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be an object, got {raw!r}")
    reject_unknown(raw, _TOP_FIELDS, where)
    jobs_raw = raw.get("jobs", [])
    if not isinstance(jobs_raw, list):
        raise ValueError(f'{where}: "jobs" must be a list')
    missing = raw.get("upload_status_missing", 0)
    if isinstance(missing, bool) or not isinstance(missing, int) or missing < 0:
        raise ValueError(f'{where}: "upload_status_missing" must be an integer >= 0')
    return BatchScript(
        pending=_seconds(raw, "pending", where),
        running=_seconds(raw, "running", where),
        upload_status_missing=missing,
        jobs=tuple(_job_rule(i, job, f"{where}.jobs[{i}]") for i, job in enumerate(jobs_raw)),
    )


def _job_rule(index: int, raw: object, where: str) -> JobRule:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a job rule must be an object, got {raw!r}")
    reject_unknown(raw, _RULE_FIELDS, where)
    return JobRule(
        index=index,
        display_name=optional_text(raw, "display_name", where),
        model=optional_model(raw, where),
        input=_choice(raw, "input", ("file", "inline"), None, where),
        create=_answers(raw, "create", where),
        get=_answers(raw, "get", where),
        pending=_seconds(raw, "pending", where),
        running=_seconds(raw, "running", where),
        ending=_choice(raw, "ending", _ENDINGS, "succeeded", where),
        error_code=_job_error(raw, where).get("code", _DEFAULT_ERROR_CODE),
        error_message=_job_error(raw, where).get("message", _DEFAULT_ERROR_MESSAGE),
        output=_choice(raw, "output", _OUTPUTS, "auto", where),
        output_delay=_seconds(raw, "output_delay", where) or 0.0,
        status_details=_flag(raw, "status_details", False, where),
        status_codes=_choice(raw, "status_codes", ("http", "grpc"), "http", where),
        error_field=_choice(raw, "error_field", ("error", "status"), "error", where),
        echo_metadata=_flag(raw, "echo_metadata", True, where),
        order=_choice(raw, "order", ("input", "reversed", "repeated"), "input", where),
    )


def _answers(raw: Mapping[str, Any], field: str, where: str) -> tuple[FaultSpec, ...]:
    specs = raw.get(field, [])
    if not isinstance(specs, list):
        raise ValueError(f'{where}: "{field}" must be a list of faults')
    return tuple(_job_fault(spec, f"{where}.{field}[{i}]") for i, spec in enumerate(specs))


def _job_fault(spec: object, where: str) -> FaultSpec:
    if spec in JOB_FAULTS:
        return FaultSpec(str(spec))
    fault = parse_fault(spec, where)
    if fault.name not in HTTP_FAULTS:
        known = ", ".join(sorted(HTTP_FAULTS | JOB_FAULTS))
        raise ValueError(f"{where}: {fault.name!r} is not a job request fault (known: {known})")
    return fault


def _seconds(raw: Mapping[str, Any], field: str, where: str) -> float | None:
    if field not in raw:
        return None
    value = raw[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f'{where}: "{field}" must be a number of seconds >= 0, got {value!r}')
    return float(value)


def _choice(
    raw: Mapping[str, Any], field: str, choices: tuple[str, ...], default: Any, where: str
) -> Any:
    value = raw.get(field, default)
    if value != default and value not in choices:
        raise ValueError(f'{where}: "{field}" must be one of {", ".join(choices)}, got {value!r}')
    return value


def _flag(raw: Mapping[str, Any], field: str, default: bool, where: str) -> bool:
    value = raw.get(field, default)
    if not isinstance(value, bool):
        raise ValueError(f'{where}: "{field}" must be true or false, got {value!r}')
    return value


def _job_error(raw: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    value = raw.get("error", {})
    if (
        not isinstance(value, dict)
        or set(value) - {"code", "message"}
        or isinstance(value.get("code"), bool)
        or not isinstance(value.get("code", 0), int)
        or not isinstance(value.get("message", ""), str)
    ):
        raise ValueError(f'{where}: "error" must be {{"code": int, "message": str}}, got {value!r}')
    return value
