"""The error taxonomy: every way a variation can fail, as exactly one code.

Foreign failures are translated here, once::

    Exception
    ├── SetupError                  the run cannot start: bad options, no key, unusable paths (exit 2)
    └── TranslationError            one classified outcome (code, message, statuses, delay)
        ├── raised by gemini.translate() for whatever google-genai / httpx2 / json raised,
        │   or for a 200 answer that holds no image (classify_response)
        └── raised by images.py for a local file that cannot be sent (INVALID_TYPE)

    classify_exception(exc) -> TranslationError   (never raises, unknown -> API_ERROR)
    classify_response(resp) -> TranslationError | None   (None: the answer has an image)
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_AUTO_RETRY",
    "ErrorCode",
    "SetupError",
    "TranslationError",
    "classify_exception",
    "classify_response",
    "parse_duration_ms",
]


class ErrorCode(StrEnum):
    RATE_LIMIT = "RATE_LIMIT"
    QUOTA_EXHAUSTED = "QUOTA_EXHAUSTED"
    TIMEOUT = "TIMEOUT"
    SERVER_ERROR = "SERVER_ERROR"
    NETWORK_ERROR = "NETWORK_ERROR"
    CONFIG_ERROR = "CONFIG_ERROR"
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_TYPE = "INVALID_TYPE"
    NO_IMAGE = "NO_IMAGE"
    SAFETY_BLOCKED = "SAFETY_BLOCKED"
    API_ERROR = "API_ERROR"

    @property
    def label(self) -> str:
        """The code in words, as the user reads it: RATE_LIMIT -> "Rate Limit"."""
        return self.value.replace("_", " ").title()

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (the approved `is_retryable`)."""
        return self in _TRANSIENT

    @property
    def is_global(self) -> bool:
        """Whether the failure belongs to the whole project, so the rest of a run is not sent."""
        return self in (ErrorCode.CONFIG_ERROR, ErrorCode.QUOTA_EXHAUSTED)


_TRANSIENT = frozenset(
    {
        ErrorCode.RATE_LIMIT,
        ErrorCode.QUOTA_EXHAUSTED,
        ErrorCode.TIMEOUT,
        ErrorCode.SERVER_ERROR,
        ErrorCode.NETWORK_ERROR,
        ErrorCode.API_ERROR,
    }
)

# Approved requirement 1: only these are retried automatically unless configured otherwise.
DEFAULT_AUTO_RETRY = frozenset({ErrorCode.RATE_LIMIT, ErrorCode.TIMEOUT})


class SetupError(Exception):
    """The run cannot start; nothing was sent. The message is one line saying why and what to do."""


@dataclass(eq=False)
class TranslationError(Exception):
    """One failed attempt, classified. `message` is the API's own text where there is one."""

    code: ErrorCode
    message: str
    http_status: int | None = None
    api_status: str | None = None
    retry_after_ms: int | None = None
    quota_per_minute: int | None = None  # a 429's stated per-minute request quota

    def __post_init__(self) -> None:
        super().__init__(f"{self.code.label}: {self.message}")

    @property
    def transient(self) -> bool:
        return self.code.transient


# --- exceptions ---------------------------------------------------------------------------

_RETRY_IN = re.compile(r"retry in\s+([0-9]+(?:\.[0-9]+)?)\s*s", re.IGNORECASE)
_CONFIG_400_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
_SAFETY_REASONS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "JAILBREAK",
        "MODEL_ARMOR",
    }
)


