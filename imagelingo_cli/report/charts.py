"""The geometry of the report's charts, drawn by the template as inline SVG.

    attempt_histogram(attempts) -> Histogram   attempts started per time slice, by outcome
    stack(parts, total)         -> [Segment]   one bar split into parts (percent widths)

Everything is in a 0..100 box per axis, so an SVG with `preserveAspectRatio="none"` stretches
it to any width; labels stay in HTML, where text keeps its size and can be read aloud.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Slice widths, in seconds, a person reads at a glance; the first that gives <= MAX_SLICES wins.
SLICE_SECONDS = (
    0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
    3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400,
)  # fmt: skip
MAX_SLICES = 60
MIN_SLICES = 20  # a short run still reads as a timeline, not one wide block
# Stacked bottom to top; the template gives each a colour and a legend entry.
CATEGORIES = ("succeeded", "limited", "failed", "interrupted", "in_flight")


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    category: str
    count: int
    start_s: float  # the slice's start, seconds after the first attempt


@dataclass(frozen=True)
class Histogram:
    """Attempts started per slice of time, stacked by category."""

    rects: tuple[Rect, ...]
    slice_seconds: float
    span_seconds: float
    peak: int  # the most attempts started in one slice
    totals: dict[str, int]  # attempts per category

    @property
    def empty(self) -> bool:
        return not self.rects


def attempt_histogram(attempts: Sequence[tuple[float, str]]) -> Histogram:
    """`attempts`: (start, in epoch seconds; category from CATEGORIES)."""
    totals = {name: 0 for name in CATEGORIES}
    if not attempts:
        return Histogram((), 1.0, 0.0, 0, totals)
    first = min(start for start, _ in attempts)
    span = max(start for start, _ in attempts) - first
    width = next((s for s in SLICE_SECONDS if span / s < MAX_SLICES), SLICE_SECONDS[-1])
    slices = max(1, math.floor(span / width) + 1)
    counts = [dict.fromkeys(CATEGORIES, 0) for _ in range(slices)]
    for start, category in attempts:
        counts[min(slices - 1, int((start - first) / width))][category] += 1
        totals[category] += 1
    peak = max(sum(c.values()) for c in counts)
    drawn = max(slices, MIN_SLICES)
    rects = []
    for index, count in enumerate(counts):
        base = 0
        for category in CATEGORIES:
            if count[category]:
                height = 100 * count[category] / peak
                rects.append(
                    Rect(
                        x=100 * index / drawn,
                        y=100 - 100 * base / peak - height,
                        width=100 / drawn,
                        height=height,
                        category=category,
                        count=count[category],
                        start_s=index * width,
                    )
                )
                base += count[category]
    return Histogram(tuple(rects), float(width), drawn * width, peak, totals)


@dataclass(frozen=True)
class Segment:
    name: str
    value: int
    x: float  # percent
    width: float  # percent


def stack(parts: Sequence[tuple[str, int]], total: int) -> list[Segment]:
    """`parts` laid end to end as percentages of `total` (empty parts left out)."""
    segments = []
    x = 0.0
    for name, value in parts:
        if value and total:
            width = 100 * value / total
            segments.append(Segment(name, value, x, width))
            x += width
    return segments
