"""The Gemini simulator, driven by the real google-genai async client (and raw HTTP)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from imagelingo_cli.simulator import PROFILES, Simulator, load_scenario
from imagelingo_cli.simulator.faults import format_duration
from imagelingo_cli.simulator.profiles import TokenBucket

MODEL = "gemini-2.5-flash-image"


def make_png(
    width: int = 96, height: int = 64, color: tuple[int, int, int] = (200, 40, 40)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def noisy_png(seed: int = 0) -> bytes:
    """A PNG whose base64 certainly holds '+' and '/' (so the two alphabets differ)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (32, 32), bytes(rng.randrange(256) for _ in range(32 * 32 * 3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def instruction(tag: str = "es", name: str = "Spanish", variation: int = 1) -> str:
    return (
        f"Translate all text in this image into {name} ({tag}). Keep the layout. "
        f"This is variation {variation}: prefer natural wording."
    )


def key_of(image: bytes, variation: int) -> str:
    return f"{hashlib.sha256(image).hexdigest()}:{variation}"


@asynccontextmanager
async def sdk_client(
    base_url: str,
    *,
    api_key: str = "test-key",
    timeout_ms: int | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[genai.Client]:
    """The real google-genai client, pinned to the httpx2 transport, aimed at the simulator."""
    async with httpx2.AsyncClient() as http:
        yield genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                api_version="v1beta",
                httpx_async_client=http,
                timeout=timeout_ms,
                headers=headers,
            ),
        )


async def ask(
    client: genai.Client, image: bytes, text: str, *, model: str = MODEL
) -> types.GenerateContentResponse:
    return await client.aio.models.generate_content(
        model=model,
        contents=[types.Part.from_bytes(data=image, mime_type="image/png"), text],
        config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
    )


async def generate(
    base_url: str,
    image: bytes,
    text: str,
    *,
    model: str = MODEL,
    api_key: str = "test-key",
    timeout_ms: int | None = None,
    headers: dict[str, str] | None = None,
) -> types.GenerateContentResponse:
    """One generate_content call with a fresh client."""
    async with sdk_client(base_url, api_key=api_key, timeout_ms=timeout_ms, headers=headers) as c:
        return await ask(c, image, text, model=model)


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        with anyio.fail_after(20):
            return await coro_fn()

    return anyio.run(main, backend="asyncio")


async def outcome(call: Awaitable[types.GenerateContentResponse]) -> str:
    """A short label for what the client saw."""
    try:
        response = await call
    except errors.APIError as exc:
        return f"{exc.code} {exc.status}"
    except Exception as exc:
        return type(exc).__name__
    if not response.candidates:
        return "no candidates"
    reason = response.candidates[0].finish_reason
    images = [p for p in response.parts or [] if p.inline_data is not None]
    return f"{reason.value if reason else None} images={len(images)}"


def raw_post(
    url: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any] | str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def raw_body(
    image: bytes, text: str, mime: str = "image/png", camel: bool = True
) -> dict[str, Any]:
    inline = {"mimeType" if camel else "mime_type": mime, "data": base64.b64encode(image).decode()}
    return {"contents": [{"role": "user", "parts": [{"inlineData": inline}, {"text": text}]}]}


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


# --- success ----------------------------------------------------------------------------------


def test_success_returns_the_marked_input_image_and_records_the_request() -> None:
    image = make_png(120, 80)
    with Simulator() as sim:
        response = run(lambda: generate(sim.base_url, image, instruction("es", "Spanish", 2)))
        stats = sim.stats()

    candidate = response.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    inline = next(p.inline_data for p in response.parts if p.inline_data is not None)
    assert inline.mime_type == "image/png"
    output = Image.open(io.BytesIO(inline.data))
    assert output.size == (120, 80)
    assert output.convert("RGB").getpixel((5, 5)) == (200, 40, 40)  # untouched above the band
    assert output.convert("RGB").getpixel((5, 78)) != (200, 40, 40)  # the band is visible
    assert response.model_version == MODEL
    assert response.usage_metadata.candidates_token_count == 1290
    assert response.usage_metadata.prompt_token_count > 1290

    last = stats["last_request"]
    assert last["path"] == f"/v1beta/models/{MODEL}:generateContent"
    assert last["language"] == "es"
    assert last["variation"] == 2
    assert last["mime_type"] == "image/png"
    assert last["image_bytes"] == len(image)
    assert "into Spanish (es)" in last["text"]
    assert last["headers"]["x-goog-api-key"] == "<redacted, 8 chars>"
    assert stats["by_key"] == {key_of(image, 2): 1}
    assert stats["outcomes"] == {"ok": 1}
    assert "test-key" not in json.dumps(stats)


def answer_to(fault: str, model: str = MODEL) -> types.GenerateContentResponse:
    """What the real SDK makes of one scripted answer."""
    with Simulator(scenario={"rules": [{"responses": [fault]}]}) as sim:
        return run(lambda: generate(sim.base_url, make_png(120, 80), instruction(), model=model))


def raw_answer(fault: str, model: str = MODEL) -> dict[str, Any]:
    """The JSON body of one scripted answer, as it went over the wire."""
    with Simulator(scenario={"rules": [{"responses": [fault]}]}) as sim:
        url = f"{sim.base_url}/v1beta/models/{model}:generateContent"
        status, body = raw_post(url, raw_body(make_png(), instruction()), {"x-goog-api-key": "k"})
    assert status == 200 and isinstance(body, dict)
    return body


@pytest.mark.parametrize(
    "model", ["gemini-3-pro-image-preview", "gemini-3.1-flash-image", "nano-banana-pro-preview"]
)
def test_gemini_3_answers_a_signed_jpeg_and_bills_thoughts(model: str) -> None:
    """Gemini 3 image models answer JPEG, sign the image part, and count thinking tokens."""
    response = answer_to("ok", model)
    part = response.candidates[0].content.parts[0]
    assert part.inline_data.mime_type == "image/jpeg"
    assert Image.open(io.BytesIO(part.inline_data.data)).format == "JPEG"
    assert part.thought_signature
    usage = response.usage_metadata
    assert (usage.candidates_token_count, usage.thoughts_token_count) == (1120, 180)
    assert usage.total_token_count == usage.prompt_token_count + 1120 + 180


def test_gemini_2_5_answers_an_unsigned_png_without_thoughts() -> None:
    """gemini-2.5-flash-image answers PNG and does not think."""
    response = answer_to("ok")
    part = response.candidates[0].content.parts[0]
    assert part.inline_data.mime_type == "image/png" and part.thought_signature is None
    assert response.usage_metadata.thoughts_token_count is None


def test_no_image_is_an_empty_candidate_billed_for_the_prompt_only() -> None:
    """A real NO_IMAGE: `content: {}`, no text, no message, usage for the prompt alone."""
    body = raw_answer("no_image")
    assert body["candidates"] == [{"content": {}, "finishReason": "NO_IMAGE", "index": 0}]
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"]
    assert "candidatesTokenCount" not in usage


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        ("image_other", "IMAGE_OTHER", "You will not be charged for this request."),
        ("image_safety", "IMAGE_SAFETY", "violated Google's Generative AI Prohibited Use policy"),
        ("image_prohibited_content", "IMAGE_PROHIBITED_CONTENT", "Support code: 42876398."),
    ],
)
def test_refusals_carry_googles_finish_message_which_the_sdk_drops(
    fault: str, reason: str, words: str
) -> None:
    """The body carries Google's own explanation; google-genai 3.6 loses it on the way (which
    is why the adapter reads the raw body). If the SDK starts keeping it, this says so."""
    candidate = raw_answer(fault, "gemini-3-pro-image-preview")["candidates"][0]
    assert candidate["finishReason"] == reason and words in candidate["finishMessage"]
    parsed = answer_to(fault).candidates[0]
    assert parsed.finish_reason == reason and parsed.finish_message is None