def parse_duration_ms(value: object) -> int | None:
    """A protobuf Duration ("17s", "38.601s") or a number of seconds, in milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value) * 1000)
    if isinstance(value, str):
        try:
            return round(float(value.strip().removesuffix("s")) * 1000)
        except ValueError:
            return None
    return None


def classify_exception(exc: BaseException) -> TranslationError:
    """Turn whatever one attempt raised into exactly one classified error. Never raises."""
    if isinstance(exc, TranslationError):
        return exc
    try:
        return _classify(exc)
    except Exception as inner:  # a classifier bug must not lose the original failure
        return TranslationError(ErrorCode.API_ERROR, f"{_describe(exc)} (unclassified: {inner})")


def _classify(exc: BaseException) -> TranslationError:
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        return _classify_api_error(exc)
    if isinstance(exc, TimeoutError):
        return TranslationError(
            ErrorCode.TIMEOUT, _describe(exc) or "no answer within the deadline"
        )
    if isinstance(exc, json.JSONDecodeError):
        return TranslationError(
            ErrorCode.API_ERROR, f"the answer was not JSON ({exc.msg} at char {exc.pos})"
        )

    transport = _classify_transport(exc)
    if transport is not None:
        return transport

    import pydantic

    if isinstance(exc, pydantic.ValidationError):
        return TranslationError(ErrorCode.API_ERROR, f"malformed answer: {_first_line(str(exc))}")
    return TranslationError(ErrorCode.API_ERROR, _describe(exc))


def _classify_transport(exc: BaseException) -> TranslationError | None:
    """httpx2 errors (our pinned transport), plus aiohttp's in case a caller uses it."""
    import httpx2

    if isinstance(exc, httpx2.TimeoutException):
        return TranslationError(ErrorCode.TIMEOUT, _describe(exc) or type(exc).__name__)
    if isinstance(exc, httpx2.TransportError):  # connect, read/write, protocol, proxy errors
        return TranslationError(ErrorCode.NETWORK_ERROR, _describe(exc) or type(exc).__name__)
    module = type(exc).__module__ or ""
    if module.startswith("aiohttp"):
        return TranslationError(ErrorCode.NETWORK_ERROR, _describe(exc))
    if isinstance(exc, ConnectionError):
        return TranslationError(ErrorCode.NETWORK_ERROR, _describe(exc))
    return None


def _classify_api_error(exc: Any) -> TranslationError:
    http_status: int | None = exc.code if isinstance(exc.code, int) else None
    body: dict[str, Any] = exc.details if isinstance(exc.details, dict) else {}
    nested = body.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else body
    api_status = exc.status if isinstance(exc.status, str) else None
    message = exc.message if isinstance(exc.message, str) and exc.message else ""
    if not message:
        message = f"HTTP {http_status} {api_status or ''}".strip() + " with an empty body"
    message = message.strip()
    listed = error.get("details")
    details: list[Any] = listed if isinstance(listed, list) else []
    retry_after_ms = _retry_delay_ms(details, message)
    quota = _per_minute_quota(details) if http_status == 429 else None

    def make(code: ErrorCode) -> TranslationError:
        return TranslationError(code, message, http_status, api_status, retry_after_ms, quota)

    reasons = {d.get("reason") for d in details if isinstance(d, dict) and d.get("reason")}
    if http_status == 429:
        return make(
            ErrorCode.QUOTA_EXHAUSTED if _quota_gone(details, message) else ErrorCode.RATE_LIMIT
        )
    if http_status == 402:
        return make(ErrorCode.QUOTA_EXHAUSTED)
    if http_status in (408, 504):
        return make(ErrorCode.TIMEOUT)
    if http_status in (500, 502, 503):
        return make(ErrorCode.SERVER_ERROR)
    if http_status in (401, 403, 404):
        return make(ErrorCode.CONFIG_ERROR)
    if http_status == 400:
        if api_status == "FAILED_PRECONDITION" or reasons & _CONFIG_400_REASONS:
            return make(ErrorCode.CONFIG_ERROR)
        if "api key" in message.lower():
            return make(ErrorCode.CONFIG_ERROR)
        return make(ErrorCode.INVALID_REQUEST)
    if http_status is not None and 400 <= http_status < 500:
        return make(ErrorCode.INVALID_REQUEST if http_status in (413, 422) else ErrorCode.API_ERROR)
    if http_status is not None and http_status >= 500:
        return make(ErrorCode.SERVER_ERROR)
    return make(ErrorCode.API_ERROR)


