"""Real translations with Gemini, for a human to run before a release (they cost two images,
one of them at the batch rate; the batch test waits up to IMAGELINGO_LIVE_BATCH_WAIT seconds):

    IMAGELINGO_LIVE=1 GEMINI_API_KEY=your-key .venv/bin/python -m pytest -q tests/test_live.py

Skipped unless both are set: the rest of the suite never reaches the network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLES, Cli
from PIL import Image
from procs import Proc, child_env
from typer.testing import CliRunner

from imagelingo_cli.cli import app

# Read at import: the autouse isolated_env fixture removes the keys before each test runs.
LIVE_KEY = os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY")

pytestmark = pytest.mark.skipif(
    os.environ.get("IMAGELINGO_LIVE") != "1" or not LIVE_KEY,
    reason="live Gemini test: set IMAGELINGO_LIVE=1 and GEMINI_API_KEY to run it",
)


def test_a_sample_image_is_translated_by_gemini(cli: Cli, tmp_path: Path) -> None:
    """The default model translates one sample image: the output opens as an image of the
    type its extension says, and the successful attempt holds its tokens and model version."""
    assert LIVE_KEY is not None
    out = tmp_path / "out"
    result = cli(
        "process",
        str(SAMPLES / "shop-sign.png"),
        "--to",
        "es",
        "--out",
        str(out),
        env={"GEMINI_API_KEY": LIVE_KEY},
    )
    assert result.exit_code == 0, result.output
    (row,) = cli.rows("SELECT * FROM generations")
    output = Path(row["output_path"])
    with Image.open(output) as image:
        image.load()
        assert {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[image.format or ""] == (
            output.suffix
        )
    (attempt,) = cli.rows("SELECT * FROM attempts WHERE outcome = 'succeeded'")
    assert attempt["prompt_tokens"] > 0 and attempt["output_tokens"] > 0
    assert attempt["total_tokens"] >= attempt["prompt_tokens"] + attempt["output_tokens"]
    assert attempt["model_version"]


# How long the batch test waits for Google before it cancels its job instead (Google aims at
# 24 h; a one-image job is usually done in minutes).
LIVE_BATCH_WAIT_S = float(os.environ.get("IMAGELINGO_LIVE_BATCH_WAIT", "1200"))


def test_a_tiny_batch_job_goes_through_gemini(tmp_path: Path) -> None:
    """One image as a Batch API job: submitted and left (--no-wait), known to Google (batch
    status), then collected; if Google takes longer than the wait, the job is cancelled and
    its variation is interrupted, not failed. Either way it is in the history once."""
    assert LIVE_KEY is not None
    runner = CliRunner()
    env = {"GEMINI_API_KEY": LIVE_KEY}

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env, obj={}, catch_exceptions=False)

    out = tmp_path / "out"
    sample = str(SAMPLES / "tea-label.png")
    submitted = run("process", sample, "--batch", "--no-wait", "--to", "es", "--out", str(out))
    assert submitted.exit_code == 0, submitted.output
    (job,) = json.loads(run("batch", "status", "--json").output)
    assert job["name"].startswith("batches/") and job["api"]["request_count"] == 1
    assert job["api"]["state"] in (
        "BATCH_STATE_PENDING",
        "BATCH_STATE_RUNNING",
        "BATCH_STATE_SUCCEEDED",
    )

    collector = Proc(
        ["batch", "collect"],
        env=child_env(GEMINI_API_KEY=LIVE_KEY, IMAGELINGO_BATCH_POLL="15"),
        cwd=tmp_path,
    )
    try:
        code = collector.popen.wait(timeout=LIVE_BATCH_WAIT_S)
    except subprocess.TimeoutExpired:
        collector.signal(signal.SIGINT)  # stops waiting; the job goes on until cancelled
        assert collector.wait(timeout=60) == 130, collector.text()
        cancelled = run("batch", "cancel", job["id"])
        assert cancelled.exit_code in (0, 1), cancelled.output
        code = None
    history = json.loads(run("history", "--json").output)
    assert len(history) == 1
    (row,) = history
    if code is None:
        assert row["status"] in ("interrupted", "completed", "failed"), row
        return
    assert code in (0, 1), collector.text()
    assert row["status"] in ("completed", "failed"), row
    (attempt,) = json.loads(run("show", row["id"], "--json").output)["attempts"]
    assert attempt["trigger"] == "batch" and attempt["outcome"] in ("succeeded", "failed")
    if row["status"] == "completed":
        with Image.open(row["output_path"]) as image:
            image.load()
        assert attempt["total_tokens"] and attempt["model_version"]
