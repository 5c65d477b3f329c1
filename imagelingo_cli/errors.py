"""The error taxonomy: every way a variation can fail, as exactly one code.

Foreign failures are translated here, once, by table::

    Exception
    ├── SetupError                  the run cannot start: bad options, no key, unusable paths,
    │                               a base URL no request can go to (exit 2, nothing sent)
    └── TranslationError            one classified outcome (code, message, statuses, delay,
        │                           whether it may pass on a retry, the tokens a 200 billed)
        ├── classify_exception(exc)   whatever google-genai / httpx2 / json raised, looked up
        │                             in FOREIGN_EXCEPTIONS (the most specific class wins)
        ├── classify_status(status)   a google.rpc.Status inside a Batch API result (a line's
        │                             error, a failed job's error): gRPC or HTTP code, GRPC_CODES
        ├── classify_answer(answer)   a 200 answer without an image, by FINISH_REASONS
        ├── output_error(path, exc)   the translated image could not be written
        └── raised by images.py for a local file that cannot be sent (INVALID_TYPE)

Whether a failure may pass on a retry (`is_retryable`) belongs to the classified error: most
codes decide it, but NO_IMAGE and SAFETY_BLOCKED depend on the answer's finish reason.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagelingo_cli.answers import Answer, Usage

__all__ = [
    "DEFAULT_AUTO_RETRY",
    "FINISH_REASONS",
    "GRPC_CODES",
    "ErrorCode",
    "SetupError",
    "TranslationError",
    "classify_answer",
    "classify_exception",
    "classify_status",
    "foreign_exceptions",
    "output_error",
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
    OUTPUT_ERROR = "OUTPUT_ERROR"

    @property
    def label(self) -> str:
        """The code in words, as the user reads it: RATE_LIMIT -> "Rate Limit"."""
        return self.value.replace("_", " ").title()

    @property
    def transient(self) -> bool:
        """Whether a failure with this code may pass on a retry, unless its answer says
        otherwise (TranslationError.transient is what is stored)."""
        return self in _TRANSIENT

    @property
    def can_be_transient(self) -> bool:
        """Whether some failures with this code may pass on a retry (those may be auto-retried)."""
        return self in _TRANSIENT or self in _BY_ANSWER

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
        ErrorCode.OUTPUT_ERROR,
    }
)
# Codes whose retryability the finish reason decides (FINISH_REASONS).
_BY_ANSWER = frozenset({ErrorCode.NO_IMAGE, ErrorCode.SAFETY_BLOCKED})

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
    retryable: bool | None = None  # None: as the code says
    usage: Usage | None = field(default=None, repr=False)  # a 200 answer is billed too
    quota_per_minute: int | None = None  # a 429's stated per-minute request quota
    stops_run: bool = False  # every later variation would fail the same way (a full disk)

    def __post_init__(self) -> None:
        super().__init__(f"{self.code.label}: {self.message}")

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed (stored as `is_retryable`)."""
        return self.code.transient if self.retryable is None else self.retryable

    @property
    def is_global(self) -> bool:
        """Whether the rest of the run is not sent: the code belongs to the whole project, or
        this failure would meet every later variation (sending more only spends credits)."""
        return self.code.is_global or self.stops_run


# --- foreign exceptions --------------------------------------------------------------------

Classifier = Callable[[Any], "TranslationError | SetupError"]


def classify_exception(exc: Exception) -> TranslationError | SetupError:
    """Exactly one classified error for whatever an attempt raised. Never raises."""
    if isinstance(exc, TranslationError | SetupError):
        return exc
    table = foreign_exceptions()
    try:
        owner = next(kind for kind in type(exc).__mro__ if kind in table)
        return table[owner](exc)
    except Exception as inner:  # a classifier bug must not lose the original failure
        return TranslationError(ErrorCode.API_ERROR, f"{_describe(exc)} (unclassified: {inner})")


