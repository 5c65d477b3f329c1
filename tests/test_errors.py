"""The classifier against directly constructed google-genai / httpx2 exceptions and raw
answer bodies, and the completeness of its table of foreign exceptions."""

from __future__ import annotations

import inspect
import json

import httpx2
import pydantic
import pytest
from google.genai import errors, types

from imagelingo_cli.answers import read_answer
from imagelingo_cli.errors import (
    DEFAULT_AUTO_RETRY,
    GRPC_CODES,
    ErrorCode,
    SetupError,
    TranslationError,
    classify_answer,
    classify_exception,
    classify_status,
    foreign_exceptions,
    output_error,
    parse_duration_ms,
)
from imagelingo_cli.retry import RetryPolicy


def api_error(
    code: int, status: str | None, message: str, details: list[object] | None = None
) -> errors.APIError:
    body: dict[str, object] = {"code": code, "message": message}
    if status is not None:
        body["status"] = status
    if details is not None:
        body["details"] = details
    cls = errors.ClientError if code < 500 else errors.ServerError
    return cls(code, {"error": body})


def quota(quota_id: str, delay: str | None = "17s") -> list[object]:
    found: list[object] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": "generate_requests", "quotaId": quota_id}],
        }
    ]
    if delay:
        found.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return found


def test_labels_and_transient_flags_follow_the_product_table() -> None:
    """Labels are the code in words; transient codes are exactly the product's, and NO_IMAGE
    and SAFETY_BLOCKED may be transient depending on the answer."""
    assert ErrorCode.RATE_LIMIT.label == "Rate Limit"
    assert ErrorCode.CONFIG_ERROR.label == "Config Error"
    assert ErrorCode.NO_IMAGE.label == "No Image"
    assert ErrorCode.OUTPUT_ERROR.label == "Output Error"
    transient = {c for c in ErrorCode if c.transient}
    assert transient == {
        ErrorCode.RATE_LIMIT,
        ErrorCode.QUOTA_EXHAUSTED,
        ErrorCode.TIMEOUT,
        ErrorCode.SERVER_ERROR,
        ErrorCode.NETWORK_ERROR,
        ErrorCode.API_ERROR,
        ErrorCode.OUTPUT_ERROR,
    }
    sometimes = {c for c in ErrorCode if c.can_be_transient} - transient
    assert sometimes == {ErrorCode.NO_IMAGE, ErrorCode.SAFETY_BLOCKED}
    assert {ErrorCode.RATE_LIMIT, ErrorCode.TIMEOUT} == DEFAULT_AUTO_RETRY


def test_retryability_belongs_to_the_error_not_only_its_code() -> None:
    """An error may say it can pass on a retry whatever its code's default."""
    assert not TranslationError(ErrorCode.NO_IMAGE, "NO_IMAGE").transient
    assert TranslationError(ErrorCode.NO_IMAGE, "IMAGE_OTHER", retryable=True).transient
    assert not TranslationError(ErrorCode.API_ERROR, "odd", retryable=False).transient


def exported_exceptions(module: object) -> set[type[Exception]]:
    """The exception classes a module offers (its __all__, or every public name); warnings
    are not raised, so they are not among them."""
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    found = [getattr(module, name) for name in names]
    return {
        kind
        for kind in found
        if inspect.isclass(kind) and issubclass(kind, Exception) and not issubclass(kind, Warning)
    }


def test_every_exception_google_genai_and_httpx2_export_is_mapped() -> None:
    """Each exception class google.genai.errors and httpx2 export has its own entry in the
    table, so a new one in an upgrade fails here instead of falling through unclassified."""
    exported = exported_exceptions(errors) | exported_exceptions(httpx2)
    own = {kind for kind in exported if kind.__module__.startswith(("google.genai", "httpx2"))}
    assert len(own) > 30  # both libraries were really enumerated
    unmapped = sorted(kind.__name__ for kind in own if kind not in foreign_exceptions())
    assert unmapped == [], f"unmapped exceptions: {unmapped}"


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.InvalidURL("Invalid port: ':1'"),
        httpx2.UnsupportedProtocol("Request URL is missing an 'http://' or 'https://' protocol."),
    ],
)
def test_a_url_no_request_can_go_to_is_a_setup_error(exc: Exception) -> None:
    """A malformed base URL is the user's setup, not a failed attempt."""
    error = classify_exception(exc)
    assert isinstance(error, SetupError)
    assert "base URL" in str(error) and str(exc) in str(error)


