"""The Batch API's JSONL, one line at a time in both directions, so that memory stays flat in
the number of variations.

    request_line(key, image, language, variation) -> bytes   one request, the image inline
    RequestFile(path, cap)                                    a job's input, under a size cap
    result_lines(path) -> Iterator[ResultLine]                a downloaded results file
    inline_result(entry) -> ResultLine                        an inline answer of a job
    outcome(line) -> Translation                              or the classified TranslationError

A request line is the same request `gemini.GeminiTranslator` sends (the image, then the same
instruction, the same generation config), keyed by the variation's generation id. The image is
inline as base64: an uploaded image file would expire after 48 h, possibly before the job runs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from imagelingo_cli.errors import ErrorCode, TranslationError, classify_status
from imagelingo_cli.gemini import (
    CANDIDATE_COUNT,
    RESPONSE_MODALITIES,
    Translation,
    build_instruction,
    read_translation,
)
from imagelingo_cli.images import PreparedImage
from imagelingo_cli.languages import Language

__all__ = [
    "MAX_INPUT_BYTES",
    "RequestFile",
    "ResultLine",
    "inline_result",
    "outcome",
    "request_line",
    "result_lines",
]

MAX_INPUT_BYTES = 2_000_000_000  # the API takes input files up to 2 GB


def request_line(key: str, image: PreparedImage, language: Language, variation: int) -> bytes:
    """One JSONL line asking for one variation (blocking: base64 of the whole image)."""
    request = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {
                        "inlineData": {
                            "mimeType": image.mime_type,
                            "data": base64.b64encode(image.data).decode("ascii"),
                        }
                    },
                    {"text": build_instruction(language, variation)},
                ],
            }
        ],
        "generationConfig": {
            "responseModalities": list(RESPONSE_MODALITIES),
            "candidateCount": CANDIDATE_COUNT,
        },
    }
    line = json.dumps({"key": key, "request": request}, separators=(",", ":"))
    return line.encode("ascii") + b"\n"


class RequestFile:
    """One job's input being written: lines are added while they fit under `cap` bytes (a
    first line always fits: one variation is never split)."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path = path
        self.cap = cap
        self.size = 0
        self.lines = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: BinaryIO = path.open("wb")

    def fits(self, line: bytes) -> bool:
        return self.lines == 0 or self.size + len(line) <= self.cap

    def write(self, line: bytes) -> None:
        """Blocking: run it in a worker thread."""
        self._handle.write(line)
        self.size += len(line)
        self.lines += 1

    def close(self) -> None:
        self._handle.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ResultLine:
    """One variation's result: its key, and Gemini's answer or a google.rpc.Status."""

    key: str | None
    response: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    unreadable: str | None = None  # why the line could not be read
    size: int = 0  # bytes of the line in the results file (0: an inline answer)


def result_lines(path: Path) -> Iterator[ResultLine]:
    """The lines of a results file, read one at a time (blocking)."""
    with path.open("rb") as lines:
        for raw in lines:
            if raw.strip():
                yield _result_line(raw)


def _result_line(raw: bytes) -> ResultLine:
    size = len(raw)
    try:
        line = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return ResultLine(None, unreadable=f"a results line is not JSON: {exc}", size=size)
    if not isinstance(line, dict):
        return ResultLine(None, unreadable="a results line is not a JSON object", size=size)
    key = line.get("key")
    # The docs call a failed line's field a "status object"; Google's own examples read `error`.
    error = line.get("error", line.get("status"))
    return ResultLine(
        str(key) if key is not None else None,
        _object(line.get("response")),
        _object(error),
        size=size,
    )


def inline_result(entry: Mapping[str, Any]) -> ResultLine:
    """An inline answer `{response | error, metadata: {key}}`; without the metadata echo its
    key is unknown (order proves nothing: answers come back in any order)."""
    key = _object(entry.get("metadata") or {}) or {}
    found = key.get("key")
    return ResultLine(
        str(found) if found is not None else None,
        _object(entry.get("response")),
        _object(entry.get("error", entry.get("status"))),
    )


def outcome(line: ResultLine) -> Translation:
    """The verified image of a line, or the TranslationError saying why there is none: an
    answer goes through the same reading as an interactive one, a Status through the same
    classification (blocking)."""
    if line.response is not None:
        return read_translation(line.response)
    if line.error is not None:
        raise classify_status(line.error)
    raise TranslationError(
        ErrorCode.API_ERROR,
        "the job's result for this variation holds neither an answer nor an error",
    )


def _object(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None