def test_image_safety_does_not_borrow_another_reasons_words() -> None:
    """IMAGE_SAFETY and IMAGE_PROHIBITED_CONTENT each say their own thing."""
    safety = raw_answer("image_safety")["candidates"][0]["finishMessage"]
    prohibited = raw_answer("image_prohibited_content")["candidates"][0]["finishMessage"]
    assert safety != prohibited and "sensitive words" not in safety


def test_thought_image_then_final_marks_the_interim_render_as_a_thought() -> None:
    """A thinking model's interim render comes first, as a thought; the final image last."""
    parts = answer_to("thought_image_then_final", "gemini-3-pro-image-preview").parts
    assert [bool(p.thought) for p in parts] == [True, True, False]
    assert parts[0].text and parts[1].inline_data and parts[2].thought_signature
    sizes = [Image.open(io.BytesIO(p.inline_data.data)).size for p in parts[1:]]
    assert sizes == [(60, 40), (120, 80)]


def test_several_images_are_all_final_parts_the_last_full_size() -> None:
    """`several_images`: a half-size render then the full one, neither a thought."""
    parts = answer_to("several_images").parts
    assert [p.thought for p in parts] == [None, None]
    sizes = [Image.open(io.BytesIO(p.inline_data.data)).size for p in parts]
    assert sizes == [(60, 40), (120, 80)]


