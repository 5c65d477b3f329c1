"""Start-up and scale: the read commands on a large history, next to `python -c "import typer"`.

A database is filled with `--rows` variations (one attempt each, a tenth of them failed, in
runs of 1,000, with the paths, digests, messages and times real ones have), then each command
runs as a real subprocess, the commands taking turns, `--repeat` times; the median wall time
is reported with its ratio to importing Typer, measured in the same rounds. Also: the
database's size per variation (and per table), and the time to record 10,000 more attempts
through the Store's own write methods.

    .venv/bin/python benchmarks/startup.py [--rows 100000] [--repeat 7] [--db FILE]
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import parser, print_table, write_json

from imagelingo_cli.answers import Usage
from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.states import AttemptOutcome, Trigger
from imagelingo_cli.store import GenerationKey, encoding, new_id, open_store, tallies

MODEL = "gemini-2.5-flash-image"
RUN_SIZE = 1_000
FAILURES = {  # as Gemini words them (see reference/gemini-api.md)
    ErrorCode.RATE_LIMIT: (
        429,
        "RESOURCE_EXHAUSTED",
        17_000,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
        " To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
        "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_requests_per_"
        f"model, limit: 10, model: {MODEL}\nPlease retry in 17s.",
    ),
    ErrorCode.TIMEOUT: (504, "DEADLINE_EXCEEDED", None, "The request timed out. Please try again."),
    ErrorCode.SERVER_ERROR: (
        503,
        "UNAVAILABLE",
        None,
        "The model is overloaded. Please try again later.",
    ),
    ErrorCode.NO_IMAGE: (
        200,
        None,
        None,
        "Unable to show the generated image. The model could not generate the image based on "
        "the prompt provided. You will not be charged for this request. Try rephrasing the "
        "prompt. If you think this was an error, send feedback. Support code: 40601",
    ),
    ErrorCode.SAFETY_BLOCKED: (
        200,
        None,
        None,
        "IMAGE_SAFETY: Unable to show the generated image. The generated image was filtered out "
        "because it violated Google's Generative AI Prohibited Use policy. You will not be "
        "charged for this request. Try rephrasing the prompt. Support code: 89371032",
    ),
}
CODES = list(FAILURES)


class Texts:
    """The `texts` table as a bulk load fills it: each text once."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.ids: dict[str, int] = {}

    def __call__(self, text: str | None) -> int | None:
        if text is None:
            return None
        if text not in self.ids:
            (self.ids[text],) = self.db.execute(
                "INSERT INTO texts (text) VALUES (?) RETURNING id", [text]
            ).fetchone()
        return self.ids[text]


