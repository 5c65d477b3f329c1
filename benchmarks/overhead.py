"""The cost of imagelingo's bookkeeping per attempt, against a zero-latency simulator.

Both contenders send the same N requests at the same concurrency to a simulator running in
its own process (so this process's CPU time is the client's alone): imagelingo's engine (image
checks, the database, events) vs the same requests sent with a bare semaphore and no retries.

    .venv/bin/python benchmarks/overhead.py [--variations 1000] [--concurrency 16]
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import make_images, parser, print_table, write_json

from imagelingo_cli.clock import MonotonicClock
from imagelingo_cli.languages import resolve_language
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.runner import Connection, ProcessRequest, plan_process, run_process
from imagelingo_cli.store import open_store

MODEL = "gemini-2.5-flash-image"


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "imagelingo_cli", "simulator", "serve", "--profile", "ok"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    return process, line.removeprefix("Listening on ")


def imagelingo(images: list[Path], base_url: str, concurrency: int, work: Path) -> None:
    request = ProcessRequest(
        paths=images,
        variations=1,
        languages=(resolve_language("es"),),
        model=MODEL,
        out_dir=work / "out",
        policy=RetryPolicy(),
        concurrency=concurrency,
        connection=Connection(api_key="bench", base_url=base_url),
    )
    store = open_store(work / "bench.db")
    jobs = plan_process(request, store)

    async def main() -> None:
        await run_process(request, jobs, store, clock=MonotonicClock(), emit=lambda event: None)

    anyio.run(main, backend="asyncio")
    store.close()


def baseline(images: list[Path], base_url: str, concurrency: int, work: Path) -> None:
    """A semaphore, the SDK without retries, and the output written: the least a tool must do."""
    from google import genai
    from google.genai import types

    async def main() -> None:
        client = genai.Client(
            api_key="bench", http_options=types.HttpOptions(base_url=base_url, api_version="v1beta")
        )
        semaphore = asyncio.Semaphore(concurrency)
        out = work / "baseline-out"
        out.mkdir()

        async def one(path: Path) -> None:
            async with semaphore:
                response = await client.aio.models.generate_content(
                    model=MODEL,
                    contents=[
                        types.Part.from_bytes(data=path.read_bytes(), mime_type="image/png"),
                        "Translate all text in this image into Spanish (es).",
                    ],
                    config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
                )
                part = response.candidates[0].content.parts[-1]  # type: ignore[index,union-attr]
                (out / path.name).write_bytes(part.inline_data.data)  # type: ignore[union-attr,arg-type]

        await asyncio.gather(*(one(p) for p in images))

    asyncio.run(main())


def measure(name: str, run: Any, attempts: int) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "contender": name,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms/attempt": cpu / attempts * 1000,
    }


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--variations", type=int, default=1000)
    parse.add_argument("--concurrency", type=int, default=16)
    args = parse.parse_args()
    # One-time import costs are start-up, not per-attempt bookkeeping: pay them before timing.
    import google.genai  # noqa: F401

    resolve_language("es")
    simulator, base_url = start_simulator()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            images = make_images(work / "imgs", args.variations)
            ours = measure(
                "imagelingo",
                lambda: imagelingo(images, base_url, args.concurrency, work),
                args.variations,
            )
            base = measure(
                "baseline (no retries)",
                lambda: baseline(images, base_url, args.concurrency, work),
                args.variations,
            )
    finally:
        simulator.terminate()
        simulator.wait()
    extra = (ours["cpu_s"] - base["cpu_s"]) / args.variations * 1000
    rows = [ours, base]
    print_table(
        f"overhead: {args.variations} variations, zero latency, concurrency {args.concurrency}",
        rows,
    )
    print(
        f"\nour bookkeeping: {extra:.2f} ms CPU per attempt; wall ratio {ours['wall_s'] / base['wall_s']:.2f}x"
    )
    write_json(
        args.json, {"benchmark": "overhead", "rows": rows, "extra_cpu_ms_per_attempt": extra}
    )


if __name__ == "__main__":
    main()
