"""Reading a `generateContent` request the way the Gemini API does, rejecting what it rejects.

`parse_route` recognises ``/{v1|v1beta}/models/{model}:generateContent``; `check_headers`
applies the API-key and ``X-Server-Timeout`` rules; `parse_body` (or `parse_request`, for a
request already decoded, such as a batch line) finds the inline image
(``inlineData``/``inline_data`` with ``mimeType``/``mime_type``, standard or URL-safe base64)
and the instruction text, decodes the image with Pillow, and extracts the language
(``into Spanish (es)``) and the variation (``variation 2``). Every rejection is a `Rejected`
carrying the exact reply the real API would give.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image

from imagelingo_cli.answers import decode_base64
from imagelingo_cli.simulator import faults
from imagelingo_cli.simulator.marking import UndecodableImage, decode_image

__all__ = [
    "SUPPORTED_MIME_TYPES",
    "GenerateRequest",
    "Rejected",
    "Route",
    "check_headers",
    "is_known_model",
    "parse_body",
    "parse_request",
    "parse_route",
]

SUPPORTED_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
)
_ROUTE = re.compile(r"^/(v1|v1beta)/models/([^/:]+):([A-Za-z]+)$")
_KNOWN_MODEL = re.compile(r"^gemini-[0-9a-z.\-]*image[0-9a-z.\-]*$")
_ALIASES = frozenset({"nano-banana-pro-preview", "gemini-nano-banana-2.1"})
_LANGUAGE = re.compile(r"into (.+?) \(([^)]+)\)")
_VARIATION = re.compile(r"variation (\d+)")
_IMAGE_NOT_VALID = "Provided image is not valid."


class Rejected(Exception):
    """The request is refused; `reply` is what the API answers and `outcome` its stats name."""

    def __init__(
        self, reply: faults.Reply, outcome: str, seen: dict[str, Any] | None = None
    ) -> None:
        super().__init__(outcome)
        self.reply = reply
        self.outcome = outcome
        self.seen: dict[str, Any] = seen if seen is not None else {}


@dataclass(frozen=True)
class Route:
    """A recognised API path."""

    api_version: str
    model: str
    method: str
    query: dict[str, list[str]]


@dataclass(frozen=True)
class GenerateRequest:
    """A valid image-edit request, reduced to what the simulator needs."""

    model: str
    api_version: str
    image: Image.Image
    image_bytes: int
    sha256: str
    mime_type: str
    text: str
    language_name: str | None
    language_tag: str | None
    variation: int
    wants_text: bool

    @property
    def key(self) -> str:
        """The per-request key: sha256 of the sent image bytes, ":", variation."""
        return f"{self.sha256}:{self.variation}"


def is_known_model(model: str) -> bool:
    """Whether the simulator serves `model` (any Gemini image id; ``gemini-9*`` never exists)."""
    if "gemini-9" in model:
        return False
    return model in _ALIASES or _KNOWN_MODEL.match(model) is not None


def parse_route(raw_path: str) -> Route | None:
    """The route of an API path, or None when it is not ``/{version}/models/{m}:{method}``."""
    parts = urlsplit(raw_path)
    match = _ROUTE.match(unquote(parts.path))
    if match is None:
        return None
    version, model, method = match.groups()
    return Route(version, model, method, parse_qs(parts.query))


def check_headers(headers: dict[str, str], route: Route, expected_key: str | None) -> None:
    """Key first (403 when absent, 400 when wrong), then the ``X-Server-Timeout`` minimum."""
    sent = headers.get("x-goog-api-key") or next(iter(route.query.get("key", [])), "")
    if not sent:
        raise Rejected(faults.unregistered_caller(), "unregistered_caller")
    if expected_key is not None and sent != expected_key:
        raise Rejected(faults.api_key_invalid(), "bad_key")
    deadline = headers.get("x-server-timeout")
    if deadline is not None:
        try:
            seconds = float(deadline)
        except ValueError:
            raise Rejected(
                faults.invalid_argument(f"Invalid deadline value: {deadline}"), "deadline_too_short"
            ) from None
        if seconds < 10:
            shown = int(seconds) if seconds.is_integer() else seconds
            message = (
                f"Manually set deadline {shown}s is too short. Minimum allowed deadline is 10s."
            )
            raise Rejected(faults.invalid_argument(message), "deadline_too_short")


def _inline_parts(payload: Any) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(path, inline data) pairs and text pieces, in order, from `contents[].parts[]`."""
    images: list[tuple[str, dict[str, Any]]] = []
    texts: list[str] = []
    contents = payload.get("contents") if isinstance(payload, dict) else None
    if not isinstance(contents, list):
        return images, texts
    for ci, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        for pi, part in enumerate(parts if isinstance(parts, list) else []):
            if not isinstance(part, dict):
                continue
            inline = part.get("inlineData", part.get("inline_data"))
            if isinstance(inline, dict):
                images.append((f"contents[{ci}].parts[{pi}].inline_data", inline))
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
    return images, texts