def test_the_most_specific_entry_wins() -> None:
    """A subclass without an entry of its own takes its nearest mapped ancestor's code."""

    class NewTimeout(httpx2.ReadTimeout):
        pass

    class NewDisconnect(httpx2.RemoteProtocolError):
        pass

    assert classify_exception(NewTimeout("slow")).code is ErrorCode.TIMEOUT
    assert classify_exception(NewDisconnect("gone")).code is ErrorCode.NETWORK_ERROR


def test_a_write_failure_is_an_output_error_with_path_and_errno() -> None:
    """The disk refusing the output is OUTPUT_ERROR, transient, saying where and why."""
    error = output_error("/out/a.es.v1.png", OSError(28, "No space left on device"))
    assert (error.code, error.transient) == (ErrorCode.OUTPUT_ERROR, True)
    assert error.message.startswith("No space left on device (errno 28 ENOSPC): ")
    assert error.message.endswith(" /out/a.es.v1.png")
    assert error.is_global  # no later output could be written either: the run stops sending
    assert not output_error("/out/b.png", OSError(21, "Is a directory")).is_global


def test_only_a_long_rate_limit_delay_means_the_quota_is_gone() -> None:
    """A 429 asking for more than max_wait is QUOTA_EXHAUSTED; a 503 saying "retry in 90s" stays
    a SERVER_ERROR (it must not stop the run) and is not waited for either."""
    policy = RetryPolicy(max_wait=60, auto_retry_codes=frozenset({ErrorCode.SERVER_ERROR}))
    limited = classify_exception(api_error(429, "RESOURCE_EXHAUSTED", "Please retry in 90s."))
    busy = classify_exception(api_error(503, "UNAVAILABLE", "Overloaded. Please retry in 90s."))
    assert isinstance(limited, TranslationError) and isinstance(busy, TranslationError)
    assert policy.escalate(limited).code is ErrorCode.QUOTA_EXHAUSTED
    assert (busy.code, busy.retry_after_ms) == (ErrorCode.SERVER_ERROR, 90000)
    assert policy.escalate(busy) is busy
    assert not policy.retries(busy, 1)
    soon = classify_exception(api_error(503, "UNAVAILABLE", "Overloaded. Please retry in 9s."))
    assert isinstance(soon, TranslationError) and policy.retries(soon, 1)


def test_per_minute_429_is_rate_limit_with_the_retry_delay() -> None:
    """A per-minute 429 keeps RetryInfo's delay in milliseconds and the API's message."""
    exc = api_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota.",
        quota("GenerateRequestsPerMinutePerProjectPerModel", "17s"),
    )
    error = classify_exception(exc)
    assert (error.code, error.retry_after_ms, error.http_status) == (
        ErrorCode.RATE_LIMIT,
        17000,
        429,
    )
    assert error.api_status == "RESOURCE_EXHAUSTED"
    assert error.message == "You exceeded your current quota."


def test_retry_delay_from_the_message_when_no_retry_info() -> None:
    """'Please retry in 36.4s' in the message is the delay when RetryInfo is absent."""
    error = classify_exception(
        api_error(429, "RESOURCE_EXHAUSTED", "Quota hit. Please retry in 36.4s.")
    )
    assert (error.code, error.retry_after_ms) == (ErrorCode.RATE_LIMIT, 36400)


@pytest.mark.parametrize(
    ("message", "details"),
    [
        ("Quota exceeded.", quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "38s")),
        ("Quota exceeded for metric: x, limit: 0, model: gemini-2.5-flash-image", None),
        ("Your prepayment credits are depleted.", None),
    ],
)
def test_quota_gone_for_hours_is_quota_exhausted(
    message: str, details: list[object] | None
) -> None:
    """Per-day quota, limit: 0 and depleted prepay are QUOTA_EXHAUSTED, not RATE_LIMIT."""
    assert (
        classify_exception(api_error(429, "RESOURCE_EXHAUSTED", message, details)).code
        is ErrorCode.QUOTA_EXHAUSTED
    )