@pytest.mark.parametrize(
    ("fault", "declared", "starts"),
    [
        ("mislabelled_image", "image/png", b"\xff\xd8\xff"),
        ("unlabelled_image", None, b"\x89PNG"),
        ("one_byte_image", "image/png", b"\x00"),
        ("truncated_image", "image/png", b"\x89PNG"),
        ("corrupt_image", "image/png", b"\x89PNG"),
    ],
)
def test_broken_and_mislabelled_image_answers(
    fault: str, declared: str | None, starts: bytes
) -> None:
    """Image parts whose declared type or bytes are wrong, as real answers sometimes are."""
    inline = raw_answer(fault)["candidates"][0]["content"]["parts"][-1]["inlineData"]
    assert inline.get("mimeType") == declared
    data = base64.b64decode(inline["data"])
    assert data.startswith(starts)
    if fault == "one_byte_image":
        assert inline["data"] == "AA=="


def test_variations_are_marked_differently() -> None:
    image = make_png()
    with Simulator() as sim:

        async def both() -> list[bytes]:
            answers = await asyncio.gather(
                *(generate(sim.base_url, image, instruction(variation=v)) for v in (1, 2))
            )
            return [next(p.inline_data.data for p in a.parts if p.inline_data) for a in answers]

        first, second = run(both)
    assert first != second


def test_raw_camel_case_and_standard_base64_are_accepted() -> None:
    """The SDK sends mime_type + URL-safe base64; a hand-written client may send the other forms."""
    image = noisy_png()
    standard = base64.b64encode(image).decode()
    assert standard != base64.urlsafe_b64encode(image).decode()  # the alphabets really differ
    with Simulator() as sim:
        url = f"{sim.base_url}/v1/models/{MODEL}:generateContent"
        status, body = raw_post(
            url, raw_body(image, instruction("fr", "French")), {"x-goog-api-key": "k"}
        )
        stats = sim.stats()
    assert status == 200
    assert isinstance(body, dict)
    part = body["candidates"][0]["content"]["parts"][-1]["inlineData"]
    assert part["mimeType"] == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(part["data"]))).size == (32, 32)
    assert stats["last_request"]["language"] == "fr"
    assert stats["by_key"] == {key_of(image, 1): 1}


def test_sdk_wire_format_snake_case_and_urlsafe_is_accepted() -> None:
    image = noisy_png(1)
    with Simulator() as sim:
        label = run(lambda: outcome(generate(sim.base_url, image, instruction())))
        assert sim.stats()["by_key"] == {key_of(image, 1): 1}
    assert label == "STOP images=1"


@pytest.mark.parametrize(
    ("mime", "data", "message"),
    [
        ("image/bmp", make_png(), "Unsupported MIME type: image/bmp"),
        ("image/png", b"definitely not an image", "Provided image is not valid."),
    ],
)
def test_bad_images_are_refused_like_the_api(mime: str, data: bytes, message: str) -> None:
    with Simulator() as sim:
        url = f"{sim.base_url}/v1beta/models/{MODEL}:generateContent"
        status, body = raw_post(url, raw_body(data, instruction(), mime), {"x-goog-api-key": "k"})
    assert status == 400
    assert isinstance(body, dict)
    assert body["error"] == {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}


def test_missing_image_part_is_refused() -> None:
    with Simulator() as sim:
        url = f"{sim.base_url}/v1beta/models/{MODEL}:generateContent"
        body = {"contents": [{"parts": [{"text": instruction()}]}]}
        status, answer = raw_post(url, body, {"x-goog-api-key": "k"})
    assert status == 400
    assert isinstance(answer, dict)
    assert answer["error"]["message"] == "Provided image is not valid."


