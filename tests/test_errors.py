"""The classifier against directly constructed google-genai / httpx2 exceptions and responses."""

from __future__ import annotations

import json

import httpx2
import pydantic
import pytest
from google.genai import errors, types

from imagelingo_cli.errors import (
    DEFAULT_AUTO_RETRY,
    ErrorCode,
    TranslationError,
    classify_exception,
    classify_response,
    parse_duration_ms,
)


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
    """Labels are the code in words; transient codes are exactly the product's."""
    assert ErrorCode.RATE_LIMIT.label == "Rate Limit"
    assert ErrorCode.CONFIG_ERROR.label == "Config Error"
    assert ErrorCode.NO_IMAGE.label == "No Image"
    transient = {c for c in ErrorCode if c.transient}
    assert transient == {
        ErrorCode.RATE_LIMIT,
        ErrorCode.QUOTA_EXHAUSTED,
        ErrorCode.TIMEOUT,
        ErrorCode.SERVER_ERROR,
        ErrorCode.NETWORK_ERROR,
        ErrorCode.API_ERROR,
    }
    assert {ErrorCode.RATE_LIMIT, ErrorCode.TIMEOUT} == DEFAULT_AUTO_RETRY


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


def test_classify_passes_translation_errors_through() -> None:
    """An already classified error is returned as is."""
    error = TranslationError(ErrorCode.INVALID_TYPE, "x.png is empty")
    assert classify_exception(error) is error


def response(body: dict[str, object]) -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate(body)


IMAGE_PART = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}


def test_response_with_an_image_is_fine() -> None:
    """A candidate with a non-thought image part is a success."""
    body = {
        "candidates": [
            {"content": {"parts": [{"text": "Here it is"}, IMAGE_PART]}, "finishReason": "STOP"}
        ]
    }
    assert classify_response(response(body)) is None


@pytest.mark.parametrize(
    ("body", "expected", "reason"),
    [
        (
            {
                "candidates": [
                    {"content": {"parts": [{"text": "I can't"}]}, "finishReason": "NO_IMAGE"}
                ]
            },
            ErrorCode.NO_IMAGE,
            "NO_IMAGE",
        ),
        (
            {"candidates": [{"content": {"role": "model"}, "finishReason": "IMAGE_OTHER"}]},
            ErrorCode.NO_IMAGE,
            "IMAGE_OTHER",
        ),
        (
            {"candidates": [{"content": {"parts": [{"text": "Sure!"}]}, "finishReason": "STOP"}]},
            ErrorCode.NO_IMAGE,
            "STOP",
        ),
        ({}, ErrorCode.NO_IMAGE, None),
        (
            {"candidates": [{"finishReason": "IMAGE_SAFETY", "finishMessage": "Support code: 1"}]},
            ErrorCode.SAFETY_BLOCKED,
            "IMAGE_SAFETY",
        ),
        (
            {"candidates": [{"finishReason": "IMAGE_PROHIBITED_CONTENT"}]},
            ErrorCode.SAFETY_BLOCKED,
            "IMAGE_PROHIBITED_CONTENT",
        ),
        ({"candidates": [{"finishReason": "RECITATION"}]}, ErrorCode.SAFETY_BLOCKED, "RECITATION"),
        (
            {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}},
            ErrorCode.SAFETY_BLOCKED,
            "PROHIBITED_CONTENT",
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
            "STOP",
        ),
    ],
)
def test_200_without_an_image(
    body: dict[str, object], expected: ErrorCode, reason: str | None
) -> None:
    """Every 200-without-an-image form gets its code and names the finish or block reason."""
    error = classify_response(response(body))
    assert error is not None and error.code is expected
    assert error.http_status == 200
    if reason:
        assert reason in error.message


def test_parse_duration() -> None:
    """Protobuf durations and plain seconds become milliseconds."""
    assert parse_duration_ms("17s") == 17000
    assert parse_duration_ms("38.601s") == 38601
    assert parse_duration_ms(2) == 2000
    assert parse_duration_ms("soon") is None
