"""Every error code produced end to end: our adapter, the real google-genai SDK, the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import SAMPLES, TEST_KEY

from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.gemini import GeminiTranslator, Translation
from imagelingo_cli.languages import resolve_language
from imagelingo_cli.settings import DEFAULT_MODEL
from imagelingo_cli.simulator import Simulator

IMAGE = (SAMPLES / "shop-sign.png").read_bytes()
SPANISH = resolve_language("es")


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator whose scenario answers each model name with one fault, every time."""
    folder: Path = tmp_path_factory.mktemp("matrix")
    rules = [
        {"model": model_for(name), "responses": [spec], "then": spec}
        for name, spec in FAULTS.items()
    ]
    path = folder / "scenario.json"
    import json

    path.write_text(json.dumps({"rules": rules}))
    with Simulator("ok", scenario=path) as sim:
        yield sim


def model_for(fault: str) -> str:
    """A model name that the scenario maps to one fault (the simulator knows *-image names)."""
    return f"gemini-fault-{fault.replace('_', '-')}-image"


def translate(
    base_url: str, model: str, *, timeout: float = 30.0, key: str = TEST_KEY
) -> Translation:
    async def once() -> Translation:
        translator = GeminiTranslator(key, base_url=base_url, timeout=timeout)
        try:
            return await translator.translate(IMAGE, "image/png", SPANISH, 1, model)
        finally:
            await translator.aclose()

    return anyio.run(once, backend="asyncio")


def failure(base_url: str, model: str, **kwargs: Any) -> TranslationError:
    with pytest.raises(TranslationError) as caught:
        translate(base_url, model, **kwargs)
    return caught.value


FAULTS: dict[str, Any] = {
    "rate_limit": {"fault": "rate_limit", "retry_delay": 7},
    "rate_limit_plain": "rate_limit_plain",
    "quota_daily": "quota_daily",
    "quota_zero": "quota_zero",
    "prepay_depleted": "prepay_depleted",
    "deadline": "deadline",
    "overloaded": "overloaded",
    "internal": "internal",
    "bad_gateway_html": "bad_gateway_html",
    "empty_503": "empty_503",
    "reset": "reset",
    "disconnect": "disconnect",
    "bad_key": "bad_key",
    "permission_denied": "permission_denied",
    "model_not_found": "model_not_found",
    "location": "location",
    "invalid_argument": "invalid_argument",
    "no_image": "no_image",
    "text_only": "text_only",
    "image_other": "image_other",
    "max_tokens": "max_tokens",
    "empty_200": "empty_200",
    "error_200": "error_200",
    "image_safety": "image_safety",
    "image_prohibited_content": "image_prohibited_content",
    "image_recitation": "image_recitation",
    "prompt_blocked": "prompt_blocked",
    "invalid_json": "invalid_json",
    "corrupt_image": "corrupt_image",
    "truncated_image": "truncated_image",
    "one_byte_image": "one_byte_image",
    "teapot": "teapot",
}

