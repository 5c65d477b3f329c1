"""Helpers shared by the benchmarks: test images, a result table, optional JSON output."""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw


def make_images(folder: Path, count: int, size: int = 48) -> list[Path]:
    """`count` small distinct PNGs (distinct content, so every variation has its own key)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = Image.new("RGB", (size, size), (index * 37 % 256, index * 91 % 256, 200))
        ImageDraw.Draw(image).text((4, size // 3), f"#{index}", fill="white")
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        path = folder / f"img{index:05d}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print(f"\n{title}")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row[c]).ljust(widths[c]) for c in columns))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def parser(description: str) -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=description)
    parse.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parse


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {path}")


def seeded(seed: int = 0) -> random.Random:
    return random.Random(seed)
