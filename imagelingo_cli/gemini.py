"""The Gemini boundary: one image and a translation instruction in, one image or one
classified `TranslationError` out. The only module that talks to google-genai."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from imagelingo_cli.errors import ErrorCode, TranslationError, classify_exception, classify_response
from imagelingo_cli.languages import Language

if TYPE_CHECKING:
    from google import genai

API_VERSION = "v1beta"  # image output is documented and tested on v1beta; v1 is not verified
MIN_SERVER_TIMEOUT_S = 10  # the API rejects an X-Server-Timeout under 10 s

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
class Translation:
    data: bytes
    mime_type: str
    model_version: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None


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
        import httpx2
        from google import genai
        from google.genai import types

        self.timeout = timeout
        # An explicit httpx2 client pins the transport: with aiohttp installed the SDK would
        # otherwise switch to it and raise a different family of exceptions.
        self._http = httpx2.AsyncClient(
            timeout=None,
            limits=httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        server_timeout_ms = max(math.ceil(timeout), MIN_SERVER_TIMEOUT_S) * 1000
        self._client: genai.Client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,  # None: the SDK honours GOOGLE_GEMINI_BASE_URL itself
                api_version=API_VERSION,
                timeout=server_timeout_ms,
                httpx_async_client=self._http,
            ),
        )
        self._config = types.GenerateContentConfig(response_modalities=["IMAGE"], candidate_count=1)
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
        except TimeoutError:
            raise TranslationError(
                ErrorCode.TIMEOUT, f"no answer within {self.timeout:g} s (the --timeout deadline)"
            ) from None
        except Exception as exc:
            raise classify_exception(exc) from None
        return _translation_from(response)

    async def aclose(self) -> None:
        await self._http.aclose()


def _translation_from(response: Any) -> Translation:
    problem = classify_response(response)
    if problem is not None:
        raise problem
    for candidate in response.candidates or []:
        for part in getattr(candidate.content, "parts", None) or []:
            data = part.inline_data
            if part.thought or data is None or not data.data:
                continue
            if str(data.mime_type or "").startswith("image/"):
                usage = response.usage_metadata
                return Translation(
                    data=data.data,
                    mime_type=str(data.mime_type),
                    model_version=response.model_version,
                    prompt_tokens=getattr(usage, "prompt_token_count", None),
                    output_tokens=getattr(usage, "candidates_token_count", None),
                    total_tokens=getattr(usage, "total_token_count", None),
                )
    raise TranslationError(ErrorCode.NO_IMAGE, "no image in the answer", 200)
