"""Throughput under a per-minute quota the client does not know, imagelingo vs a baseline.

The simulator's `rate-limited` profile enforces R requests/minute and answers beyond it with
Gemini's per-minute 429 (QuotaFailure naming R, RetryInfo until the next free slot), so N
variations cannot finish in less than N/R minutes. imagelingo runs with the approved policy
(2 automatic retries) and no --rpm; the baseline is what a user would write: a semaphore and
google-genai's own retries. The last case has no quota: 6 of 64 variations get one 429 with
nothing behind it, measured against the same batch without them.

Reported per case and contender: completed, failed, the share of requests answered 429, wall
time, wall / (N/R) (or / the clean run), and whether the issue's target holds. Run from the
repository root (all cases take about 10 minutes; --case picks one):

    .venv/bin/python benchmarks/ratelimit.py [--case r30|r120|r600|sparse] [--json FILE]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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
SPARSE_PICKS = (5, 15, 25, 35, 45, 55)  # the 6 of 64 that get one 429


@dataclass(frozen=True)
class Case:
    name: str
    rpm: int | None  # None: no quota
    variations: int
    concurrency: int
    latency: float
    max_429_share: float | None
    wall_factor: float  # target: wall <= wall_factor x N/R + wall_slack (or x the clean run)
    wall_slack: float = 0.0


CASES = {
    "r30": Case("R = 30/min", 30, 30, 8, 0.2, 0.25, 1.2, 5.0),
    "r120": Case("R = 120/min", 120, 120, 16, 1.0, 0.10, 1.2, 5.0),
    "r600": Case("R = 600/min", 600, 1000, 16, 0.3, 0.03, 1.1),
    "sparse": Case("sparse one-off 429s, no quota", None, 64, 8, 1.0, None, 1.5),
}


def imagelingo(images: list[Path], base_url: str, concurrency: int, work: Path) -> dict[str, int]:
    """`imagelingo process` as the library runs it: default policy, the rate unknown."""
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

    async def main() -> Any:
        return await run_process(
            request, jobs, store, clock=MonotonicClock(), emit=lambda event: None
        )

    summary = anyio.run(main, backend="asyncio")
    store.close()
    return {"completed": summary.completed, "failed": summary.failed}


def baseline(images: list[Path], base_url: str, concurrency: int, work: Path) -> dict[str, int]:
    """What a user would write: a semaphore and google-genai's own retry defaults."""
    from google import genai
    from google.genai import types

    async def main() -> dict[str, int]:
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


Contender = Callable[[list[Path], str, int, Path], dict[str, int]]


def measure(
    contender: Contender, sim: Simulator, images: list[Path], case: Case, work: Path
) -> dict[str, Any]:
    work.mkdir()
    sim.reset_stats()
    started = time.perf_counter()
    outcome = contender(images, sim.base_url, case.concurrency, work)
    wall = time.perf_counter() - started
    stats = sim.stats()
    requests = int(stats["requests"])
    throttled = int(stats["outcomes"].get("rate_limit", 0))
    throttled += int(stats["outcomes"].get("resource_exhausted", 0))
    return {
        "completed": outcome["completed"],
        "failed": outcome["failed"],
        "429_share": throttled / requests if requests else 0.0,
        "requests": requests,
        "wall_s": wall,
    }


def run_case(key: str, case: Case, work: Path) -> list[dict[str, Any]]:
    images = make_images(work / "imgs", case.variations)
    contenders: list[tuple[str, Contender]] = [("imagelingo", imagelingo), ("baseline", baseline)]
    rows = []
    if case.rpm is not None:
        ideal = case.variations / case.rpm * 60
        limit = case.wall_factor * ideal + case.wall_slack
        with Simulator("rate-limited", rpm=case.rpm, latency=case.latency) as sim:
            for name, contender in contenders:
                got = measure(contender, sim, images, case, work / f"{key}-{name}")
                holds = (
                    got["failed"] == 0
                    and got["429_share"] <= (case.max_429_share or 1.0)
                    and got["wall_s"] <= limit
                )
                rows.append(_row(case, name, got, got["wall_s"] / ideal, limit, holds))
        return rows
    scenario = {
        "rules": [
            {"sha256": _sha256(images[i]), "responses": ["resource_exhausted"]}
            for i in SPARSE_PICKS
        ]
    }
    for name, contender in contenders:
        with Simulator("ok", latency=case.latency) as clean_sim:
            clean = measure(contender, clean_sim, images, case, work / f"{key}-{name}-clean")
        with Simulator("ok", latency=case.latency, scenario=scenario) as sim:
            got = measure(contender, sim, images, case, work / f"{key}-{name}")
        limit = case.wall_factor * clean["wall_s"]
        holds = got["failed"] == 0 and got["wall_s"] <= limit
        rows.append(_row(case, name, got, got["wall_s"] / clean["wall_s"], limit, holds))
    return rows


def _row(
    case: Case, name: str, got: dict[str, Any], ratio: float, limit: float, holds: bool
) -> dict[str, Any]:
    return {
        "case": case.name,
        "contender": name,
        "N": case.variations,
        "-c": case.concurrency,
        "latency_s": case.latency,
        "completed": got["completed"],
        "failed": got["failed"],
        "429_share": got["429_share"],
        "wall_s": got["wall_s"],
        "ratio": ratio,  # wall / (N/R), or wall / the same batch without the 429s
        "target_wall_s": limit,
        "target": "holds" if holds else "MISSED",
    }


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--case", choices=sorted(CASES), action="append")
    args = parse.parse_args()
    rows: list[dict[str, Any]] = []
    for key in args.case or list(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            rows += run_case(key, CASES[key], Path(tmp))
    print_table(
        "ratelimit: the rate unknown to the client; ratio = wall / (N/R), for the sparse case "
        "wall / the same batch without its 429s",
        rows,
    )
    write_json(args.json, {"benchmark": "ratelimit", "args": {"case": args.case}, "rows": rows})


if __name__ == "__main__":
    main()
