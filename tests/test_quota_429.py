"""Gemini's per-minute 429 as the simulator serves it and our Gemini adapter reads it: the
quota it names, the delay until the next free slot, "Please retry in Ns." in the message;
a 429 with no quota behind it names none."""

from __future__ import annotations

import io
import json

import anyio
import pytest
from google.genai.errors import ClientError
from PIL import Image

from imagelingo_cli.errors import ErrorCode, TranslationError, classify_exception
from imagelingo_cli.gemini import GeminiTranslator
from imagelingo_cli.languages import resolve_language
from imagelingo_cli.simulator import Simulator
from imagelingo_cli.simulator.faults import Context, FaultSpec, fault_reply


def two_requests(base_url: str) -> TranslationError:
    """Two translations in a row through the real SDK; the second one's error."""

    async def main() -> TranslationError:
        translator = GeminiTranslator("test-key", base_url=base_url)
        png = _png()
        language = resolve_language("es")
        try:
            await translator.translate(png, "image/png", language, 1, "gemini-2.5-flash-image")
            try:
                await translator.translate(png, "image/png", language, 2, "gemini-2.5-flash-image")
            except TranslationError as error:
                return error
        finally:
            await translator.aclose()
        raise AssertionError("the second request should have been rate limited")

    return anyio.run(main, backend="asyncio")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(buffer, "PNG")
    return buffer.getvalue()


def test_rate_limited_profile_states_its_quota_like_gemini() -> None:
    """--rpm 6: the second request gets RATE_LIMIT naming 6/min, with the wait until the next
    slot (at most 10 s) as RetryInfo and in the message."""
    with Simulator("rate-limited", rpm=6) as sim:
        error = two_requests(sim.base_url)
    assert (error.code, error.http_status, error.quota_per_minute) == (ErrorCode.RATE_LIMIT, 429, 6)
    assert error.retry_after_ms is not None and 8000 < error.retry_after_ms <= 10000
    assert "limit: 6, model: gemini-2.5-flash-image" in error.message
    assert f"Please retry in {error.retry_after_ms / 1000:g}s." in error.message


@pytest.mark.parametrize(
    ("fault", "quota", "delay_ms"),
    [
        (FaultSpec("rate_limit", {"retry_delay": 3, "limit": 30}), 30, 3000),
        (FaultSpec("resource_exhausted"), None, None),
        (FaultSpec("resource_exhausted", {"retry_delay": 1}), None, 1000),
    ],
)
def test_only_a_per_minute_quota_names_a_rate(
    fault: FaultSpec, quota: int | None, delay_ms: int | None
) -> None:
    """The simulator's 429 bodies, classified: RATE_LIMIT each time, a quota only when a
    QuotaFailure names a per-minute request quota."""
    body = json.loads(fault_reply(fault, Context()).body)
    error = classify_exception(ClientError(429, body))
    assert (error.code, error.quota_per_minute, error.retry_after_ms) == (
        ErrorCode.RATE_LIMIT,
        quota,
        delay_ms,
    )


def test_a_token_quota_is_not_a_request_rate() -> None:
    """A per-minute token quota (250000 tokens) says nothing about how often to send."""
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
        "quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
        "quotaValue": "250000",
    }
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota. Please retry in 20s.",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}
            ],
        }
    }
    error = classify_exception(ClientError(429, body))
    assert (error.code, error.quota_per_minute, error.retry_after_ms) == (
        ErrorCode.RATE_LIMIT,
        None,
        20000,
    )