# --- protocol checks ----------------------------------------------------------------------------


def test_unknown_model_is_404_not_found() -> None:
    with Simulator() as sim, pytest.raises(errors.ClientError) as caught:
        run(lambda: generate(sim.base_url, make_png(), instruction(), model="gemini-9-image"))
    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"
    assert caught.value.message.startswith(
        "models/gemini-9-image is not found for API version v1beta, or is not supported for "
        "generateContent."
    )


@pytest.mark.parametrize(
    "model", ["gemini-3-pro-image-preview", "nano-banana-pro-preview", "gemini-nano-banana-2.1"]
)
def test_known_model_ids(model: str) -> None:
    with Simulator() as sim:
        label = run(lambda: outcome(generate(sim.base_url, make_png(), instruction(), model=model)))
    assert label == "STOP images=1"


def test_short_server_timeout_is_refused() -> None:
    with Simulator() as sim, pytest.raises(errors.ClientError) as caught:
        run(lambda: generate(sim.base_url, make_png(), instruction(), timeout_ms=5000))
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == (
        "Manually set deadline 5s is too short. Minimum allowed deadline is 10s."
    )


def test_missing_key_is_403_and_wrong_key_is_400() -> None:
    with Simulator(api_key="right-key") as sim:
        url = f"{sim.base_url}/v1beta/models/{MODEL}:generateContent"
        status, body = raw_post(url, raw_body(make_png(), instruction()))
        with pytest.raises(errors.ClientError) as caught:
            run(lambda: generate(sim.base_url, make_png(), instruction(), api_key="wrong"))
        accepted = run(
            lambda: outcome(generate(sim.base_url, make_png(), instruction(), api_key="right-key"))
        )
    assert status == 403
    assert isinstance(body, dict)
    assert body["error"]["status"] == "PERMISSION_DENIED"
    assert body["error"]["message"].startswith("Method doesn't allow unregistered callers")
    assert caught.value.code == 400
    details = caught.value.details["error"]["details"]
    assert details[0]["reason"] == "API_KEY_INVALID"
    assert accepted == "STOP images=1"


def test_unknown_path_is_a_json_404() -> None:
    with Simulator() as sim:
        status, body = raw_post(f"{sim.base_url}/v1beta/files", {}, {"x-goog-api-key": "k"})
    assert status == 404
    assert isinstance(body, dict)
    assert body["error"]["status"] == "NOT_FOUND"


# --- faults through the SDK -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("rate_limit", "429 RESOURCE_EXHAUSTED"),
        ("rate_limit_plain", "429 Too Many Requests"),
        ("prepay_depleted", "402 RESOURCE_EXHAUSTED"),
        ("overloaded", "503 UNAVAILABLE"),
        ("internal", "500 INTERNAL"),
        ("deadline", "504 DEADLINE_EXCEEDED"),
        ("bad_gateway_html", "502 Bad Gateway"),
        ("empty_503", "503 Service Unavailable"),
        ("location", "400 FAILED_PRECONDITION"),
        ("teapot", "418 UNKNOWN"),
        ("no_image", "NO_IMAGE images=0"),
        ("text_only", "STOP images=0"),
        ("image_safety", "IMAGE_SAFETY images=0"),
        ("prompt_blocked", "no candidates"),
        ("empty_200", "no candidates"),
        ("error_200", "no candidates"),
        ("invalid_json", "JSONDecodeError"),
        ("reset", "ReadError"),
        ("disconnect", "RemoteProtocolError"),
    ],
)
def test_faults_surface_as_the_reference_says(fault: str, expected: str) -> None:
    with Simulator(scenario={"rules": [{"responses": [fault]}]}) as sim:
        label = run(lambda: outcome(generate(sim.base_url, make_png(), instruction())))
        assert sim.stats()["outcomes"] == {fault: 1}
    assert label == expected


