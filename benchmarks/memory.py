"""Peak memory of `imagelingo process` on 100 vs 2,000 small images: it should stay flat,
because images are streamed (about `--concurrency` of them in memory), not loaded up front.

Each run is a real `imagelingo process … --simulate ok --json` subprocess; its peak RSS comes
from the kernel's accounting of that child (wait4).

    .venv/bin/python benchmarks/memory.py [--small 100] [--large 2000]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import make_images, parser, print_table, write_json


def peak_rss_mb(folder: Path, work: Path) -> tuple[float, int]:
    env = os.environ | {"IMAGELINGO_DB": str(work / f"{folder.name}.db")}
    command = [
        sys.executable, "-m", "imagelingo_cli", "process", str(folder),
        "--simulate", "ok", "--out", str(work / f"out-{folder.name}"), "--json",
    ]  # fmt: skip
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, code


def main() -> None:
    parse = parser(__doc__ or "")
    parse.add_argument("--small", type=int, default=100)
    parse.add_argument("--large", type=int, default=2000)
    args = parse.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for count in (args.small, args.large):
            folder = work / f"images-{count}"
            make_images(folder, count, size=256)
            rss, code = peak_rss_mb(folder, work)
            rows.append({"images": count, "peak_rss_mb": rss, "exit": code})
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print_table("memory: peak RSS of imagelingo process (simulator ok, in-process)", rows)
    print(f"\nratio {args.large} / {args.small} images: {ratio:.2f}x")
    write_json(args.json, {"benchmark": "memory", "rows": rows, "ratio": ratio})


if __name__ == "__main__":
    main()
