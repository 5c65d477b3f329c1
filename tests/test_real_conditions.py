"""The promise where people break it: a pipe closed early, reruns in the same folder, a forced
redo that fails, a run dying on another host, a backoff with one slot, setup errors found late,
short ids, retry-failed with new connection settings, read commands on a missing database,
and settings written whole. The real CLI, the real SDK, the simulator, a real database."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
from conftest import SAMPLES, TEST_KEY, Cli, scenario_simulator
from procs import child_env, query, wait_until

from imagelingo_cli.simulator import Simulator
from imagelingo_cli.store.liveness import LEASE_S

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}
WIDE = {"COLUMNS": "200"}


def statuses(db: Path) -> list[str]:
    return sorted(r["status"] for r in query(db, "SELECT status FROM generations"))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# 1 -------------------------------------------------------------------------------------------


def test_a_pipe_closed_early_stops_the_run_cleanly_and_a_rerun_finishes_it(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """`process … | head -3`: no traceback, exit 130, the run interrupted, nothing left
    running or in flight; the next run finishes what was not done."""
    with Simulator("ok", latency=0.3) as sim:
        args = ["process", str(images), "-n", "3", "-c", "1", "--to", "es"]
        child = subprocess.Popen(
            [sys.executable, "-m", "imagelingo_cli", *args, "--base-url", sim.base_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(**KEY_ENV),
            cwd=tmp_path,
        )
        assert child.stdout is not None and child.stderr is not None
        head = [child.stdout.readline() for _ in range(3)]
        child.stdout.close()  # what `head -3` does once it has its lines
        code = child.wait(timeout=60)
        stderr = child.stderr.read().decode()
        assert code == 130, stderr
        assert len(head) == 3 and all(head)
        assert "Traceback" not in stderr and "never awaited" not in stderr, stderr
        db = cli.db_path
        assert [r["status"] for r in query(db, "SELECT status FROM runs")] == ["interrupted"]
        left = statuses(db)
        assert not {"pending", "running", "retrying"} & set(left), left
        assert not query(db, "SELECT id FROM attempts WHERE outcome IS NULL")
        result = cli(*args, "--base-url", sim.base_url, env=KEY_ENV)
    assert result.exit_code == 0, result.output
    assert statuses(cli.db_path) == ["completed"] * 9
    for row in query(cli.db_path, "SELECT id FROM generations"):
        assert "In flight" not in cli("show", row["id"]).output


# 2 -------------------------------------------------------------------------------------------


def test_outputs_are_never_taken_as_inputs_on_reruns_in_the_same_folder(
    cli: Cli, images: Path
) -> None:
    """`cd photos && imagelingo process .` again and again, in other languages too, and with
    an output copied among the inputs: only the photos are ever translated."""
    os.chdir(images)
    with Simulator("ok") as sim:
        for language in ("de", "de", "fr"):
            result = cli("process", ".", "--to", language, "--base-url", sim.base_url, env=KEY_ENV)
            assert result.exit_code == 0, result.output
        assert sim.stats()["requests"] == 6  # 3 photos in German, then in French
        shutil.copy(images / "imagelingo-out" / "cafe-menu.de.v1.png", images / "copy.png")
        result = cli("process", ".", "--to", "it", "--base-url", sim.base_url, env=KEY_ENV)
        assert sim.stats()["requests"] == 9
    assert result.exit_code == 0, result.output
    assert "copy.png v1 it: Skipped - this file is an output imagelingo wrote" in result.output
    outputs = files_under(images / "imagelingo-out")
    assert len(outputs) == 9 and not [name for name in outputs if name.count(".v1.") > 1]
    assert not [p for p in outputs if p.startswith("imagelingo-out")]
    assert sum(r["credits_charged"] for r in query(cli.db_path, "SELECT * FROM generations")) == 9


# 3 -------------------------------------------------------------------------------------------


def test_a_forced_redo_that_fails_keeps_the_completed_output(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """--force on a completed variation, and the redo fails: it stays completed with its
    output and its credit, the failed attempt is recorded, retry-failed offers nothing."""
    image = images / "tea-label.png"
    shutil.copy(SAMPLES / "tea-label.png", image)
    with Simulator("ok") as sim:
        assert cli("process", str(image), "--base-url", sim.base_url, env=KEY_ENV).exit_code == 0
    (before,) = query(cli.db_path, "SELECT * FROM generations")
    rules = [{"responses": [], "then": "overloaded"}]
    with scenario_simulator(tmp_path, {"rules": rules}) as failing:
        result = cli(
            "process", str(image), "--force", "--base-url", failing.base_url, env=KEY_ENV | WIDE
        )
    assert result.exit_code == 1, result.output
    assert "the earlier output is kept" in result.output
    (after,) = query(cli.db_path, "SELECT * FROM generations")
    assert (after["status"], after["output_path"], after["credits_charged"]) == (
        "completed",
        before["output_path"],
        1,
    )
    assert Path(after["output_path"]).is_file()
    outcomes = [r["outcome"] for r in query(cli.db_path, "SELECT outcome FROM attempts")]
    assert outcomes == ["succeeded", "failed"]
    assert "Nothing to retry" in cli("retry-failed").output


# 4 -------------------------------------------------------------------------------------------


def test_a_run_that_died_on_another_host_is_taken_over_once_its_lease_expires(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """A run started in another UTS namespace (another host name, as in `docker run`) and
    killed: while its lease runs its variations are busy; once the lease has expired the
    next run takes them over and finishes them."""
    db = cli.db_path
    with Simulator("ok", latency=5) as sim:
        inner = " ".join(
            [
                "hostname container-7f3a &&",
                f"exec {sys.executable} -m imagelingo_cli process {images} -c 1 --to es",
                f"--base-url {sim.base_url}",
            ]
        )
        dying = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", inner],
            env=child_env(**KEY_ENV),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: sim.stats()["in_flight"] > 0, 30, "the first request")
        dying.kill()
        dying.wait(timeout=10)
        (run,) = query(db, "SELECT id, host FROM runs")
        assert run["host"] == "container-7f3a"
        busy = cli("process", str(images), "--to", "es", "--base-url", sim.base_url, env=KEY_ENV)
        assert "being processed by another imagelingo run" in busy.output
        # A minute later its heartbeat is stale: the lease has expired.
        conn = sqlite3.connect(db)
        conn.execute(
            "UPDATE runs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
            [f"-{LEASE_S + 1} seconds"],
        )
        conn.commit()
        conn.close()
        taken = cli("process", str(images), "--to", "es", "--base-url", sim.base_url, env=KEY_ENV)
    assert taken.exit_code == 0, taken.output
    assert statuses(db) == ["completed"] * 3
    assert query(db, "SELECT status FROM runs WHERE id = ?", (run["id"],)) == [
        {"status": "interrupted"}
    ]


# 5 -------------------------------------------------------------------------------------------


class BackoffUntil:
    """The engine's clock, real, except that a backoff ends only once `ready()` holds: a test
    can tell what happened during one, whatever the machine's speed."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.ready = ready

    def now(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        with anyio.fail_after(20):
            while not self.ready():
                await anyio.sleep(0.01)  # ok-sleep: the poll interval of a bounded wait


def test_a_variation_in_backoff_leaves_its_slot_to_the_next_image(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """-c 1: while one image's variation waits out its backoff (after a 504), the next images
    are read and sent. (Were the slot held, the backoff would never end: nothing else moves.)"""
    rules = [{"image": "imgs/cafe-menu.jpg", "responses": ["deadline"]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        cli.clock = BackoffUntil(lambda: sim.stats()["requests"] >= 3)  # type: ignore[assignment]
        result = cli(
            "process",
            str(images),
            "-c",
            "1",
            "--to",
            "es",
            "--base-url",
            sim.base_url,
            env=KEY_ENV,
        )
    assert result.exit_code == 0, result.output
    rows = query(
        cli.db_path,
        "SELECT g.relative_path AS image, a.attempt_number AS n FROM attempts a"
        " JOIN generations g ON g.id = a.generation_id ORDER BY a.started_at, a.rowid",
    )
    assert [(r["image"], r["n"]) for r in rows] == [
        ("cafe-menu.jpg", 1),
        ("concert-poster.webp", 1),
        ("shop-sign.png", 1),
        ("cafe-menu.jpg", 2),
    ]


# 6 and 7 -------------------------------------------------------------------------------------


def test_setup_errors_found_late_exit_2_with_one_line(cli: Cli, images: Path) -> None:
    """A recorded language this version does not know, and malformed base URLs for
    retry-failed: exit 2, one line, nothing sent, no run recorded."""
    with Simulator("ok", api_key="another-key") as sim:
        cli("process", str(images / "shop-sign.png"), "--base-url", sim.base_url, env=KEY_ENV)
    runs = len(query(cli.db_path, "SELECT id FROM runs"))
    conn = sqlite3.connect(cli.db_path)
    conn.execute("UPDATE generation_rows SET target_language = 'zz-Qqqq-bogus'")
    conn.commit()
    conn.close()
    for args, words in (
        (["retry-failed"], "unknown language 'zz-Qqqq-bogus'"),
        (["retry-failed", "--base-url", "localhost:8080"], "localhost:8080"),
        (["retry-failed", "--base-url", "htp://example.com"], "htp://example.com"),
    ):
        result = cli(*args, env=KEY_ENV)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output, lines
    assert len(query(cli.db_path, "SELECT id FROM runs")) == runs


# 9 -------------------------------------------------------------------------------------------


def unique_prefix(text: str, others: list[str]) -> str:
    """The shortest prefix of `text`, at least 8 long, that no other id starts with."""
    for length in range(8, len(text) + 1):
        if not any(o != text and o.startswith(text[:length]) for o in others):
            return text[:length]
    return text


def test_ids_are_shown_by_their_shortest_unique_prefix_and_matched_one_way(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """Two ids sharing 10 characters: history and the dry run show 11, every command
    reports the 10-character prefix as ambiguous the same way; `_` is not a wildcard."""
    rules = [{"responses": [], "then": "overloaded"}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        cli("process", str(images), "-n", "2", "--base-url", sim.base_url, env=KEY_ENV)
    conn = sqlite3.connect(cli.db_path)
    ids = [r[0] for r in conn.execute("SELECT id FROM generations ORDER BY id LIMIT 2")]
    twins = ["01m8prwqcqa" + "0" * 15, "01m8prwqcqb" + "0" * 15]
    for old, new in zip(ids, twins, strict=True):  # attempts refer to the row, not the id
        conn.execute("UPDATE generation_rows SET id = ? WHERE id = ?", [new, old])
    conn.commit()
    conn.close()
    history = cli("history", env=WIDE).output
    assert "01m8prwqcqa " in history and "01m8prwqcqb " in history
    every = [r["id"] for r in query(cli.db_path, "SELECT id FROM generations")]
    for one in every:
        assert re.search(rf"(^|\s){unique_prefix(one, every)}\s", history, re.M), (one, history)

    dry = cli("retry-failed", "--dry-run", env=WIDE).output
    assert "01m8prwqcqa " in dry and "01m8prwqcqb " in dry
    messages = set()
    for command in ("show", "retry-failed", "abandon"):
        result = cli(command, "01m8prwqcq", env=KEY_ENV)
        assert result.exit_code == 2, (command, result.output)
        messages.add(result.output.split(":", 1)[1].strip())
    assert len(messages) == 1 and "matches several variations" in messages.pop()
    assert cli("show", "01m8prwqc_").exit_code == 2
    assert cli("retry-failed", "0", env=KEY_ENV).exit_code == 2
    one = cli("retry-failed", "01m8prwqcqb", "--dry-run", "--json").output
    assert [row["id"] for row in json.loads(one)["would_send"]] == [twins[1]]


# 10 ------------------------------------------------------------------------------------------


def test_retry_failed_uses_the_present_base_url_and_another_model(cli: Cli, images: Path) -> None:
    """A run through GOOGLE_GEMINI_BASE_URL=A that failed, retried with the variable now
    pointing at B and --model: B gets the request, with that model, recorded on the attempt."""
    image = str(images / "shop-sign.png")
    with Simulator("outage") as first, Simulator("ok") as second:
        cli(
            "process",
            image,
            "--no-auto-retry",
            env=KEY_ENV | {"GOOGLE_GEMINI_BASE_URL": first.base_url},
        )
        assert statuses(cli.db_path) == ["failed"]
        result = cli(
            "retry-failed",
            "--model",
            "gemini-3-pro-image-preview",
            env=KEY_ENV | {"GOOGLE_GEMINI_BASE_URL": second.base_url},
        )
        assert (first.stats()["requests"], second.stats()["requests"]) == (1, 1)
        assert second.stats()["last_request"]["model"] == "gemini-3-pro-image-preview"
    assert result.exit_code == 0, result.output
    attempts = query(cli.db_path, "SELECT model, outcome FROM attempts ORDER BY attempt_number")
    assert attempts == [
        {"model": None, "outcome": "failed"},
        {"model": "gemini-3-pro-image-preview", "outcome": "succeeded"},
    ]
    for bad in (["--max-retries", "-5"], ["--timeout", "0"], ["--max-wait", "-1"], ["-c", "0"]):
        refused = cli("retry-failed", *bad, env=KEY_ENV)
        assert refused.exit_code == 2, (bad, refused.output)


# 11 ------------------------------------------------------------------------------------------


def test_read_commands_never_create_a_database(cli: Cli, tmp_path: Path) -> None:
    """history/show/stats on a database that does not exist: a named one is a usage error, the
    default place reads as empty; no file or folder is created either way."""
    typo = tmp_path / "typo" / "x.db"
    result = cli("history", "--db", str(typo))
    assert result.exit_code == 2 and f"no database at {typo}" in result.output
    assert not typo.parent.exists()
    for args in (["history"], ["stats"], ["history", "--errors"]):
        assert cli(*args).exit_code == 0
    assert cli("show", "01abc").exit_code == 2
    assert not cli.db_path.exists() and not cli.db_path.parent.exists()


# 12 ------------------------------------------------------------------------------------------


def test_settings_are_written_whole_under_a_new_name(cli: Cli, tmp_path: Path) -> None:
    """`settings set` writes a new file and renames it over the old one (a crash leaves one or
    the other, never half); `settings unset` goes back to the default."""
    assert cli("settings", "set", "language", "es").exit_code == 0
    path = tmp_path / "state" / "settings.toml"
    first = path.stat().st_ino
    assert cli("settings", "set", "concurrency", "8").exit_code == 0
    assert path.stat().st_ino != first  # replaced, not truncated and rewritten in place
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    result = cli("settings", "unset", "concurrency")
    assert result.exit_code == 0 and "back to the default (4)" in result.output
    shown = json.loads(cli("settings", "show", "--json").output)["settings"]
    assert shown["concurrency"] == {
        "value": 4,
        "source": "default",
        "environment_variable": "IMAGELINGO_CONCURRENCY",
    }
    assert shown["language"]["value"] == ["es"]
