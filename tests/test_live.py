"""One real translation with Gemini, for a human to run before a release (it costs one image):

    IMAGELINGO_LIVE=1 GEMINI_API_KEY=your-key .venv/bin/python -m pytest -q tests/test_live.py

Skipped unless both are set: the rest of the suite never reaches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import SAMPLES, Cli
from PIL import Image

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
