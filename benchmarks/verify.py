"""What checking a returned image costs, next to what handling an answer costs anyway.

For images of the sizes Gemini returns (gemini-2.5-flash-image: 1024x1024 PNG; Gemini 3:
1408x768 JPEG at 1K, 5632x3072 at 4K), side by side in one run: reading the answer body
(JSON and base64, which every answer needs) and `verify_image` (the type sniffed from the
bytes, then a PNG checked chunk by chunk against its CRCs, other formats decoded whole),
which the adapter runs in a worker thread before it accepts an image.

    .venv/bin/python benchmarks/verify.py [--repeat 20]
"""

from __future__ import annotations

import base64
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import parser, print_table, seeded, write_json

from imagelingo_cli.answers import read_answer
from imagelingo_cli.images import verify_image

SIZES = (("PNG", 1024, 1024), ("JPEG", 1408, 768), ("JPEG", 5632, 3072))


def photo_like(width: int, height: int) -> Image.Image:
    """Smooth gradients plus noise: compresses about as well as a photograph with text."""
    rng = seeded(width)
    noise = Image.frombytes("L", (width // 8, height // 8), rng.randbytes(width * height // 64))
    gradient = Image.linear_gradient("L").resize((width, height))
    channels = [
        gradient,
        noise.resize((width, height)),
        gradient.rotate(90).resize((width, height)),
    ]
    return Image.merge("RGB", channels)


def encode(image: Image.Image, pillow_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **({"quality": 90} if pillow_format == "JPEG" else {}))
    return buffer.getvalue()


def median_ms(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--repeat", type=int, default=20)
    args = parse.parse_args()
    rows = []
    for pillow_format, width, height in SIZES:
        data = encode(photo_like(width, height), pillow_format)
        inline = {"mimeType": f"image/{pillow_format.lower()}", "data": base64.b64encode(data)}
        body = json.dumps(
            {"candidates": [{"content": {"parts": [{"inlineData": inline}]}}]}, default=bytes.decode
        )
        read = median_ms(lambda body=body: read_answer(body), args.repeat)
        verify = median_ms(lambda data=data: verify_image(data), args.repeat)
        rows.append(
            {
                "image": f"{width}x{height} {pillow_format}",
                "MB": len(data) / 1e6,
                "read_answer_ms": read,
                "verify_image_ms": verify,
                "verify/read": verify / read,
            }
        )
    print_table(f"checking a returned image (median of {args.repeat})", rows)
    write_json(args.json, {"benchmark": "verify", "rows": rows})


if __name__ == "__main__":
    main()
