"""A `Translator` that answers from a script, for tests of the engine that need neither HTTP
nor google-genai (as httpx's MockTransport stands in for the network).

    translator = ScriptedTranslator(clock)
    translator.enqueue(TranslationError(ErrorCode.RATE_LIMIT, "slow down", 429), variation=1)
    ... run a Batch with {"gemini": translator} ...
    translator.requests   # every request, in order

A request takes the first queued answer whose criteria it meets (image content, variation,
language), else a translated image. Each answer takes `seconds` on the engine's clock.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from imagelingo_cli.answers import Usage
from imagelingo_cli.clock import Clock
from imagelingo_cli.digest import sha256
from imagelingo_cli.errors import TranslationError
from imagelingo_cli.gemini import Translation
from imagelingo_cli.languages import Language

__all__ = ["IMAGE", "Request", "ScriptedTranslator", "translated"]

# A whole 1×1 PNG: what a scripted success returns.
IMAGE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


def translated(data: bytes = IMAGE, mime_type: str = "image/png") -> Translation:
    return Translation(data, mime_type, Usage(prompt_tokens=1290, output_tokens=1290))


@dataclass(frozen=True)
class Request:
    image_sha256: str
    mime_type: str
    variation: int
    language: str
    model: str


@dataclass
class _Queued:
    answer: Translation | TranslationError
    seconds: float
    image_sha256: str | None
    variation: int | None
    language: str | None

    def matches(self, request: Request) -> bool:
        return (
            (self.image_sha256 is None or self.image_sha256 == request.image_sha256)
            and (self.variation is None or self.variation == request.variation)
            and (self.language is None or self.language == request.language)
        )


@dataclass
class ScriptedTranslator:
    clock: Clock
    seconds: float = 0.0  # how long an answer that was not queued takes
    requests: list[Request] = field(default_factory=list)
    _queue: list[_Queued] = field(default_factory=list)

    def enqueue(
        self,
        answer: Translation | TranslationError,
        *,
        seconds: float = 0.0,
        image_sha256: str | None = None,
        variation: int | None = None,
        language: str | None = None,
    ) -> None:
        self._queue.append(_Queued(answer, seconds, image_sha256, variation, language))

    async def translate(
        self, image: bytes, mime_type: str, language: Language, variation: int, model: str
    ) -> Translation:
        request = Request(sha256(image), mime_type, variation, language.tag, model)
        self.requests.append(request)
        queued = next((q for q in self._queue if q.matches(request)), None)
        if queued is not None:
            self._queue.remove(queued)
        answer = queued.answer if queued is not None else translated()
        seconds = queued.seconds if queued is not None else self.seconds
        if seconds:
            await self.clock.sleep(seconds)
        if isinstance(answer, TranslationError):
            raise answer
        return answer