# fault -> (code, transient, retry_after_ms, http_status, a piece of the API's message)
EXPECTED: dict[str, tuple[ErrorCode, bool, int | None, int | None, str]] = {
    "rate_limit": (ErrorCode.RATE_LIMIT, True, 7000, 429, "You exceeded your current quota"),
    "rate_limit_plain": (ErrorCode.RATE_LIMIT, True, None, 429, "Too Many Requests"),
    "quota_daily": (ErrorCode.QUOTA_EXHAUSTED, True, 38000, 429, "quota"),
    "quota_zero": (ErrorCode.QUOTA_EXHAUSTED, True, 26000, 429, "limit: 0"),
    "prepay_depleted": (
        ErrorCode.QUOTA_EXHAUSTED,
        True,
        None,
        402,
        "prepayment credits are depleted",
    ),
    "deadline": (ErrorCode.TIMEOUT, True, None, 504, "The request timed out"),
    "overloaded": (ErrorCode.SERVER_ERROR, True, None, 503, "The model is overloaded"),
    "internal": (ErrorCode.SERVER_ERROR, True, None, 500, "An internal error has occurred"),
    "bad_gateway_html": (ErrorCode.SERVER_ERROR, True, None, 502, "<html"),
    "empty_503": (ErrorCode.SERVER_ERROR, True, None, 503, "empty body"),
    "reset": (ErrorCode.NETWORK_ERROR, True, None, None, ""),
    "disconnect": (ErrorCode.NETWORK_ERROR, True, None, None, "disconnected"),
    "bad_key": (ErrorCode.CONFIG_ERROR, False, None, 400, "API key not valid"),
    "permission_denied": (ErrorCode.CONFIG_ERROR, False, None, 403, "does not have permission"),
    "model_not_found": (ErrorCode.CONFIG_ERROR, False, None, 404, "is not found"),
    "location": (ErrorCode.CONFIG_ERROR, False, None, 400, "User location is not supported"),
    "invalid_argument": (
        ErrorCode.INVALID_REQUEST,
        False,
        None,
        400,
        "Unable to process input image",
    ),
    "no_image": (ErrorCode.NO_IMAGE, False, None, 200, "NO_IMAGE, no image in the answer"),
    "text_only": (ErrorCode.NO_IMAGE, False, None, 200, "STOP"),
    "image_other": (
        ErrorCode.NO_IMAGE,
        True,
        None,
        200,
        "IMAGE_OTHER, no image in the answer: Unable to show the generated image. The model "
        "could not generate the image based on the prompt provided. You will not be charged "
        "for this request.",
    ),
    "max_tokens": (ErrorCode.NO_IMAGE, True, None, 200, "MAX_TOKENS"),
    "empty_200": (ErrorCode.NO_IMAGE, False, None, 200, "no candidates"),
    "error_200": (ErrorCode.NO_IMAGE, False, None, 200, "no candidates"),
    "image_safety": (
        ErrorCode.SAFETY_BLOCKED,
        False,
        None,
        200,
        "IMAGE_SAFETY: Unable to show the generated image. The image was filtered out because "
        "it violated Google's Generative AI Prohibited Use policy.",
    ),
    "image_prohibited_content": (
        ErrorCode.SAFETY_BLOCKED,
        False,
        None,
        200,
        "IMAGE_PROHIBITED_CONTENT: The model output could not be generated. This output "
        "contains sensitive words that violate Google's Responsible AI practices. If you think "
        "this was an error, send feedback. Support code: 42876398.",
    ),
    "image_recitation": (ErrorCode.SAFETY_BLOCKED, True, None, 200, "IMAGE_RECITATION"),
    "prompt_blocked": (ErrorCode.SAFETY_BLOCKED, False, None, 200, "PROHIBITED_CONTENT"),
    "invalid_json": (ErrorCode.API_ERROR, True, None, None, "not JSON"),
    "corrupt_image": (ErrorCode.API_ERROR, True, None, 200, "is truncated or corrupt: broken PNG"),
    "truncated_image": (ErrorCode.API_ERROR, True, None, 200, "is truncated or corrupt"),
    "one_byte_image": (
        ErrorCode.API_ERROR,
        True,
        None,
        200,
        "the image in the answer (image/png, 1 byte) is not an image (it starts 0x00)",
    ),
    "teapot": (ErrorCode.API_ERROR, True, None, 418, ""),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_classified(scripted: Simulator, fault: str) -> None:
    """Each simulated Gemini failure becomes exactly its code, with whether it may pass on a
    retry, delay, and the API's message (for a refused image, Google's finishMessage)."""
    code, transient, retry_after_ms, http_status, message = EXPECTED[fault]
    error = failure(scripted.base_url, model_for(fault))
    assert error.code is code
    assert error.transient is transient
    assert error.retry_after_ms == retry_after_ms
    assert error.http_status == http_status
    assert message.lower() in error.message.lower()


def test_every_code_but_the_local_ones_is_produced_by_the_matrix() -> None:
    """The matrix covers every code of the taxonomy except INVALID_TYPE (never sent) and
    OUTPUT_ERROR (the local disk)."""
    local = {ErrorCode.INVALID_TYPE, ErrorCode.OUTPUT_ERROR}
    produced = {expected[0] for expected in EXPECTED.values()}
    assert produced | local == set(ErrorCode) and not produced & local


def test_deadline_stall_is_a_timeout(tmp_path: Path) -> None:
    """A server that stalls past --timeout ends the attempt as TIMEOUT on our total deadline."""
    from conftest import scenario_simulator

    with scenario_simulator(
        tmp_path, {"rules": [{"responses": [{"fault": "stall", "seconds": 5}]}]}
    ) as sim:
        error = failure(sim.base_url, DEFAULT_MODEL, timeout=0.3)
    assert error.code is ErrorCode.TIMEOUT and error.transient
    assert error.message == "no answer within the 0.3 s deadline"


def test_unknown_model_and_missing_key_are_config_errors(simulator: Simulator) -> None:
    """An unknown model name (404) and a rejected key (400) are CONFIG_ERROR."""
    assert failure(simulator.base_url, "gemini-9-image").code is ErrorCode.CONFIG_ERROR
    with Simulator("ok", api_key="right-key") as strict:
        error = failure(strict.base_url, DEFAULT_MODEL, key="wrong-key")
    assert (error.code, error.http_status) == (ErrorCode.CONFIG_ERROR, 400)


def test_success_returns_the_image_and_usage(simulator: Simulator) -> None:
    """A success carries a real image of the input's size, its MIME type, tokens and model."""
    import io

    from PIL import Image

    result = translate(simulator.base_url, DEFAULT_MODEL)
    assert result.mime_type == "image/png"
    assert Image.open(io.BytesIO(result.data)).size == Image.open(io.BytesIO(IMAGE)).size
    assert result.usage.total_tokens and result.usage.model_version == DEFAULT_MODEL
    assert (result.usage.output_tokens, result.usage.thoughts_tokens) == (1290, None)
    sent = simulator.stats()["last_request"]
    assert sent["language"] == "es" and sent["variation"] == 1
    assert sent["image_bytes"] == len(IMAGE) and "Translate all text" in sent["text"]


@pytest.mark.parametrize(
    ("model", "thoughts"),
    [
        ("gemini-3-pro-image-preview", 180),
        ("gemini-3.1-flash-image", 180),
        ("nano-banana-pro-preview", 180),
        ("gemini-3.1-flash-lite-image", None),
    ],
)
def test_gemini_3_models_answer_jpeg_and_count_their_thoughts(
    simulator: Simulator, model: str, thoughts: int | None
) -> None:
    """Gemini 3 image models answer JPEG; the thinking ones bill thought tokens, kept apart
    from the output tokens and included in the total."""
    result = translate(simulator.base_url, model)
    assert result.mime_type == "image/jpeg" and result.data.startswith(b"\xff\xd8\xff")
    usage = result.usage
    assert (usage.output_tokens, usage.thoughts_tokens, usage.model_version) == (
        1120,
        thoughts,
        model,
    )
    assert usage.total_tokens == (usage.prompt_tokens or 0) + 1120 + (thoughts or 0)
