"""Start-up cost: `imagelingo --help` vs `python -c "import typer"`, and `imagelingo history
--limit 50` on a database holding 100,000 generations. Each command is run several times as
a real subprocess; the median wall time is reported.

    .venv/bin/python benchmarks/startup.py [--rows 100000] [--repeat 7]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import parser, print_table, write_json

from imagelingo_cli.store import new_id, now_iso, open_store

CODES = ("RATE_LIMIT", "TIMEOUT", "SERVER_ERROR", "NO_IMAGE", "CONFIG_ERROR")


def fill(path: Path, rows: int) -> None:
    """`rows` generations (a tenth of them failed) with one attempt each, in one run."""
    store = open_store(path)
    run_id = store.start_run(
        "process", target_language="es", model="m", backend="gemini", options={}
    )
    stamp = now_iso()
    generations, attempts = [], []
    for index in range(rows):
        generation_id = new_id()
        failed = index % 10 == 0
        code = CODES[index % len(CODES)] if failed else None
        generations.append(
            (generation_id, run_id, f"/data/img{index:06d}.png", f"img{index:06d}.png",
             f"{index:064x}", 1, "es", "m", "gemini", "/data/out",
             "failed" if failed else "completed", None if failed else f"/data/out/img{index:06d}.es.v1.png",
             code, "message" if failed else None, 0, 1, 0 if failed else 1, stamp, stamp)
        )  # fmt: skip
        attempts.append(
            (new_id(), generation_id, run_id, 1, "auto", stamp, stamp, 900,
             "failed" if failed else "succeeded", code)
        )  # fmt: skip
    with store.transaction():
        store.db.executemany(
            "INSERT INTO generations (id, run_id, source_path, relative_path, image_sha256,"
            " variation, target_language, model, backend, out_dir, status, output_path, error_code,"
            " error_message, retry_count, attempt_count, credits_charged, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            generations,
        )
        store.db.executemany(
            "INSERT INTO attempts (id, generation_id, run_id, attempt_number, trigger, started_at,"
            " finished_at, duration_ms, outcome, error_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            attempts,
        )
    store.finish_run(run_id, "failed")
    store.close()


def median_seconds(command: list[str], repeat: int, env: dict[str, str]) -> float:
    """Median of `repeat` timed runs, after one untimed run that warms the bytecode cache."""
    times = []
    subprocess.run(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--rows", type=int, default=100_000)
    parse.add_argument("--repeat", type=int, default=7)
    args = parse.parse_args()
    imagelingo = str(Path(sys.executable).with_name("imagelingo"))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        fill(db, args.rows)
        # As on a user's machine, modules are compiled once and then loaded from bytecode.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["IMAGELINGO_DB"] = str(db)
        typer_s = median_seconds([sys.executable, "-c", "import typer"], args.repeat, env)
        help_s = median_seconds([imagelingo, "--help"], args.repeat, env)
        history_s = median_seconds([imagelingo, "history", "--limit", "50"], args.repeat, env)
        errors_s = median_seconds(
            [imagelingo, "history", "--errors", "--limit", "50"], args.repeat, env
        )
        stats_s = median_seconds([imagelingo, "stats"], args.repeat, env)
    rows: list[dict[str, Any]] = [
        {"command": 'python -c "import typer"', "median_s": typer_s, "vs typer": 1.0},
        {"command": "imagelingo --help", "median_s": help_s, "vs typer": help_s / typer_s},
        {
            "command": f"imagelingo history --limit 50 ({args.rows:,} rows)",
            "median_s": history_s,
            "vs typer": history_s / typer_s,
        },
        {
            "command": "imagelingo history --errors --limit 50",
            "median_s": errors_s,
            "vs typer": errors_s / typer_s,
        },
        {"command": "imagelingo stats", "median_s": stats_s, "vs typer": stats_s / typer_s},
    ]
    print_table("startup: median wall time of real subprocesses", rows)
    write_json(args.json, {"benchmark": "startup", "rows": rows})


if __name__ == "__main__":
    main()
