"""Shared fixtures: an isolated environment, a temporary database, the simulator, the real CLI."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from imagelingo_cli.cli import app
from imagelingo_cli.clock import VirtualClock
from imagelingo_cli.simulator import Simulator

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
TEST_KEY = "test-key-not-secret"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real key, no real base URL, database and settings inside the test's folder."""
    for name in (
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_API_VERSION",
        "IMAGELINGO_LANGUAGE",
        "IMAGELINGO_MODEL",
        "IMAGELINGO_CONCURRENCY",
        "IMAGELINGO_AUTO_RETRY",
        "IMAGELINGO_AUTO_RETRY_CODES",
        "IMAGELINGO_RPM",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGELINGO_DB", str(tmp_path / "state" / "imagelingo.db"))
    monkeypatch.setenv("IMAGELINGO_CONFIG", str(tmp_path / "state" / "settings.toml"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder with copies of three sample images."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("shop-sign.png", "cafe-menu.jpg", "concert-poster.webp"):
        shutil.copy(SAMPLES / name, folder / name)
    return folder


@dataclass
class Cli:
    """The real Typer app, run with CliRunner, an injected virtual clock and a real database."""

    tmp_path: Path
    clock: VirtualClock = field(default_factory=VirtualClock)

    @property
    def db_path(self) -> Path:
        return self.tmp_path / "state" / "imagelingo.db"

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            app, list(args), obj={"clock": self.clock}, env=env, catch_exceptions=False
        )

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.db_path)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in conn.execute(sql, params)]
        finally:
            conn.close()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator("ok") as sim:
        yield sim


def scenario_simulator(tmp_path: Path, scenario: dict[str, Any], **kwargs: Any) -> Simulator:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    return Simulator("ok", scenario=path, **kwargs)


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]