def test_402_is_quota_exhausted() -> None:
    """402 (prepay credits depleted) is QUOTA_EXHAUSTED and global."""
    error = classify_exception(
        api_error(402, "RESOURCE_EXHAUSTED", "Your prepayment credits are depleted.")
    )
    assert error.code is ErrorCode.QUOTA_EXHAUSTED and error.code.is_global


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        (
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            ErrorCode.CONFIG_ERROR,
        ),
        (
            400,
            "FAILED_PRECONDITION",
            "User location is not supported for the API use.",
            ErrorCode.CONFIG_ERROR,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers",
            ErrorCode.CONFIG_ERROR,
        ),
        (404, "NOT_FOUND", "models/gemini-9-image is not found", ErrorCode.CONFIG_ERROR),
        (
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            ErrorCode.CONFIG_ERROR,
        ),
        (400, "INVALID_ARGUMENT", "Unsupported MIME type: image/bmp", ErrorCode.INVALID_REQUEST),
        (500, "INTERNAL", "An internal error has occurred.", ErrorCode.SERVER_ERROR),
        (
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            ErrorCode.SERVER_ERROR,
        ),
        (504, "DEADLINE_EXCEEDED", "The request timed out.", ErrorCode.TIMEOUT),
        (408, None, "Request Timeout", ErrorCode.TIMEOUT),
        (418, "I'm a teapot", "odd", ErrorCode.API_ERROR),
    ],
)
def test_api_errors_by_http_code(
    code: int, status: str | None, message: str, expected: ErrorCode
) -> None:
    """HTTP codes decide the class; the message and statuses are kept."""
    error = classify_exception(api_error(code, status, message))
    assert error.code is expected
    assert (error.message, error.http_status) == (message, code)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"code": 8, "message": "Resource has been exhausted."}, ErrorCode.RATE_LIMIT),
        ({"code": 4, "message": "Deadline expired."}, ErrorCode.TIMEOUT),
        ({"code": 13, "message": "Internal error."}, ErrorCode.SERVER_ERROR),
        ({"code": 14, "message": "The service is unavailable."}, ErrorCode.SERVER_ERROR),
        ({"code": 3, "message": "Unable to process input image."}, ErrorCode.INVALID_REQUEST),
        ({"code": 9, "message": "User location is not supported."}, ErrorCode.CONFIG_ERROR),
        ({"code": 7, "message": "Permission denied."}, ErrorCode.CONFIG_ERROR),
        ({"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "slow"}, ErrorCode.RATE_LIMIT),
        ({"code": 503, "status": "UNAVAILABLE", "message": "overloaded"}, ErrorCode.SERVER_ERROR),
        ({"code": 0, "message": "no code"}, ErrorCode.API_ERROR),
        ({"message": "no code at all"}, ErrorCode.API_ERROR),
    ],
)
def test_a_batch_status_is_classified_by_its_grpc_or_http_code(
    status: dict[str, object], expected: ErrorCode
) -> None:
    """A google.rpc.Status in a Batch API result: a gRPC number (no status string) is read
    through GRPC_CODES, an HTTP code as an interactive answer's; the message is kept."""
    error = classify_status(status)
    assert error.code is expected
    assert error.message == status["message"]
    code = status.get("code")
    if isinstance(code, int) and code in GRPC_CODES:
        assert (error.api_status, error.http_status) == GRPC_CODES[code]


def test_a_batch_status_keeps_its_retry_delay_and_quota_details() -> None:
    """RetryInfo in a line's Status is the retry delay; a per-day QuotaFailure is a quota gone."""
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}
    per_day = {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel"}],
    }
    limited = classify_status({"code": 8, "message": "slow down", "details": [retry]})
    gone = classify_status({"code": 429, "message": "quota", "details": [per_day]})
    assert (limited.code, limited.retry_after_ms) == (ErrorCode.RATE_LIMIT, 17000)
    assert gone.code is ErrorCode.QUOTA_EXHAUSTED