@cache
def foreign_exceptions() -> Mapping[type[BaseException], Classifier]:
    """Every exception google-genai, its httpx2 transport and the answer reader can raise, and
    what it means. Each class the two libraries export is listed (a test checks it), so a new
    one is decided here rather than falling through. Imported on first use: the read commands
    must start without google-genai."""
    import binascii
    import json

    import httpx2
    import pydantic
    from google.genai import errors as genai

    timeout = _as(ErrorCode.TIMEOUT)
    network = _as(ErrorCode.NETWORK_ERROR)
    unexpected = _as(ErrorCode.API_ERROR)
    return {
        # google-genai: an HTTP error answer, with the API's code, status and message
        genai.APIError: _api_error,
        genai.ClientError: _api_error,
        genai.ServerError: _api_error,
        genai.UnknownApiResponseError: _malformed,
        # function calling and continuations, which image requests never use
        genai.UnknownFunctionCallArgumentError: unexpected,
        genai.UnsupportedFunctionError: unexpected,
        genai.FunctionInvocationError: unexpected,
        genai.ContinuationInterruptedError: unexpected,
        # httpx2, the transport the adapter pins
        httpx2.HTTPError: unexpected,
        httpx2.RequestError: unexpected,
        httpx2.TransportError: network,
        httpx2.TimeoutException: timeout,
        httpx2.ConnectTimeout: timeout,
        httpx2.ReadTimeout: timeout,
        httpx2.WriteTimeout: timeout,
        httpx2.PoolTimeout: timeout,
        httpx2.NetworkError: network,
        httpx2.ConnectError: network,
        httpx2.ReadError: network,
        httpx2.WriteError: network,
        httpx2.CloseError: network,
        httpx2.ProtocolError: network,
        httpx2.RemoteProtocolError: network,  # disconnected, or a body cut short
        httpx2.ProxyError: network,
        httpx2.LocalProtocolError: unexpected,  # httpx2 refused to send what it was given
        httpx2.UnsupportedProtocol: _bad_base_url,
        httpx2.InvalidURL: _bad_base_url,
        httpx2.DecodingError: _malformed,
        httpx2.TooManyRedirects: unexpected,
        httpx2.HTTPStatusError: unexpected,
        httpx2.CookieConflict: unexpected,
        httpx2.StreamError: unexpected,
        httpx2.RequestNotRead: unexpected,
        httpx2.ResponseNotRead: unexpected,
        httpx2.StreamClosed: unexpected,
        httpx2.StreamConsumed: unexpected,
        httpx2.SSEError: unexpected,
        # the answer reader and the standard library
        json.JSONDecodeError: _not_json,
        binascii.Error: _bad_image_data,
        pydantic.ValidationError: _malformed,
        TimeoutError: _deadline,
        ConnectionError: network,
        Exception: unexpected,
    }


def _as(code: ErrorCode) -> Classifier:
    return lambda exc: TranslationError(code, _describe(exc))


def _deadline(exc: TimeoutError) -> TranslationError:
    return TranslationError(ErrorCode.TIMEOUT, str(exc) or "no answer within the deadline")


def _not_json(exc: Any) -> TranslationError:
    return TranslationError(
        ErrorCode.API_ERROR, f"the answer was not JSON ({exc.msg} at char {exc.pos})"
    )


def _bad_image_data(exc: Exception) -> TranslationError:
    return TranslationError(
        ErrorCode.API_ERROR, f"the image data in the answer is not base64: {exc}"
    )


def _malformed(exc: Exception) -> TranslationError:
    return TranslationError(ErrorCode.API_ERROR, f"malformed answer: {_first_line(str(exc))}")


def _bad_base_url(exc: Exception) -> SetupError:
    return SetupError(f"the API base URL cannot be used: {exc}")


_RETRY_IN = re.compile(r"retry in\s+([0-9]+(?:\.[0-9]+)?)\s*s", re.IGNORECASE)
_CONFIG_400_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})


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


def _api_error(exc: Any) -> TranslationError:
    body: dict[str, Any] = exc.details if isinstance(exc.details, dict) else {}
    nested = body.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else body
    return _classified(
        exc.code if isinstance(exc.code, int) else None,
        exc.status if isinstance(exc.status, str) else None,
        exc.message if isinstance(exc.message, str) else "",
        error.get("details"),
    )


# google.rpc.Code -> (its canonical name, the HTTP status Google answers it with), from
# google/rpc/code.proto. A Batch API result may carry a Status with only the gRPC number.
GRPC_CODES: Mapping[int, tuple[str, int]] = {
    1: ("CANCELLED", 499),
    2: ("UNKNOWN", 500),
    3: ("INVALID_ARGUMENT", 400),
    4: ("DEADLINE_EXCEEDED", 504),
    5: ("NOT_FOUND", 404),
    6: ("ALREADY_EXISTS", 409),
    7: ("PERMISSION_DENIED", 403),
    8: ("RESOURCE_EXHAUSTED", 429),
    9: ("FAILED_PRECONDITION", 400),
    10: ("ABORTED", 409),
    11: ("OUT_OF_RANGE", 400),
    12: ("UNIMPLEMENTED", 501),
    13: ("INTERNAL", 500),
    14: ("UNAVAILABLE", 503),
    15: ("DATA_LOSS", 500),
    16: ("UNAUTHENTICATED", 401),
}
_LOWEST_HTTP_STATUS = 100  # below it, a Status code is a gRPC number