def test_rate_limit_body_carries_quota_and_retry_info() -> None:
    scenario = {"rules": [{"responses": [{"fault": "rate_limit", "retry_delay": 0.5}]}]}
    with Simulator(scenario=scenario) as sim, pytest.raises(errors.ClientError) as caught:
        run(lambda: generate(sim.base_url, make_png(), instruction()))
    error = caught.value.details["error"]
    assert caught.value.response.headers.get("retry-after") is None
    assert "Please retry in 0.5s." in error["message"]
    by_type = {d["@type"].rsplit(".", 1)[-1]: d for d in error["details"]}
    assert by_type["RetryInfo"]["retryDelay"] == "0.5s"
    violation = by_type["QuotaFailure"]["violations"][0]
    assert violation["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel"
    assert violation["quotaValue"] == "10"
    assert "Help" in by_type


def test_error_bodies_are_pretty_printed_google_json() -> None:
    with Simulator(scenario={"rules": [{"responses": ["overloaded"]}]}) as sim:
        url = f"{sim.base_url}/v1beta/models/{MODEL}:generateContent"
        request = urllib.request.Request(
            url, data=json.dumps(raw_body(make_png(), instruction())).encode(), method="POST"
        )
        request.add_header("x-goog-api-key", "k")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        text = caught.value.read().decode()
        content_type = caught.value.headers["Content-Type"]
    assert content_type == "application/json; charset=UTF-8"
    assert text.startswith('{\n  "error": {\n    "code": 503,')
    assert text.endswith("}\n")


def test_stall_times_out_in_the_client() -> None:
    # The SDK sends X-Server-Timeout = ceil(timeout); setting the header ourselves keeps the
    # server-side minimum happy while the client gives up after 0.3 s.
    scenario = {"rules": [{"responses": [{"fault": "stall", "seconds": 5}]}]}
    with Simulator(scenario=scenario) as sim:
        started = time.monotonic()
        label = run(
            lambda: outcome(
                generate(
                    sim.base_url,
                    make_png(),
                    instruction(),
                    timeout_ms=300,
                    headers={"X-Server-Timeout": "60"},
                )
            )
        )
        elapsed = time.monotonic() - started
        sim.stop()
        assert time.monotonic() - started < 2.5  # stop() woke the stalled handler
    assert label == "ReadTimeout"
    assert elapsed < 2


def test_stop_is_prompt_with_a_stalled_request_in_flight() -> None:
    scenario = {"rules": [{"responses": [{"fault": "stall", "seconds": 30}]}]}
    sim = Simulator(scenario=scenario)
    sim.start()

    async def scenario_run() -> tuple[str, float]:
        task = asyncio.ensure_future(outcome(generate(sim.base_url, make_png(), instruction())))
        while sim.stats()["in_flight"] == 0:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await asyncio.to_thread(sim.stop)
        stopped_in = time.monotonic() - started
        return await task, stopped_in

    label, stopped_in = run(scenario_run)
    assert stopped_in < 1.5
    assert label in ("RemoteProtocolError", "ReadError")


# --- profiles ----------------------------------------------------------------------------------


def test_profiles_constant() -> None:
    assert PROFILES == ("ok", "flaky", "rate-limited", "outage")
    with pytest.raises(ValueError, match="unknown profile"):
        Simulator("sometimes")


def _flaky_sequences(
    seed: int, order: list[tuple[bytes, int]], concurrent: bool
) -> dict[str, list[str]]:
    """Each key requested 3 times in a row; keys in `order`, one after another or all at once."""

    async def per_key(client: genai.Client, image: bytes, variation: int) -> list[str]:
        return [
            await outcome(ask(client, image, instruction(variation=variation))) for _ in range(3)
        ]

    async def main(sim: Simulator) -> dict[str, list[str]]:
        async with sdk_client(sim.base_url) as client:
            if concurrent:
                results = await asyncio.gather(*(per_key(client, i, v) for i, v in order))
            else:
                results = [await per_key(client, i, v) for i, v in order]
        return {key_of(i, v): r for (i, v), r in zip(order, results, strict=True)}

    with Simulator("flaky", seed=seed) as sim:
        return run(lambda: main(sim))  # type: ignore[no-any-return]


def test_flaky_is_reproducible_whatever_the_order() -> None:
    keys = [(make_png(color=(c, 10, 10)), v) for c in (10, 60, 110, 160, 210, 250) for v in (1, 2)]
    first = _flaky_sequences(3, keys, concurrent=False)
    second = _flaky_sequences(3, list(reversed(keys)), concurrent=True)
    assert first == second
    labels = [label for sequence in first.values() for label in sequence]
    assert "STOP images=1" in labels
    assert any(label.startswith(("429", "504", "503", "NO_IMAGE")) for label in labels)


def test_outage_answers_5xx_only() -> None:
    async def main(sim: Simulator) -> list[str]:
        async with sdk_client(sim.base_url) as client:
            return [
                await outcome(ask(client, make_png(color=(c, 0, 0)), instruction()))
                for c in range(0, 250, 25)
            ]

    with Simulator("outage", seed=1) as sim:
        labels = run(lambda: main(sim))
    assert set(labels) <= {"503 UNAVAILABLE", "500 INTERNAL"}
    assert "503 UNAVAILABLE" in labels


def test_rate_limited_answers_429_with_retry_info_once_the_bucket_is_empty() -> None:
    async def main(sim: Simulator) -> tuple[str, errors.ClientError]:
        first = await outcome(generate(sim.base_url, make_png(), instruction()))
        try:
            await generate(sim.base_url, make_png(), instruction(variation=2))
        except errors.ClientError as exc:
            return first, exc
        raise AssertionError("the second request should have been rate limited")

    with Simulator("rate-limited", rpm=6) as sim:  # one token, then one every 10 s
        first, limited = run(lambda: main(sim))
        assert sim.stats()["outcomes"] == {"ok": 1, "rate_limit": 1}
    assert first == "STOP images=1"
    assert limited.code == 429
    retry = next(d for d in limited.details["error"]["details"] if d["@type"].endswith("RetryInfo"))
    delay = float(retry["retryDelay"].removesuffix("s"))
    assert 8 < delay <= 10
    assert f"Please retry in {retry['retryDelay'].removesuffix('s')}s." in limited.message


def test_token_bucket_and_duration_format() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=1.0, capacity=1.0, clock=lambda: now[0])
    assert bucket.take() is None
    now[0] = 0.266
    assert bucket.take() == pytest.approx(0.734)
    now[0] = 1.0
    assert bucket.take() is None
    assert format_duration(0.734) == "0.734s"
    assert format_duration(2) == "2s"
    assert format_duration(0.5) == "0.5s"
    assert format_duration(38.6012) == "38.601s"


