"""What Gemini image models cost, and the estimated spend of some work.

    price_of(model)                                  -> Price | None
    estimate(model, images, *, input_tokens=0, batch=False) -> Estimate | None

List prices in USD, at the default (1K) output resolution, as transcribed on 2026-09-20 from
https://ai.google.dev/gemini-api/docs/pricing (gemini-2.5-flash-image: 1290 output tokens at
$30 / 1M = $0.039 an image, input $0.30 / 1M; gemini-3-pro-image: 1120 tokens at $120 / 1M =
$0.134 an image, input $2 / 1M) and from third-party transcriptions of Google's image
generation page for gemini-3.1-flash-image (1120 tokens at $60 / 1M = $0.067, input
$0.25 / 1M). The Batch API costs half of each. Thinking tokens and larger output sizes are
not priced here. A model missing from the table has no estimate: prices are never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BATCH_FACTOR = 0.5  # the Batch API bills 50 % of the interactive price
PRICES_AS_OF = "2026-09-20"


@dataclass(frozen=True)
class Price:
    """Interactive list prices of one model."""

    per_image_usd: float  # one output image at 1K
    per_million_input_usd: float  # input tokens (the prompt and the source image)


_FLASH_25 = Price(per_image_usd=0.039, per_million_input_usd=0.30)
_PRO_3 = Price(per_image_usd=0.134, per_million_input_usd=2.00)
_FLASH_31 = Price(per_image_usd=0.067, per_million_input_usd=0.25)

PRICES: dict[str, Price] = {
    "gemini-2.5-flash-image": _FLASH_25,
    "gemini-3-pro-image": _PRO_3,
    "gemini-3-pro-image-preview": _PRO_3,
    "nano-banana-pro-preview": _PRO_3,
    "gemini-3.1-flash-image": _FLASH_31,
    "gemini-3.1-flash-image-preview": _FLASH_31,
}


@dataclass(frozen=True)
class Estimate:
    """The estimated cost of `images` output images and `input_tokens` with one model."""

    model: str
    images: int
    input_tokens: int
    batch: bool
    images_usd: float
    input_usd: float

    @property
    def total_usd(self) -> float:
        return self.images_usd + self.input_usd


def spend(usage: Iterable[Mapping[str, Any]]) -> tuple[float, list[str]]:
    """What `queries.usage_by_model` rows cost at list price, sent to Gemini (simulated work
    costs nothing), and the models whose price is not known."""
    total = 0.0
    unknown: list[str] = []
    for row in usage:
        if row["backend"] != "gemini" or not row["answers"]:
            continue
        cost = estimate(
            str(row["model"]),
            int(row["images"]),
            input_tokens=int(row["prompt_tokens"]),
            batch=bool(row.get("batch")),
        )
        if cost is None:
            unknown.append(str(row["model"]))
        else:
            total += cost.total_usd
    return total, sorted(set(unknown))


def price_of(model: str) -> Price | None:
    """The model's interactive list price; None when it is not known."""
    return PRICES.get(model.removeprefix("models/"))


def estimate(
    model: str, images: int, *, input_tokens: int = 0, batch: bool = False
) -> Estimate | None:
    """The estimated cost of this work, or None when the model's price is not known."""
    price = price_of(model)
    if price is None:
        return None
    factor = BATCH_FACTOR if batch else 1.0
    return Estimate(
        model=model,
        images=images,
        input_tokens=input_tokens,
        batch=batch,
        images_usd=images * price.per_image_usd * factor,
        input_usd=input_tokens / 1_000_000 * price.per_million_input_usd * factor,
    )