def classify_status(status: Mapping[str, Any]) -> TranslationError:
    """A google.rpc.Status `{code, message, status?, details?}` from inside a Batch API result,
    classified as the same answer to an interactive request would be. Its `code` is either
    the gRPC number (8, with no `status` string) or an HTTP status (429 RESOURCE_EXHAUSTED)."""
    code = status.get("code")
    named = status.get("status") if isinstance(status.get("status"), str) else None
    http_status: int | None = None
    if isinstance(code, int) and not isinstance(code, bool):
        if code >= _LOWEST_HTTP_STATUS:
            http_status = code
        elif code in GRPC_CODES:
            canonical, http_status = GRPC_CODES[code]
            named = named or canonical
    message = status.get("message")
    return _classified(
        http_status, named, message if isinstance(message, str) else "", status.get("details")
    )


def _classified(
    http_status: int | None, api_status: str | None, message: str, listed: object
) -> TranslationError:
    """An error answer of the API, by its HTTP status, API status, message and details."""
    if not message:
        message = f"HTTP {http_status} {api_status or ''}".strip() + " with an empty body"
    message = message.strip()
    details: list[Any] = listed if isinstance(listed, list) else []
    retry_after_ms = _retry_delay_ms(details, message)
    quota = _per_minute_quota(details) if http_status == 429 else None

    def make(code: ErrorCode) -> TranslationError:
        return TranslationError(
            code, message, http_status, api_status, retry_after_ms, quota_per_minute=quota
        )

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


# --- 200 answers without an image ----------------------------------------------------------

# finishReason -> (code, may pass on a retry). IMAGE_OTHER ("you will not be charged"),
# IMAGE_RECITATION (an identical request later passed), MAX_TOKENS and OTHER are not the
# request's fault; none is retried automatically unless configured. Any other reason (STOP
# with text only, NO_IMAGE, one this version does not know) is NO_IMAGE, permanent.
_BLOCKED = (ErrorCode.SAFETY_BLOCKED, False)
FINISH_REASONS: Mapping[str, tuple[ErrorCode, bool]] = {
    "IMAGE_OTHER": (ErrorCode.NO_IMAGE, True),
    "OTHER": (ErrorCode.NO_IMAGE, True),
    "MAX_TOKENS": (ErrorCode.NO_IMAGE, True),
    "IMAGE_RECITATION": (ErrorCode.SAFETY_BLOCKED, True),
    "SAFETY": _BLOCKED,
    "IMAGE_SAFETY": _BLOCKED,
    "PROHIBITED_CONTENT": _BLOCKED,
    "IMAGE_PROHIBITED_CONTENT": _BLOCKED,
    "BLOCKLIST": _BLOCKED,
    "SPII": _BLOCKED,
    "RECITATION": _BLOCKED,
    "JAILBREAK": _BLOCKED,
    "MODEL_ARMOR": _BLOCKED,
}


def classify_answer(answer: Answer) -> TranslationError:
    """Why a 200 answer holds no image, in Google's own words where it gave some (the
    candidate's finishMessage, with its support code), with the tokens it was billed."""
    usage = answer.usage
    if answer.block_reason is not None:  # the request itself was refused: always permanent
        said = answer.block_message or "the request was blocked"
        return TranslationError(
            ErrorCode.SAFETY_BLOCKED,
            f"{answer.block_reason}: {said}",
            200,
            answer.block_reason,
            retryable=False,
            usage=usage,
        )
    if not answer.candidates:
        return TranslationError(
            ErrorCode.NO_IMAGE,
            "the answer held no candidates (empty or unreadable body)",
            200,
            usage=usage,
        )
    candidate = next((c for c in answer.candidates if c.finish_reason), answer.candidates[0])
    reason = candidate.finish_reason or "STOP"
    code, retryable = FINISH_REASONS.get(reason, (ErrorCode.NO_IMAGE, False))
    # Google's finishMessage is kept whole: its support code comes last.
    said = (candidate.finish_message or "").strip() or _first_line(" ".join(candidate.texts), 300)
    if code is ErrorCode.SAFETY_BLOCKED:
        message = f"{reason}: {said or 'the output was blocked'}"
    else:
        message = f"{reason}, no image in the answer" + (f": {said}" if said else "")
    return TranslationError(code, message, 200, reason, retryable=retryable, usage=usage)


# --- writing the output --------------------------------------------------------------------


# A full disk, a quota reached or a read-only file system: no later output can be written.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def output_error(path: object, exc: Exception, usage: Usage | None = None) -> TranslationError:
    """The translated image could not be written: the system's reason and errno first (they
    survive where a long message is cut), then where."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, "")
        reason = f"{exc.strerror or exc} (errno {exc.errno}{' ' + name if name else ''})"
    else:
        reason = str(exc) or type(exc).__name__
    return TranslationError(
        ErrorCode.OUTPUT_ERROR,
        f"{reason}: the translated image could not be written to {path}",
        usage=usage,
        stops_run=isinstance(exc, OSError) and exc.errno in _NO_ROOM,
    )


# --- helpers -------------------------------------------------------------------------------


def _first_line(text: str, limit: int = 500) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
