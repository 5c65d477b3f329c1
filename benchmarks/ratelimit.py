"""Throughput under a real requests-per-minute limit, imagelingo vs a hand-written baseline.

The simulator's `rate-limited` profile enforces R requests/minute; N variations cannot finish
in less than N/R minutes. Reported per contender: wall time / (N/R), the share of requests
answered 429, and attempts per variation. Run from the repository root:

    .venv/bin/python benchmarks/ratelimit.py [--rpm 600] [--variations 150] [--latency 0.3]
"""

from __future__ import annotations

import asyncio
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
from imagelingo_cli.simulator import Simulator
from imagelingo_cli.store import open_store

MODEL = "gemini-2.5-flash-image"


def imagelingo(
    images: list[Path], base_url: str, rpm: float | None, concurrency: int, work: Path
) -> dict[str, Any]:
    request = ProcessRequest(
        paths=images,
        variations=1,
        language=resolve_language("es"),
        model=MODEL,
        out_dir=work / f"out-{rpm}",
        policy=RetryPolicy(max_retries=8, max_wait=600),
        concurrency=concurrency,
        connection=Connection(api_key="bench", base_url=base_url),
        rpm=rpm,
    )
    store = open_store(work / f"bench-{rpm}.db")
    jobs = plan_process(request)

    async def main() -> Any:
        return await run_process(
            request, jobs, store, clock=MonotonicClock(), emit=lambda event: None
        )

    summary = anyio.run(main, backend="asyncio")
    store.close()
    return {"completed": summary.completed, "failed": summary.failed}


def baseline(images: list[Path], base_url: str, concurrency: int) -> dict[str, Any]:
    """What a user would write: a semaphore and google-genai's own retry defaults."""
    from google import genai
    from google.genai import types

    async def main() -> dict[str, Any]:
        client = genai.Client(
            api_key="bench",
            http_options=types.HttpOptions(
                base_url=base_url, api_version="v1beta", retry_options=types.HttpRetryOptions()
            ),
        )
        semaphore = asyncio.Semaphore(concurrency)
        outcome = {"completed": 0, "failed": 0}

        async def one(path: Path) -> None:
            async with semaphore:
                try:
                    await client.aio.models.generate_content(
                        model=MODEL,
                        contents=[
                            types.Part.from_bytes(data=path.read_bytes(), mime_type="image/png"),
                            "Translate all text in this image into Spanish (es).",
                        ],
                        config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
                    )
                    outcome["completed"] += 1
                except Exception:
                    outcome["failed"] += 1

        await asyncio.gather(*(one(p) for p in images))
        return outcome

    return asyncio.run(main())


def measure(name: str, run: Any, sim: Simulator, n: int, rpm: float) -> dict[str, Any]:
    sim.reset_stats()
    started = time.perf_counter()
    outcome = run()
    wall = time.perf_counter() - started
    stats = sim.stats()
    requests = int(stats["requests"])
    throttled = int(stats["outcomes"].get("rate_limit", 0))
    return {
        "contender": name,
        "wall_s": wall,
        "wall/(N/R)": wall / (n / rpm * 60),
        "429_share": throttled / requests if requests else 0.0,
        "attempts/variation": requests / n,
        "completed": outcome["completed"],
        "failed": outcome["failed"],
    }


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--rpm", type=float, default=600)
    parse.add_argument("--variations", type=int, default=150)
    parse.add_argument("--latency", type=float, default=0.3)
    parse.add_argument("--concurrency", type=int, default=16)
    args = parse.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = make_images(work / "imgs", args.variations)
        rows = []
        with Simulator("rate-limited", rpm=int(args.rpm), latency=args.latency) as sim:
            contenders = [
                (
                    "imagelingo (adaptive)",
                    lambda: imagelingo(images, sim.base_url, None, args.concurrency, work),
                ),
                (
                    "imagelingo --rpm R",
                    lambda: imagelingo(images, sim.base_url, args.rpm, args.concurrency, work),
                ),
                (
                    "baseline (semaphore + SDK retries)",
                    lambda: baseline(images, sim.base_url, args.concurrency),
                ),
            ]
            for name, run in contenders:
                rows.append(measure(name, run, sim, args.variations, args.rpm))
    ideal = args.variations / args.rpm * 60
    print_table(
        f"ratelimit: N={args.variations} variations at R={args.rpm:g}/min (ideal {ideal:.1f} s), "
        f"latency {args.latency:g} s, concurrency {args.concurrency}",
        rows,
    )
    write_json(
        args.json, {"benchmark": "ratelimit", "args": vars(args) | {"json": None}, "rows": rows}
    )


if __name__ == "__main__":
    main()
