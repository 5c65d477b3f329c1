"""The commands a user runs most must start fast: no google-genai, httpx2 or Pillow on their
path, and the read commands without pydantic (Typer's option conversion) or sqlite-utils (only
migrations need it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import Cli

from imagelingo_cli.store import open_store

HEAVY = ("google", "httpx2", "PIL")
FOR_WRITING = ("pydantic", "sqlite_utils")

PROBE = """
import json, sys
from typer.testing import CliRunner
from imagelingo_cli.cli import app
heavy = set(sys.argv[1].split(","))
result = CliRunner().invoke(app, sys.argv[2:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
print(json.dumps({"exit": result.exit_code, "heavy": loaded}))
"""


@pytest.mark.parametrize(
    ("args", "heavy"),
    [
        (["--help"], HEAVY + FOR_WRITING),
        (["history"], HEAVY + FOR_WRITING),
        (["history", "--errors", "--code", "TIMEOUT", "--limit", "5"], HEAVY + FOR_WRITING),
        (["stats"], HEAVY + FOR_WRITING),
        (["show", "0000"], HEAVY + FOR_WRITING),
        (["db", "info"], HEAVY + FOR_WRITING),
        (["settings", "show"], HEAVY),
    ],
)
def test_command_does_not_import_heavy_modules(
    args: list[str], heavy: tuple[str, ...], cli: Cli
) -> None:
    """--help, history, show, stats and settings run without importing google-genai or Pillow;
    the read commands, on an existing database, without pydantic or sqlite-utils either."""
    open_store(cli.db_path).close()
    out = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(heavy), *args],
        capture_output=True,
        text=True,
        check=True,
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