def test_non_json_error_body_is_classified_by_http_code_not_status_text() -> None:
    """A 502 HTML page puts the reason phrase in .status; the HTTP code still decides."""
    exc = errors.ServerError(
        502, {"message": "<!DOCTYPE html><html>Error 502</html>", "status": "Bad Gateway"}
    )
    error = classify_exception(exc)
    assert (error.code, error.api_status) == (ErrorCode.SERVER_ERROR, "Bad Gateway")
    assert "Error 502" in error.message


def test_empty_5xx_body_keeps_a_readable_message() -> None:
    """An empty 503 body still yields SERVER_ERROR with a message saying so."""
    error = classify_exception(
        errors.ServerError(503, {"message": "", "status": "Service Unavailable"})
    )
    assert error.code is ErrorCode.SERVER_ERROR and "empty body" in error.message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx2.ReadTimeout("timed out"), ErrorCode.TIMEOUT),
        (httpx2.ConnectTimeout("timed out"), ErrorCode.TIMEOUT),
        (TimeoutError(), ErrorCode.TIMEOUT),
        (httpx2.ConnectError("refused"), ErrorCode.NETWORK_ERROR),
        (httpx2.ReadError("reset by peer"), ErrorCode.NETWORK_ERROR),
        (
            httpx2.RemoteProtocolError("Server disconnected without sending a response."),
            ErrorCode.NETWORK_ERROR,
        ),
        (ConnectionResetError(104, "Connection reset by peer"), ErrorCode.NETWORK_ERROR),
        (json.JSONDecodeError("Expecting value", "<html>", 0), ErrorCode.API_ERROR),
        (RuntimeError("something new"), ErrorCode.API_ERROR),
    ],
)
def test_transport_and_unknown_exceptions(exc: BaseException, expected: ErrorCode) -> None:
    """Transport errors split into timeouts and network failures; anything else is API_ERROR."""
    error = classify_exception(exc)
    assert error.code is expected
    assert error.message


def test_pydantic_validation_error_is_api_error() -> None:
    """A malformed 200 (bad base64) is an API_ERROR, not a crash."""
    try:
        types.Blob.model_validate({"data": 12})
    except pydantic.ValidationError as exc:
        assert classify_exception(exc).code is ErrorCode.API_ERROR


def test_bad_base64_in_an_answer_is_api_error() -> None:
    """Image data that is not base64 makes the answer unreadable: API_ERROR, transient."""
    body = {"candidates": [{"content": {"parts": [{"inlineData": {"data": "not base64!"}}]}}]}
    with pytest.raises(ValueError) as caught:
        read_answer(json.dumps(body))
    error = classify_exception(caught.value)
    assert isinstance(error, TranslationError)
    assert (error.code, error.transient) == (ErrorCode.API_ERROR, True)
    assert "not base64" in error.message


def test_classify_passes_translation_errors_through() -> None:
    """An already classified error is returned as is."""
    error = TranslationError(ErrorCode.INVALID_TYPE, "x.png is empty")
    assert classify_exception(error) is error


def answer_error(body: dict[str, object]) -> TranslationError:
    answer = read_answer(json.dumps(body))
    assert answer.final_image is None
    return classify_answer(answer)


IMAGE_PART = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}


