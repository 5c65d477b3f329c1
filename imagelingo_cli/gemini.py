"""The Gemini boundary: one image and a translation instruction in, one verified image or one
classified `TranslationError` out. The only module that talks to google-genai.

Every 200 answer goes through `read_translation`: read from the raw body (for Google's
finishMessage), the last non-thought image taken, its bytes decoded before it is accepted,
and its tokens kept whether or not it holds an image. A Batch-mode result can go through it too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from imagelingo_cli.answers import Usage, read_answer
from imagelingo_cli.errors import ErrorCode, TranslationError, classify_answer, classify_exception
from imagelingo_cli.images import BrokenImage, verify_image
from imagelingo_cli.languages import Language

if TYPE_CHECKING:
    import httpx2
    from google import genai

API_VERSION = "v1beta"  # image output is documented and tested on v1beta; v1 is not verified
MIN_SERVER_TIMEOUT_S = 10  # the API rejects an X-Server-Timeout under 10 s
# What every translation asks of the model, sent one by one or inside a Batch API job.
RESPONSE_MODALITIES = ("IMAGE",)
CANDIDATE_COUNT = 1

# Each variation asks for the same translation with a different nuance, so variations differ
# in wording or typesetting choices rather than being the same image twice.
_NUANCES = (
    "Prefer the most faithful, literal translation.",
    "Prefer natural, idiomatic wording a native speaker would use on this kind of image.",
    "Prefer concise wording that fits comfortably in the original text boxes.",
    "Prefer a slightly more formal register.",
    "Prefer a slightly more casual, friendly register.",
)


def build_instruction(language: Language, variation: int) -> str:
    nuance = _NUANCES[(variation - 1) % len(_NUANCES)]
    return (
        f"Translate all text in this image into {language.name} ({language.tag}). "
        "Keep the layout, fonts, colours, text sizes and positions, and leave everything that "
        "is not text exactly as it is. Return only the edited image. "
        f"This is variation {variation}: {nuance}"
    )


def api_key_from_env() -> str | None:
    """The key google-genai would use: GOOGLE_API_KEY wins over GEMINI_API_KEY."""
    return os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY") or None


@dataclass(frozen=True)
class ApiClient:
    """A google-genai client pinned to API_VERSION, on an httpx2 transport of our own."""

    genai: genai.Client
    http: httpx2.AsyncClient

    async def aclose(self) -> None:
        await self.http.aclose()


def api_client(
    api_key: str, *, base_url: str | None, timeout: float, max_connections: int
) -> ApiClient:
    """The client both adapters talk through; google-genai's own retries stay off."""
    import httpx2
    from google import genai
    from google.genai import types

    # The SDK itself reads GOOGLE_GEMINI_BASE_URL when no base URL is given.
    check_base_url(base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL"))
    # An explicit httpx2 client pins the transport: with aiohttp installed the SDK would
    # otherwise switch to it and raise a different family of exceptions.
    http = httpx2.AsyncClient(
        timeout=None,
        limits=httpx2.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )
    server_timeout_ms = max(math.ceil(timeout), MIN_SERVER_TIMEOUT_S) * 1000
    client = genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=base_url,  # None: the SDK honours GOOGLE_GEMINI_BASE_URL itself
            api_version=API_VERSION,
            timeout=server_timeout_ms,
            httpx_async_client=http,
        ),
    )
    return ApiClient(client, http)


@dataclass(frozen=True)
class Translation:
    data: bytes
    mime_type: str  # sniffed from the bytes, whatever the answer declared
    usage: Usage


class GeminiTranslator:
    """Sends one translation request per call; google-genai's own retries stay off."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_connections: int = 64,
    ) -> None:
        from google.genai import types

        self.timeout = timeout
        self._api = api_client(
            api_key, base_url=base_url, timeout=timeout, max_connections=max_connections
        )
        self._client: genai.Client = self._api.genai
        # The raw body, not the SDK's parsed answer: its converter drops finishMessage.
        self._config = types.GenerateContentConfig(
            response_modalities=list(RESPONSE_MODALITIES),
            candidate_count=CANDIDATE_COUNT,
            should_return_http_response=True,
        )
        self._types = types

    async def translate(
        self, image: bytes, mime_type: str, language: Language, variation: int, model: str
    ) -> Translation:
        """One attempt within `timeout` seconds in total; raises TranslationError."""
        contents: list[Any] = [
            self._types.Part.from_bytes(data=image, mime_type=mime_type),
            build_instruction(language, variation),
        ]
        try:
            with anyio.fail_after(self.timeout):
                response = await self._client.aio.models.generate_content(
                    model=model, contents=contents, config=self._config
                )
        except TimeoutError:  # our own deadline (httpx2's timeouts are not TimeoutError)
            deadline = TimeoutError(f"no answer within the {self.timeout:g} s deadline")
            raise classify_exception(deadline) from None
        except Exception as exc:
            raise classify_exception(exc) from None
        raw = response.sdk_http_response
        return await translation_from(raw.body if raw is not None and raw.body else "")

    async def aclose(self) -> None:
        await self._api.aclose()


async def translation_from(body: str | bytes | Mapping[str, Any]) -> Translation:
    """`read_translation`, off the event loop."""
    return await anyio.to_thread.run_sync(read_translation, body)


def read_translation(body: str | bytes | Mapping[str, Any]) -> Translation:
    """The verified image of one 200 answer body (its text, or already decoded), or the
    TranslationError saying why there is none (with the tokens the answer was billed).
    Blocking: the image is checked byte by byte."""
    try:
        answer = read_answer(body)
    except Exception as exc:
        raise classify_exception(exc) from None
    image = answer.final_image
    if image is None:
        raise classify_answer(answer)
    try:
        sniffed = verify_image(image.data)
    except BrokenImage as exc:
        size = f"{len(image.data)} byte{'s' * (len(image.data) != 1)}"
        declared = image.declared_type or "no type"
        raise TranslationError(
            ErrorCode.API_ERROR,
            f"the image in the answer ({declared}, {size}) {exc}",
            200,
            usage=answer.usage,
        ) from None
    return Translation(image.data, sniffed, answer.usage)


def check_base_url(base_url: str | None) -> None:
    """Refuse, before anything is sent, a base URL no request can go to: httpx2 would raise
    InvalidURL or UnsupportedProtocol on the first attempt; this raises them now, classified
    (a SetupError)."""
    if base_url is None:
        return
    import httpx2

    try:
        url = httpx2.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise httpx2.UnsupportedProtocol(f"{base_url!r} is not an http:// or https:// address")
    except Exception as exc:
        raise classify_exception(exc) from None
