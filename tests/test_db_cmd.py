"""`imagelingo db info` and `db vacuum` on a real database file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import Cli
from test_history import RATE, Recorder

from imagelingo_cli.store import SCHEMA

WIDE = {"COLUMNS": "200"}


@pytest.fixture
def recorded(cli: Cli) -> Iterator[tuple[str, str]]:
    """A run of three variations (one failed), then a retry run that completes it: four
    attempts; returns both run ids."""
    rec = Recorder(cli.db_path)
    first = rec.run()
    for name in ("a.png", "b.png"):
        rec.succeed(rec.variation(first, name), first)
    failed = rec.variation(first, "c.png")
    rec.fail(failed, first, RATE)
    rec.store.finish_run(first, "failed")
    later = rec.run("retry-failed")
    rec.retry_round(failed, later)
    rec.succeed(failed, later)
    rec.store.finish_run(later, "completed")
    rec.store.close()
    yield first, later


def test_info_counts_rows_and_names_the_runs(cli: Cli, recorded: tuple[str, str]) -> None:
    """info: path, rows of each table, oldest and newest run; --json says the same."""
    first, later = recorded
    data = json.loads(cli("db", "info", "--json").output)
    assert data["path"] == str(cli.db_path)
    assert data["rows"] == {
        "runs": 2,
        "variations": 3,
        "attempts": 4,
        "batch_jobs": 0,
        "texts": data["rows"]["texts"],
        "output_folders": 0,
    }
    assert (data["oldest_run"]["id"], data["newest_run"]["id"]) == (first, later)
    assert data["file_bytes"] > 0 and data["schema"] == SCHEMA[-1]
    text = cli("db", "info", env=WIDE).output
    assert "variations 3 · attempts 4" in text and first in text and later in text


def test_info_without_a_database_says_nothing_is_recorded(cli: Cli) -> None:
    """No database file yet: info says so, and creates none."""
    result = cli("db", "info")
    assert result.exit_code == 0 and "none yet" in result.output
    assert not cli.db_path.exists()


def test_vacuum_gives_back_free_space_and_keeps_the_history(
    cli: Cli, recorded: tuple[str, str]
) -> None:
    """Pages freed inside the file are given back; the history reads the same after."""
    conn = sqlite3.connect(cli.db_path)
    conn.execute("CREATE TABLE scratch (data BLOB)")
    conn.execute("INSERT INTO scratch VALUES (zeroblob(2000000))")
    conn.commit()
    conn.execute("DROP TABLE scratch")
    conn.commit()
    conn.close()
    history = cli("history", "--json").output
    free = json.loads(cli("db", "info", "--json").output)["free_bytes"]
    assert free > 1_900_000
    result = cli("db", "vacuum")
    assert result.exit_code == 0 and result.output.startswith("Reclaimed "), result.output
    after = json.loads(cli("db", "info", "--json").output)
    assert after["free_bytes"] == 0 and after["wal_bytes"] == 0
    assert after["file_bytes"] < 1_000_000
    assert cli("history", "--json").output == history
    assert cli("db", "vacuum").output.startswith("Nothing to reclaim")


def test_vacuum_waits_for_a_live_run(cli: Cli, recorded: tuple[str, str]) -> None:
    """A run of another live process holds the database: vacuum is refused (exit 2)."""
    worker = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)  # fmt: skip
    try:
        conn = sqlite3.connect(cli.db_path)
        conn.execute("UPDATE runs SET status = 'running', pid = ?", [worker.pid])
        conn.commit()
        conn.close()
        result = cli("db", "vacuum")
        assert result.exit_code == 2 and "a run is working on this database" in result.output
    finally:
        assert worker.stdin is not None
        worker.stdin.close()
        worker.wait()