def fill(path: Path, rows: int, seed: int = 1) -> None:
    """`rows` variations in runs of RUN_SIZE, one attempt each, every tenth failed, written
    as the Store writes them (tallies counted at the end, as a migration does)."""
    rng = random.Random(seed)
    store = open_store(path)
    db, text = store.db, Texts(store.db)
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    options = json.dumps({"auto_retry": True, "max_retries": 2, "concurrency": 4, "to": "es"})
    with store.transaction():
        for first in range(0, rows, RUN_SIZE):
            number = first // RUN_SIZE
            began = start + timedelta(hours=6 * number)
            count = min(RUN_SIZE, rows - first)
            ended = began + timedelta(milliseconds=2000 * count + 15_000)
            (run_seq,) = db.execute(
                "INSERT INTO runs (id, command, started_at, heartbeat_at, finished_at, status,"
                " target_language, model, backend, options, summary, pid, host)"
                " VALUES (?, 'process', ?, ?, ?, 'failed', 'es', ?, 'gemini', ?, ?, ?, ?)"
                " RETURNING seq",
                [
                    new_id(),
                    encoding.iso(_ms(began)),
                    encoding.iso(_ms(ended)),
                    encoding.iso(_ms(ended)),
                    MODEL,
                    options,
                    json.dumps({"completed": count - count // 10, "failed": count // 10}),
                    4000 + number,
                    "maria-laptop",
                ],
            ).fetchone()
            album = f"/home/maria/Pictures/trips/2026-{number % 12 + 1:02d}-album-{number:04d}"
            for index in range(first, first + count):
                _variation(db, text, rng, run_seq, album, index - first, began)
        tallies.rebuild(db)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def _variation(
    db: sqlite3.Connection,
    text: Texts,
    rng: random.Random,
    run_seq: int,
    album: str,
    index: int,
    began: datetime,
) -> None:
    sent = began + timedelta(milliseconds=2000 * index + rng.randint(0, 999))  # 4 at a time
    duration = rng.randint(6_000, 15_000)
    done = _ms(sent) + duration
    relative = f"day-{index // 100 + 1:02d}/IMG_{sent:%Y%m%d_%H%M%S}.jpg"  # as phones name them
    failed = CODES[index // 10 % len(CODES)] if index % 10 == 0 else None
    http, api, retry_after, message = FAILURES[failed] if failed else (None, None, None, None)
    output = None if failed else f"{album}/imagelingo-out/{relative[:-4]}.es.v1.png"
    folder, name = encoding.split_path(output) if output else (None, None)
    (seq,) = db.execute(
        "INSERT INTO generation_rows (id, run_seq, source_folder_ref, relative_path,"
        " image_digest, variation, target_language, model_ref, backend_ref, out_dir_ref, status,"
        " output_folder_ref, output_name, output_digest, error_code, error_message_ref,"
        " retry_count, attempt_count, is_retryable, credits_charged, created_ms, updated_ms,"
        " completed_ms, first_error_ms)"
        " VALUES (?, ?, ?, ?, ?, 1, 'es', ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1, ?, ?, ?, ?, ?, ?)"
        " RETURNING seq",
        [
            new_id(),
            run_seq,
            text(f"{album}/"),
            relative,
            _random_digest(rng),
            text(MODEL),
            text("gemini"),
            text(f"{album}/imagelingo-out"),
            "failed" if failed else "completed",
            text(folder),
            name,
            None if failed else _random_digest(rng),
            failed,
            text(message),
            None if failed is None else int(failed.transient),
            0 if failed else 1,
            _ms(sent) - 50,
            done,
            None if failed else done,
            done if failed else None,
        ],
    ).fetchone()
    answered = failed is None or failed is ErrorCode.NO_IMAGE
    db.execute(
        "INSERT INTO attempt_rows (generation_seq, attempt_number, run_seq, trigger_code,"
        " started_ms, finished_ms, duration_ms, outcome_code, error_code, error_message_ref,"
        " http_status, api_status, retry_after_ms, prompt_tokens, output_tokens, total_tokens,"
        " model_version_ref) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            seq,
            run_seq,
            encoding.TRIGGERS[Trigger.AUTO],
            _ms(sent),
            done,
            duration,
            encoding.OUTCOMES[AttemptOutcome.FAILED if failed else AttemptOutcome.SUCCEEDED],
            failed,
            text(message),
            http,
            api,
            retry_after,
            1290 if answered else None,
            1290 if failed is None else None,
            2580 if failed is None else 1290 if answered else None,
            text(MODEL) if answered else None,
        ],
    )


def _random_digest(rng: random.Random) -> bytes | str:
    return encoding.digest(rng.getrandbits(256).to_bytes(32, "big").hex())


def _ms(moment: datetime) -> int:
    return encoding.ms(moment.isoformat())


def record_attempts(path: Path, count: int) -> float:
    """Seconds to record `count` attempts of new variations through the Store: claim, start,
    then succeed (or fail, one in ten), as a run does."""
    store = open_store(path)
    run_id = store.start_run(
        "process", target_language="es", model=MODEL, backend="gemini", options={}
    )
    usage = Usage(prompt_tokens=1290, output_tokens=1290, total_tokens=2580, model_version=MODEL)
    rate_limit = FAILURES[ErrorCode.RATE_LIMIT]
    error = TranslationError(ErrorCode.RATE_LIMIT, rate_limit[3], 429, "RESOURCE_EXHAUSTED")
    started = time.perf_counter()
    for index in range(count):
        sha256 = hashlib.sha256(f"extra-{index}".encode()).hexdigest()
        source = f"/home/maria/Pictures/extra/IMG_{index:06d}.jpg"
        claim = store.claim_generation(
            GenerationKey(sha256, "es", MODEL, 1, "gemini"),
            run_id=run_id,
            source_path=source,
            relative_path=source.rsplit("/", 1)[1],
            out_dir="/home/maria/Pictures/extra/imagelingo-out",
            base_url=None,
        )
        generation_id = str(claim.row["id"])
        attempt, _ = store.start_attempt(generation_id, run_id, Trigger.AUTO)
        if index % 10 == 0:
            store.attempt_failed(attempt, generation_id, error, duration_ms=900, retry_in_ms=None)
        else:
            store.attempt_succeeded(
                attempt,
                generation_id,
                duration_ms=9000,
                output_path=f"/home/maria/Pictures/extra/imagelingo-out/IMG_{index:06d}.es.v1.png",
                output_sha256=hashlib.sha256(f"out-{index}".encode()).hexdigest(),
                usage=usage,
            )
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def sizes(path: Path, rows: int) -> list[dict[str, Any]]:
    """Bytes per variation of the whole file and of its largest tables and indexes."""
    conn = sqlite3.connect(path)
    try:
        parts = conn.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    finally:
        conn.close()
    shown = [{"part": "whole file", "bytes per variation": path.stat().st_size / rows}]
    shown += [{"part": name, "bytes per variation": size / rows} for name, size in parts[:8]]
    return shown


def timed(commands: dict[str, list[str]], repeat: int, env: dict[str, str]) -> dict[str, float]:
    """Median wall seconds of each command; the commands take turns, so that a busy moment of
    the machine weighs on all of them alike. One untimed turn first warms the caches."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for turn in range(repeat + 1):
        for name, command in commands.items():
            began = time.perf_counter()
            subprocess.run(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
            )
            if turn:
                times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--rows", type=int, default=100_000)
    parse.add_argument("--repeat", type=int, default=7)
    parse.add_argument("--record", type=int, default=10_000, help="attempts to record")
    parse.add_argument(
        "--db",
        type=Path,
        help="keep the database in FILE for reruns (filled unless it exists; the attempts"
        " recorded are added to it)",
    )
    args = parse.parse_args()
    imagelingo = str(Path(sys.executable).with_name("imagelingo"))
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "big.db"
        fill_s = None
        if not db.exists():
            began = time.perf_counter()
            fill(db, args.rows)
            fill_s = time.perf_counter() - began
        size_rows = sizes(db, args.rows)
        conn = sqlite3.connect(db)
        (failed_id,) = conn.execute(
            "SELECT id FROM generation_rows WHERE status = 'failed' AND seq > ? LIMIT 1",
            [args.rows // 2],
        ).fetchone()
        conn.close()
        # As on a user's machine, modules are compiled once and then loaded from bytecode.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["IMAGELINGO_DB"] = str(db)
        commands = {
            'python -c "import typer"': [sys.executable, "-c", "import typer"],
            "imagelingo --help": [imagelingo, "--help"],
            "imagelingo history --limit 50": [imagelingo, "history", "--limit", "50"],
            "imagelingo history --errors --limit 50": [
                imagelingo,
                "history",
                "--errors",
                "--limit",
                "50",
            ],
            # the same rows without drawing a table: what the read itself costs
            "imagelingo history --limit 50 --json": [
                imagelingo,
                "history",
                "--limit",
                "50",
                "--json",
            ],
            "imagelingo show ID": [imagelingo, "show", failed_id],
            "imagelingo stats": [imagelingo, "stats"],
        }
        medians = timed(commands, args.repeat, env)
        record_s = record_attempts(db, args.record)
    typer_s = medians['python -c "import typer"']
    rows: list[dict[str, Any]] = [
        {"command": name, "median_s": seconds, "vs typer": seconds / typer_s}
        for name, seconds in medians.items()
    ]
    print_table(
        f"startup on {args.rows:,} variations: median of {args.repeat} turns, real subprocesses",
        rows,
    )
    print_table(f"database size ({args.rows:,} variations, one attempt each)", size_rows)
    recorded = [
        {"measure": f"record {args.record:,} attempts (Store)", "seconds": record_s},
        {"measure": "per attempt (ms)", "seconds": record_s / args.record * 1000},
    ]
    if fill_s is not None:
        recorded.insert(0, {"measure": f"fill {args.rows:,} variations (bulk)", "seconds": fill_s})
    print_table("writing", recorded)
    write_json(
        args.json,
        {
            "benchmark": "startup",
            "rows": args.rows,
            "commands": rows,
            "sizes": size_rows,
            "writing": recorded,
        },
    )


if __name__ == "__main__":
    main()
