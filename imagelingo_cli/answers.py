"""A 200 `generateContent` answer, read from the JSON body exactly as Gemini sent it.

google-genai 3.6's converter for the Gemini API drops `finishMessage` (Google's own account of
a refused image, with its support code), so the adapter asks the SDK for the raw HTTP body
and reads it here. Only what imagelingo uses is read; unknown fields are ignored, as the SDK
ignores them. A Batch-mode result holds the same body, so it can be read the same way (already
decoded from its JSONL line: parsing it again would cost as much as the line itself).

    read_answer(body) -> Answer      json.JSONDecodeError: not JSON; binascii.Error: bad base64
    decode_base64(text) -> bytes     standard or URL-safe alphabet, padding optional
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "Candidate", "InlineImage", "Usage", "decode_base64", "read_answer"]


@dataclass(frozen=True)
class Usage:
    """What one answer was billed: output (candidate) and thinking tokens are counted apart,
    and every 200 has usage, also one that holds no image."""

    prompt_tokens: int | None = None
    output_tokens: int | None = None
    thoughts_tokens: int | None = None
    total_tokens: int | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class InlineImage:
    """An `inlineData` part that may hold the image: declared `image/*`, or with no type."""

    data: bytes = field(repr=False)
    declared_type: str | None  # what the part said; the bytes decide (images.verify_image)


@dataclass(frozen=True)
class Candidate:
    finish_reason: str | None
    finish_message: str | None
    images: tuple[InlineImage, ...]  # not thoughts, in answer order
    texts: tuple[str, ...]  # not thoughts


@dataclass(frozen=True)
class Answer:
    candidates: tuple[Candidate, ...]
    block_reason: str | None  # promptFeedback.blockReason: the request itself was refused
    block_message: str | None
    usage: Usage

    @property
    def final_image(self) -> InlineImage | None:
        """The last image of the first candidate that has one. Thinking image models may show
        interim renders before the final one; thought parts are never counted."""
        for candidate in self.candidates:
            if candidate.images:
                return candidate.images[-1]
        return None


def decode_base64(text: str) -> bytes:
    """Bytes from base64 in either alphabet (the SDK sends URL-safe, Google answers standard)."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def read_answer(body: str | bytes | Mapping[str, Any]) -> Answer:
    """The parts of a 200 body that matter, from its text or already decoded. An empty body is
    an empty answer, as for the SDK."""
    data = body if isinstance(body, Mapping) else json.loads(body) if body else {}
    payload: dict[str, Any] = data if isinstance(data, dict) else {}
    feedback = _object(payload.get("promptFeedback"))
    return Answer(
        candidates=tuple(_candidate(_object(c)) for c in _list(payload.get("candidates"))),
        block_reason=_text(feedback.get("blockReason")),
        block_message=_text(feedback.get("blockReasonMessage")),
        usage=_usage(_object(payload.get("usageMetadata")), _text(payload.get("modelVersion"))),
    )


def _candidate(raw: dict[str, Any]) -> Candidate:
    images: list[InlineImage] = []
    texts: list[str] = []
    for part in map(_object, _list(_object(raw.get("content")).get("parts"))):
        if part.get("thought") is True:
            continue
        inline = _object(part.get("inlineData", part.get("inline_data")))
        declared = _text(inline.get("mimeType", inline.get("mime_type")))
        encoded = inline.get("data")
        if isinstance(encoded, str) and (declared is None or declared.startswith("image/")):
            images.append(InlineImage(decode_base64(encoded), declared))
        text = _text(part.get("text"))
        if text and text.strip():
            texts.append(text.strip())
    return Candidate(
        finish_reason=_text(raw.get("finishReason")),
        finish_message=_text(raw.get("finishMessage")),
        images=tuple(images),
        texts=tuple(texts),
    )


def _usage(raw: dict[str, Any], model_version: str | None) -> Usage:
    return Usage(
        prompt_tokens=_count(raw.get("promptTokenCount")),
        output_tokens=_count(raw.get("candidatesTokenCount")),
        thoughts_tokens=_count(raw.get("thoughtsTokenCount")),
        total_tokens=_count(raw.get("totalTokenCount")),
        model_version=model_version,
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: object) -> int | None:
    """A token count: a JSON number, or a string as proto3 JSON writes int64."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