# --- scenarios ---------------------------------------------------------------------------------


def test_scenario_responses_are_consumed_per_key(tmp_path: Path) -> None:
    menu, other = make_png(color=(1, 2, 3)), make_png(color=(4, 5, 6))
    (tmp_path / "menu.png").write_bytes(menu)
    scenario_file = tmp_path / "scenario.json"
    scenario_file.write_text(
        json.dumps(
            {
                "default": "ok",
                "rules": [
                    {"image": "menu.png", "variation": 1, "responses": ["deadline", "overloaded"]},
                    {"language": "fr", "responses": ["no_image"], "then": "text_only"},
                    {"variation": 3, "count": "global", "responses": ["internal"]},
                ],
            }
        )
    )

    async def main(sim: Simulator) -> dict[str, list[str]]:
        async with sdk_client(sim.base_url) as client:

            async def three(image: bytes, text: str) -> list[str]:
                return [await outcome(ask(client, image, text)) for _ in range(3)]

            menu1, menu2, other1, french = await asyncio.gather(
                three(menu, instruction(variation=1)),
                three(menu, instruction(variation=2)),
                three(other, instruction(variation=1)),
                three(other, instruction("fr", "French", 2)),
            )
            global_first = await outcome(ask(client, menu, instruction(variation=3)))
            global_second = await outcome(ask(client, other, instruction(variation=3)))
        return {
            "menu1": menu1,
            "menu2": menu2,
            "other1": other1,
            "french": french,
            "global": [global_first, global_second],
        }

    with Simulator("ok", scenario=scenario_file) as sim:
        seen = run(lambda: main(sim))
    ok = "STOP images=1"
    assert seen["menu1"] == ["504 DEADLINE_EXCEEDED", "503 UNAVAILABLE", ok]
    assert seen["menu2"] == [ok, ok, ok]  # no rule matches: the profile answers
    assert seen["other1"] == [ok, ok, ok]
    assert seen["french"] == ["NO_IMAGE images=0", "STOP images=0", "STOP images=0"]
    assert seen["global"] == ["500 INTERNAL", ok]


