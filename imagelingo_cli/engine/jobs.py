"""What a batch is asked to do: images, the variations of each, and how to run them.
Validated here, once, whoever builds them (the CLI, a script, a test)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imagelingo_cli.errors import SetupError
from imagelingo_cli.gemini import Translation
from imagelingo_cli.images import SourceImage
from imagelingo_cli.languages import Language
from imagelingo_cli.limits import MAX_CONCURRENCY
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.states import Trigger


class Translator(Protocol):
    """One request to the model: the image and what to make of it in, a verified image out,
    or a classified TranslationError (`gemini.GeminiTranslator`; `testing.ScriptedTranslator`)."""

    async def translate(
        self, image: bytes, mime_type: str, language: Language, variation: int, model: str
    ) -> Translation: ...


@dataclass(frozen=True)
class VariationSpec:
    variation: int
    language: Language
    model: str  # the variation's model: part of what identifies it
    backend: str  # "gemini" or "simulator:<profile>": which translator serves it
    out_dir: Path
    generation_id: str | None = None  # retry-failed: the variation's existing row
    send_model: str | None = None  # retry-failed --model: ask this model instead

    def __post_init__(self) -> None:
        if self.variation < 1:
            raise SetupError(f"a variation number starts at 1 (got {self.variation})")

    @property
    def model_asked(self) -> str:
        return self.send_model or self.model


@dataclass(frozen=True)
class ImageJob:
    source: SourceImage
    variations: tuple[VariationSpec, ...]
    expected_sha256: str | None = None  # retry-failed: the content the variations were made from
    problem: str | None = None  # found but unusable (broken link, loop, unreadable folder)


@dataclass(frozen=True)
class BatchOptions:
    command: str  # "process" or "retry-failed"
    trigger: Trigger  # of each variation's first attempt in this run
    policy: RetryPolicy
    concurrency: int
    rpm: float | None = None
    force: bool = False  # translate again what is completed
    base_url: str | None = None  # recorded with each variation sent
    run_options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise SetupError(
                f"concurrency must be between 1 and {MAX_CONCURRENCY} (got {self.concurrency})"
            )
        if self.rpm is not None and not self.rpm > 0:
            raise SetupError(f"requests per minute must be more than 0 (got {self.rpm:g})")
