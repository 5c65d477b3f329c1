"""Batch mode at scale: `imagelingo process --batch` through the simulator's Batch API, on
1,000 vs 10,000 small variations and on images of the size Gemini returns, in one run.

* Peak RSS of the imagelingo process (the kernel's accounting of the child, wait4): building
  the JSONL and importing the results stream, so 10x the variations should stay within 1.3x.
* Import speed: lines recorded per second (from the moment the job ended to the moment its
  outcome is recorded, download included, timed on the `--json` events as they arrive), next
  to what the same outputs cost one after another: reading them as result lines, writing them
  with `write_atomic`, and checking them (`verify_image`, the check every answer must pass)
  then writing them. The import handles several lines at once.

The simulator runs in its own process (`imagelingo simulator serve`), so its memory and its
work are not counted.

    .venv/bin/python benchmarks/batch.py [--small 1000] [--large 10000] [--photos 100]
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import make_images, parser, print_table, write_json
from verify import photo_like

from imagelingo_cli.batch_mode.jsonl import result_lines
from imagelingo_cli.images import verify_image
from imagelingo_cli.outputs import write_atomic

KEY = "benchmark-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "imagelingo_cli", "simulator", "serve", "--port", str(port),
        "--batch-pending", "0", "--batch-running", "20",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert server.stdout is not None
    server.stdout.readline()  # "Listening on …"
    return server


def photos(folder: Path, count: int) -> None:
    """`count` distinct photo-like 1024x1024 PNGs (about 0.8 MB each)."""
    folder.mkdir(parents=True)
    base = photo_like(1024, 1024)
    for index in range(count):
        image = base.copy()
        image.putpixel((index % 1024, index // 1024), (index % 256, 0, 0))
        image.save(folder / f"photo{index:05d}.png")


def run_batch(folder: Path, work: Path, base_url: str) -> dict[str, Any]:
    """One `process --batch` child: its peak RSS, and the import timed on its events."""
    out = work / f"out-{folder.name}"
    env = os.environ | {
        "IMAGELINGO_DB": str(work / f"{folder.name}.db"),
        "IMAGELINGO_CONFIG": str(work / "settings.toml"),
        "IMAGELINGO_BATCH_POLL": "1",
        "GEMINI_API_KEY": KEY,
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "imagelingo_cli", "process", str(folder), "--batch",
        "--base-url", base_url, "--out", str(out), "--timeout", "600", "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    importing = imported = None
    for line in child.stdout:
        if b'"event": "job_importing"' in line:
            importing = time.perf_counter()
        elif b'"event": "job_imported"' in line:
            imported = time.perf_counter()
    _, status, usage = os.wait4(child.pid, 0)
    total = time.perf_counter() - started
    assert importing is not None and imported is not None, "the job was not imported"
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "import_s": imported - importing,
        "total_s": total,
        "outputs": sorted(p for p in out.rglob("*") if p.is_file()),
    }


def one_by_one(outputs: list[Path], work: Path) -> dict[str, float]:
    """For the same outputs, one after another, per second: read as result lines (as the
    import reads them), written with `write_atomic`, and checked then written."""
    work.mkdir(parents=True)
    lines = work / "results.jsonl"
    with lines.open("w") as sink:
        for index, output in enumerate(outputs):
            data = base64.b64encode(output.read_bytes()).decode("ascii")
            part = {"inlineData": {"mimeType": "image/png", "data": data}}
            answer = {"candidates": [{"content": {"parts": [part]}, "finishReason": "STOP"}]}
            sink.write(json.dumps({"key": f"{index:06d}", "response": answer}) + "\n")
    started = time.perf_counter()
    count = sum(1 for _ in result_lines(lines))
    read = count / (time.perf_counter() - started)
    data = [path.read_bytes() for path in outputs]
    started = time.perf_counter()
    for index, content in enumerate(data):
        write_atomic(work / f"w{index:06d}.png", content)
    writes = len(data) / (time.perf_counter() - started)
    started = time.perf_counter()
    for index, content in enumerate(data):
        verify_image(content)
        write_atomic(work / f"v{index:06d}.png", content)
    checked = len(data) / (time.perf_counter() - started)
    return {"read_lines_per_s": read, "disk_writes_per_s": writes, "check_write_per_s": checked}


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--small", type=int, default=1000)
    parse.add_argument("--large", type=int, default=10000)
    parse.add_argument("--photos", type=int, default=100, help="1024 px variations")
    args = parse.parse_args()
    rows: list[dict[str, Any]] = []
    port = free_port()
    server = start_simulator(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            runs = ((48, args.small), (48, args.large), (1024, args.photos))
            for size, count in (run for run in runs if run[1]):
                folder = work / f"images-{size}px-{count}"
                if size == 48:
                    make_images(folder, count, size=size)
                else:
                    photos(folder, count)
                result = run_batch(folder, work, f"http://127.0.0.1:{port}")
                lines = len(result["outputs"])
                rows.append(
                    {
                        "image_px": size,
                        "variations": count,
                        "exit": result["exit"],
                        "peak_rss_mb": result["peak_rss_mb"],
                        "import_lines_per_s": lines / result["import_s"],
                        **one_by_one(result["outputs"], work / f"alone-{folder.name}"),
                        "total_s": result["total_s"],
                    }
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print_table("batch: process --batch through the simulator's Batch API", rows)
    print(f"\npeak RSS {args.large} / {args.small} variations: {ratio:.2f}x (target <= 1.3x)")
    for row in rows:
        imported = row["import_lines_per_s"]
        print(
            f"{row['variations']} x {row['image_px']} px: import / disk writes alone"
            f" {imported / row['disk_writes_per_s']:.2f}x; import / checks and writes one by one"
            f" {imported / row['check_write_per_s']:.2f}x; reading lines / disk writes"
            f" {row['read_lines_per_s'] / row['disk_writes_per_s']:.1f}x"
        )
    write_json(args.json, {"benchmark": "batch", "rows": rows, "rss_ratio": ratio})


if __name__ == "__main__":
    main()