def test_an_answer_with_an_image_has_a_final_image() -> None:
    """A candidate with a non-thought image part holds the image to verify."""
    body = {
        "candidates": [
            {"content": {"parts": [{"text": "Here it is"}, IMAGE_PART]}, "finishReason": "STOP"}
        ]
    }
    image = read_answer(json.dumps(body)).final_image
    assert image is not None and image.data == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("body", "expected", "retryable", "reason"),
    [
        (
            {"candidates": [{"content": {}, "finishReason": "NO_IMAGE"}]},
            ErrorCode.NO_IMAGE,
            False,
            "NO_IMAGE",
        ),
        (
            {"candidates": [{"content": {"role": "model"}, "finishReason": "IMAGE_OTHER"}]},
            ErrorCode.NO_IMAGE,
            True,
            "IMAGE_OTHER",
        ),
        ({"candidates": [{"finishReason": "MAX_TOKENS"}]}, ErrorCode.NO_IMAGE, True, "MAX_TOKENS"),
        ({"candidates": [{"finishReason": "OTHER"}]}, ErrorCode.NO_IMAGE, True, "OTHER"),
        (
            {"candidates": [{"content": {"parts": [{"text": "Sure!"}]}, "finishReason": "STOP"}]},
            ErrorCode.NO_IMAGE,
            False,
            "STOP",
        ),
        ({}, ErrorCode.NO_IMAGE, False, None),
        (
            {"candidates": [{"finishReason": "IMAGE_SAFETY", "finishMessage": "Support code: 1"}]},
            ErrorCode.SAFETY_BLOCKED,
            False,
            "IMAGE_SAFETY",
        ),
        (
            {"candidates": [{"finishReason": "IMAGE_PROHIBITED_CONTENT"}]},
            ErrorCode.SAFETY_BLOCKED,
            False,
            "IMAGE_PROHIBITED_CONTENT",
        ),
        (
            {"candidates": [{"finishReason": "IMAGE_RECITATION", "content": {"parts": []}}]},
            ErrorCode.SAFETY_BLOCKED,
            True,
            "IMAGE_RECITATION",
        ),
        (
            {"candidates": [{"finishReason": "RECITATION"}]},
            ErrorCode.SAFETY_BLOCKED,
            False,
            "RECITATION",
        ),
        (
            {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}},
            ErrorCode.SAFETY_BLOCKED,
            False,
            "PROHIBITED_CONTENT",
        ),
        (
            {"promptFeedback": {"blockReason": "OTHER"}},
            ErrorCode.SAFETY_BLOCKED,
            False,
            "OTHER",
        ),
        (
            {
                "candidates": [
                    {
                        "content": {"parts": [{**IMAGE_PART, "thought": True}]},
                        "finishReason": "STOP",
                    }
                ]
            },
            ErrorCode.NO_IMAGE,
            False,
            "STOP",
        ),
    ],
)
def test_200_without_an_image(
    body: dict[str, object], expected: ErrorCode, retryable: bool, reason: str | None
) -> None:
    """Every 200-without-an-image form gets its code, whether a retry may help (by finish
    reason; a blocked prompt never), and names the finish or block reason."""
    error = answer_error(body)
    assert (error.code, error.transient, error.http_status) == (expected, retryable, 200)
    if reason:
        assert reason in error.message


def test_the_finish_message_is_kept_whole_with_its_support_code() -> None:
    """Google's explanation is the message, however long, support code included."""
    said = "Unable to show the generated image. " * 12 + "Support code: 35561575."
    error = answer_error({"candidates": [{"finishReason": "IMAGE_OTHER", "finishMessage": said}]})
    assert error.message == f"IMAGE_OTHER, no image in the answer: {said}"


def test_tokens_of_an_answer_without_an_image_are_kept() -> None:
    """A refused answer was billed: its usage and model version travel with the error."""
    error = answer_error(
        {
            "candidates": [{"content": {}, "finishReason": "IMAGE_SAFETY"}],
            "usageMetadata": {
                "promptTokenCount": 1119,
                "totalTokenCount": 1359,
                "thoughtsTokenCount": 240,
            },
            "modelVersion": "gemini-3-pro-image-preview",
        }
    )
    assert error.usage is not None
    assert (error.usage.prompt_tokens, error.usage.thoughts_tokens) == (1119, 240)
    assert (error.usage.output_tokens, error.usage.total_tokens) == (None, 1359)
    assert error.usage.model_version == "gemini-3-pro-image-preview"


def test_parse_duration() -> None:
    """Protobuf durations and plain seconds become milliseconds."""
    assert parse_duration_ms("17s") == 17000
    assert parse_duration_ms("38.601s") == 38601
    assert parse_duration_ms(2) == 2000
    assert parse_duration_ms("soon") is None