def test_scenario_overrides_the_profile_only_where_it_matches() -> None:
    scenario = {"rules": [{"variation": 1, "responses": [], "then": "ok"}]}

    async def main(sim: Simulator) -> list[str]:
        return [
            await outcome(generate(sim.base_url, make_png(), instruction(variation=v)))
            for v in (1, 2)
        ]

    with Simulator("outage", scenario=scenario) as sim:
        labels = run(lambda: main(sim))
    assert labels[0] == "STOP images=1"
    assert labels[1] in ("503 UNAVAILABLE", "500 INTERNAL")


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        (
            {"rules": [{"responses": ["explode"]}]},
            r"rules\[0\]\.responses\[0\]: unknown fault 'explode'",
        ),
        (
            {"rules": [{"responses": ["ok"], "colour": "red"}]},
            r"rules\[0\]: unknown field\(s\) 'colour'",
        ),
        (
            {"rules": [{"responses": [{"fault": "deadline", "retry_delay": 1}]}]},
            "takes no 'retry_delay'",
        ),
        (
            {"rules": [{"responses": [{"fault": "rate_limit", "retry_delay": "soon"}]}]},
            "must be a number",
        ),
        ({"rules": [{"variation": "two"}]}, '"variation" must be an integer'),
        ({"rules": [{"sha256": "abc"}]}, '"sha256" must be 64 hex digits'),
        ({"rules": [{"image": "nowhere.png"}]}, "cannot be read"),
        ({"rules": [{"count": "sometimes"}]}, '"count" must be "key" or "global"'),
        ({"rules": {"responses": []}}, '"rules" must be a list'),
        ({"default": "nope"}, "default: unknown fault 'nope'"),
        ({"defaults": "ok"}, r"unknown field\(s\) 'defaults'"),
    ],
)
def test_scenario_validation(scenario: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_scenario(scenario)


def test_scenario_file_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_scenario(broken)
    with pytest.raises(ValueError, match="cannot read it"):
        load_scenario(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown fault"):
        Simulator(scenario={"rules": [{"responses": ["nope"]}]})


# --- stats and concurrency ---------------------------------------------------------------------


def test_stats_endpoint_agrees_and_reset_clears() -> None:
    with Simulator() as sim:
        run(lambda: generate(sim.base_url, make_png(), instruction()))
        from_http = get_json(f"{sim.base_url}/_simulator/stats")
        assert from_http == sim.stats()
        assert from_http["requests"] == 1
        status, after = raw_post(f"{sim.base_url}/_simulator/reset", {})
        assert status == 200
        assert after == sim.stats()
        assert sim.stats()["requests"] == 0
        assert sim.stats()["last_request"] is None


def test_thirty_concurrent_requests_overlap() -> None:
    async def main(sim: Simulator) -> list[str]:
        async with sdk_client(sim.base_url) as client:
            calls = (ask(client, make_png(color=(i, i, i)), instruction()) for i in range(30))
            return list(await asyncio.gather(*(outcome(call) for call in calls)))

    with Simulator(latency=0.2) as sim:
        started = time.monotonic()
        labels = run(lambda: main(sim))
        elapsed = time.monotonic() - started
        stats = sim.stats()
    assert labels == ["STOP images=1"] * 30
    assert stats["requests"] == 30
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] > 1
    assert elapsed < 30 * 0.2 / 2


# --- the CLI ------------------------------------------------------------------------------------


def test_serve_command_prints_listening_first_and_answers() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "imagelingo_cli", "simulator", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("Listening on http://127.0.0.1:"), (
            first,
            process.stderr.read() if process.poll() is not None and process.stderr else "",
        )
        base_url = first.removeprefix("Listening on ")
        label = run(lambda: outcome(generate(base_url, make_png(), instruction())))
        assert label == "STOP images=1"
        assert get_json(f"{base_url}/_simulator/stats")["requests"] == 1
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "Profile ok" in stderr


def test_serve_command_rejects_a_bad_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"responses": ["nope"]}]}))
    result = subprocess.run(
        [sys.executable, "-m", "imagelingo_cli", "simulator", "serve", "--scenario", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown fault 'nope'" in result.stderr
    assert result.stdout == ""