def _quota_gone(details: list[Any], message: str) -> bool:
    """A 429 that will not clear within minutes: a per-day quota, `limit: 0`, or no prepay credit."""
    lowered = message.lower()
    if "limit: 0" in lowered or "prepayment credits are depleted" in lowered:
        return True
    for violation in _quota_violations(details):
        quota = f"{violation.get('quotaId', '')} {violation.get('quotaMetric', '')}"
        if "PerDay" in quota or "per_day" in quota.lower():
            return True
    return False


def _quota_violations(details: list[Any]) -> Iterator[dict[str, Any]]:
    """The violations listed by the QuotaFailure details of an error body."""
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("QuotaFailure"):
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict):
                    yield violation


def _per_minute_quota(details: list[Any]) -> int | None:
    """The requests-per-minute limit a 429's QuotaFailure names (a `...PerMinute...` quota
    counting requests; token quotas say nothing about how often to send), or None."""
    limits: list[int] = []
    for violation in _quota_violations(details):
        quota_id = str(violation.get("quotaId", ""))
        if "PerMinute" in quota_id and "Token" not in quota_id:
            with contextlib.suppress(ValueError):
                limits.append(int(str(violation.get("quotaValue"))))
    positive = [limit for limit in limits if limit > 0]
    return min(positive) if positive else None


def _retry_delay_ms(details: list[Any], message: str) -> int | None:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            parsed = parse_duration_ms(detail.get("retryDelay"))
            if parsed is not None:
                return parsed
    match = _RETRY_IN.search(message)
    return round(float(match.group(1)) * 1000) if match else None


# --- 200 answers ---------------------------------------------------------------------------


def classify_response(response: Any) -> TranslationError | None:
    """Why a 200 `GenerateContentResponse` holds no usable image, or None when it holds one."""
    feedback = getattr(response, "prompt_feedback", None)
    block = getattr(feedback, "block_reason", None)
    if block is not None:
        reason = _enum_name(block)
        text = getattr(feedback, "block_reason_message", None) or "the request was blocked"
        return TranslationError(ErrorCode.SAFETY_BLOCKED, f"{reason}: {text}", 200, reason)

    candidates = getattr(response, "candidates", None) or []
    if not candidates:
        return TranslationError(
            ErrorCode.NO_IMAGE, "the answer held no candidates (empty or unreadable body)", 200
        )
    texts: list[str] = []
    finish_reasons: list[str] = []
    for candidate in candidates:
        reason = _enum_name(getattr(candidate, "finish_reason", None))
        if reason:
            finish_reasons.append(reason)
        content = getattr(candidate, "content", None)
        for part in getattr(content, "parts", None) or []:
            if getattr(part, "thought", False):
                continue
            data = getattr(part, "inline_data", None)
            mime = str(getattr(data, "mime_type", None) or "")
            if mime.startswith("image/") and getattr(data, "data", None):
                return None
            if getattr(part, "text", None):
                texts.append(str(part.text).strip())
        if reason in _SAFETY_REASONS:
            finish = getattr(candidate, "finish_message", None) or "the output was blocked"
            return TranslationError(ErrorCode.SAFETY_BLOCKED, f"{reason}: {finish}", 200, reason)

    reason = finish_reasons[0] if finish_reasons else "STOP"
    finish_message = getattr(candidates[0], "finish_message", None)
    said = finish_message or (" ".join(texts) if texts else "")
    detail = f": {_first_line(said, 300)}" if said else ""
    return TranslationError(
        ErrorCode.NO_IMAGE, f"{reason}, no image in the answer{detail}", 200, reason
    )


# --- helpers -------------------------------------------------------------------------------


def _enum_name(value: object) -> str:
    if value is None:
        return ""
    name = getattr(value, "name", None) or getattr(value, "value", None) or value
    return str(name)


def _first_line(text: str, limit: int = 500) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