def _wants_text(payload: dict[str, Any]) -> bool:
    config = payload.get("generationConfig", payload.get("generation_config"))
    if not isinstance(config, dict):
        return True
    modalities = config.get("responseModalities", config.get("response_modalities"))
    if not isinstance(modalities, list):
        return True
    return any(str(m).upper() == "TEXT" for m in modalities)


def parse_body(raw: bytes, route: Route) -> GenerateRequest:
    """Validate the JSON body: exactly what the API needs to edit one image.

    A `Rejected` raised here carries in `seen` whatever was read before the refusal.
    """
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        message = f"Invalid JSON payload received. {exc}"
        raise Rejected(faults.invalid_argument(message), "invalid_payload") from None
    return parse_request(payload, route)


def parse_request(payload: Any, route: Route) -> GenerateRequest:
    """Validate a decoded ``GenerateContentRequest`` (a request body, or one line of a batch)."""
    seen: dict[str, Any] = {}

    def reject(reply: faults.Reply, outcome: str) -> Rejected:
        return Rejected(reply, outcome, seen)

    images, texts = _inline_parts(payload)
    text = "\n".join(texts)
    language = _LANGUAGE.search(text)
    variation = _VARIATION.search(text)
    seen.update(
        text=text,
        language=language.group(2) if language else None,
        language_name=language.group(1) if language else None,
        variation=int(variation.group(1)) if variation else 1,
    )
    if not images:
        raise reject(faults.invalid_argument(_IMAGE_NOT_VALID), "invalid_image")
    where, inline = images[0]
    mime = inline.get("mimeType", inline.get("mime_type"))
    seen["mime_type"] = mime
    if not isinstance(mime, str) or mime.lower() not in SUPPORTED_MIME_TYPES:
        raise reject(faults.invalid_argument(f"Unsupported MIME type: {mime}"), "unsupported_mime")
    mime = mime.lower()
    data = inline.get("data")
    try:
        if not isinstance(data, str):
            raise ValueError("no data")
        image_bytes = decode_base64(data)
    except (ValueError, binascii.Error):
        shown = data[:20] if isinstance(data, str) else data
        message = (
            f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed for {shown!r}"
        )
        raise reject(faults.invalid_argument(message), "invalid_payload") from None
    seen["image_bytes"] = len(image_bytes)
    try:
        image = decode_image(image_bytes, mime)
    except UndecodableImage:
        raise reject(faults.invalid_argument(_IMAGE_NOT_VALID), "invalid_image") from None
    return GenerateRequest(
        model=route.model,
        api_version=route.api_version,
        image=image,
        image_bytes=len(image_bytes),
        sha256=hashlib.sha256(image_bytes).hexdigest(),
        mime_type=mime,
        text=text,
        language_name=language.group(1) if language else None,
        language_tag=language.group(2) if language else None,
        variation=int(variation.group(1)) if variation else 1,
        wants_text=_wants_text(payload),
    )
