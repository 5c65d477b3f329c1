"""The commands a user runs most must start fast: no google-genai, httpx2 or Pillow on their path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("google.genai", "httpx2", "PIL")

PROBE = """
import json, sys
from typer.testing import CliRunner
from imagelingo_cli.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"google", "httpx2", "PIL"})
print(json.dumps({"exit": result.exit_code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["history"],
        ["history", "--errors"],
        ["stats"],
        ["show", "0000"],
        ["settings", "show"],
    ],
)
def test_command_does_not_import_heavy_modules(args: list[str]) -> None:
    """--help, history, show, stats and settings run without importing google-genai or Pillow."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["heavy"] == [], report
    assert report["exit"] in (0, 2)


def test_importing_the_cli_loads_no_rich_or_database() -> None:
    """Importing the app (what --help needs) does not load rich, sqlite-utils or anyio either."""
    code = (
        "import sys; import imagelingo_cli.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'sqlite_utils', 'anyio', 'google', 'PIL'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
