"""kill -9 at every stage of `process --batch`, with real subprocesses against the simulator:
the rerun finishes the work with each variation translated once, charged once, and one job at
Google. The moment of each kill is exact: an audit hook in the child (or, for the create, the
simulator holding its answer) — imagelingo's code is not touched."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import Cli
from procs import Proc, child_env, integrity, opens_as_image, query, wait_until
from test_chaos import make_images, process_args

from imagelingo_cli.batch_mode.importing import WORKERS
from imagelingo_cli.simulator import Simulator

KEY = "fake-key-for-the-simulator"
IMAGES = 3
VARIATIONS = 2  # what test_chaos.process_args asks for

# An audit hook in the child: SIGKILL it at the first event `kill_now` accepts.
KILL_AT = """
import os, signal, sys
_state = {{"jsonl_open": False}}
def _path(args):
    return str(args[0]) if args and isinstance(args[0], (str, bytes, os.PathLike)) else ""
def kill_now(event, args):
{moment}
def _hook(event, args):
    if kill_now(event, args):
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(_hook)
"""

MOMENTS = {
    # Building: the job's JSONL holds the first image's lines; the second image is being read.
    "building": """
    path = _path(args)
    if event == "open" and path.endswith(".jsonl") and "w" in str(args[1]):
        _state["jsonl_open"] = True
        return False
    return event == "open" and _state["jsonl_open"] and path.endswith(".png")
""",
    # Uploading: the job is recorded; the SDK opens its JSONL to upload it.
    "uploading": """
    path = _path(args)
    return event == "open" and path.endswith(".jsonl") and "r" in str(args[1] or "r")
""",
    # Downloading: the job has ended; its results are being streamed to disk.
    "downloading": """
    return event == "open" and _path(args).endswith(".results.jsonl")
""",
    # Importing: the first output is renamed into place, before it is recorded.
    "importing": """
    if event == "os.rename" and str(args[1]).startswith({out!r}) and not _state.get("renamed"):
        _state["renamed"] = True  # os.replace raises this event again
        os.replace(args[0], args[1])
        return True
    return False
""",
}


def batch_args(folder: Path, out: Path, base_url: str) -> list[str]:
    """The chaos tests' `process` (2 variations each) as one job, one image at a time."""
    return process_args(folder, out, base_url, "--batch", "--concurrency", "1")


def env() -> dict[str, str]:
    return child_env(GEMINI_API_KEY=KEY, IMAGELINGO_BATCH_POLL="0.1")


def assert_once_each(cli: Cli, sim: Simulator, folder: Path, out: Path) -> None:
    """Every variation completed, by one request in one job, charged one credit, one output."""
    db = cli.db_path
    assert integrity(db) == ("ok", [])
    rows = query(db, "SELECT * FROM generations WHERE source_path LIKE ?", (f"{folder}/%",))
    assert len(rows) == IMAGES * VARIATIONS
    assert {(r["status"], r["credits_charged"]) for r in rows} == {("completed", 1)}, rows
    stats = sim.stats()
    assert stats["batch"]["jobs_created"] == 1, stats["batch"]
    assert sorted(stats["by_key"].values()) == [1] * IMAGES * VARIATIONS, stats["by_key"]
    assert stats["outcomes"] == {}  # nothing was sent one by one
    for row in rows:
        attempts = query(db, "SELECT * FROM attempts WHERE generation_id = ?", (row["id"],))
        assert [(a["trigger"], a["outcome"]) for a in attempts] == [("batch", "succeeded")]
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(written) == IMAGES * VARIATIONS, written  # no `-2` copies, no temp files
    assert all(opens_as_image(p) for p in written)
    assert not query(db, "SELECT id FROM runs WHERE status = 'running'")
    assert not query(db, "SELECT id FROM attempts WHERE outcome IS NULL")
    assert [j["imported_at"] is not None for j in query(db, "SELECT * FROM batch_jobs")] == [True]


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage", ["building", "uploading", "creating", "polling", "downloading", "importing"]
)
def test_kill_9_at_each_stage_then_a_rerun_does_the_work_once(
    cli: Cli, tmp_path: Path, stage: str
) -> None:
    """SIGKILL while building, uploading, creating, polling, downloading or importing; the
    same command again ends with one job at Google and each variation translated and charged
    once."""
    folder, out = tmp_path / "imgs", tmp_path / "out"
    make_images(folder, IMAGES, salt=len(stage))
    # The create's answer is held back a moment, so the kill lands after Google made the job
    # and before imagelingo heard of it.
    latency = 0.4 if stage == "creating" else 0.0
    with Simulator("ok", batch_pending=0.3, batch_running=0.6, latency=latency) as sim:
        args = batch_args(folder, out, sim.base_url)
        bootstrap = None
        if stage in MOMENTS:
            moment = MOMENTS[stage].format(out=str(out)) if stage == "importing" else MOMENTS[stage]
            bootstrap = KILL_AT.format(moment=moment.strip("\n"))
        child = Proc(args, env=env(), cwd=tmp_path, bootstrap=bootstrap)
        if stage == "creating":
            wait_until(lambda: sim.stats()["batch"]["jobs_created"] >= 1, 30, "the create")
            assert child.kill(), child.text()
            assert not query(cli.db_path, "SELECT name FROM batch_jobs WHERE name IS NOT NULL")
        elif stage == "polling":
            wait_until(
                lambda: query(cli.db_path, "SELECT 1 FROM batch_jobs WHERE api_state IS NOT NULL"),
                30,
                "the first poll",
            )
            assert child.kill(), child.text()
        else:
            assert child.wait(timeout=60) == -signal.SIGKILL, child.text()
        assert integrity(cli.db_path) == ("ok", [])

        rerun = Proc(args, env=env(), cwd=tmp_path)
        assert rerun.wait(timeout=60) == 0, rerun.text()
        assert "Traceback" not in rerun.text()
        assert_once_each(cli, sim, folder, out)
    history = cli("history", "--json")
    shown = [row["id"] for row in json.loads(history.output)]
    assert len(shown) == len(set(shown)) == IMAGES * VARIATIONS


# --- Ctrl-C and two runs ------------------------------------------------------------------------


def test_ctrl_c_stops_waiting_and_never_cancels_the_job(cli: Cli, tmp_path: Path) -> None:
    """SIGINT while the live view waits: exit 130, the terminal's cursor back, the job still
    at Google and its variations still in it; batch collect later imports them."""
    folder, out = tmp_path / "imgs", tmp_path / "out"
    make_images(folder, 2, salt=21)
    with Simulator("ok", batch_pending=3600, batch_running=1) as sim:
        args = batch_args(folder, out, sim.base_url)
        proc = Proc(args, env=env(), cwd=tmp_path, terminal=True)
        wait_until(
            lambda: query(cli.db_path, "SELECT 1 FROM batch_jobs WHERE api_state IS NOT NULL"),
            30,
            "the first poll",
        )
        proc.signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        assert sim.stats()["batch"]["jobs"] == {"BATCH_STATE_PENDING": 1}  # not cancelled
    text = proc.text()
    assert code == 130, text
    assert "stopped waiting" in text and "wait in jobs at Google" in text
    assert "imagelingo batch collect" in text and "Traceback" not in text
    assert proc.stdout.rindex(b"\x1b[?25h") > proc.stdout.rindex(b"\x1b[?25l")
    statuses = {r["status"] for r in query(cli.db_path, "SELECT status FROM generations")}
    assert statuses == {"batched"}
    (run,) = query(cli.db_path, "SELECT status FROM runs")
    assert run["status"] == "interrupted"
    (job,) = query(cli.db_path, "SELECT collector_run_id, imported_at FROM batch_jobs")
    assert job == {"collector_run_id": None, "imported_at": None}


def test_a_second_collector_leaves_a_job_to_the_run_waiting_for_it(
    cli: Cli, tmp_path: Path
) -> None:
    """Two `batch collect` at once: the second sees the first waiting for the job and leaves
    it alone (one importer per job)."""
    folder, out = tmp_path / "imgs", tmp_path / "out"
    make_images(folder, 1, salt=23)
    with Simulator("ok", batch_pending=3600, batch_running=1) as sim:
        submit = Proc(
            [*batch_args(folder, out, sim.base_url), "--no-wait"], env=env(), cwd=tmp_path
        )
        assert submit.wait(timeout=60) == 0, submit.text()
        first = Proc(["batch", "collect", "--base-url", sim.base_url], env=env(), cwd=tmp_path)
        wait_until(
            lambda: query(
                cli.db_path, "SELECT 1 FROM batch_jobs WHERE collector_run_id IS NOT NULL"
            ),
            30,
            "the first collector to take the job",
        )
        second = cli("batch", "collect", "--base-url", sim.base_url, env={"GEMINI_API_KEY": KEY})
        first.signal(signal.SIGINT)
        assert first.wait(timeout=20) == 130, first.text()
    assert "SIGINT: stopping; the jobs go on at Google" in first.text()
    assert second.exit_code == 0, second.output
    assert "another imagelingo run" in second.output and "is waiting for it" in second.output
    assert {r["status"] for r in query(cli.db_path, "SELECT status FROM generations")} == {
        "batched"
    }


def test_a_full_disk_stops_the_import_and_batch_collect_records_the_rest(
    cli: Cli, tmp_path: Path
) -> None:
    """The outputs of a finished job cannot be written (ENOSPC): the import stops at the
    first, says why, and leaves the job not imported with the rest of its variations waiting;
    once there is room, batch collect records them (no new job, nothing sent again)."""
    from test_chaos import DISK_FULL

    folder, out = tmp_path / "imgs", tmp_path / "out"
    make_images(folder, IMAGES, salt=29)
    with Simulator("ok", batch_pending=0, batch_running=0.5) as sim:
        full = Proc(
            batch_args(folder, out, sim.base_url),
            env=env(),
            cwd=tmp_path,
            bootstrap=DISK_FULL.format(out=str(out)),
        )
        assert full.wait(timeout=60) == 1, full.text()
        assert "No space left on device" in full.text()
        assert "imagelingo batch collect records the rest" in full.text()
        (job,) = query(cli.db_path, "SELECT imported_at FROM batch_jobs")
        assert job["imported_at"] is None
        statuses = [r["status"] for r in query(cli.db_path, "SELECT status FROM generations")]
        failed = statuses.count("failed")  # the lines being written when the disk filled
        assert 1 <= failed <= WORKERS and statuses.count("batched") == len(statuses) - failed

        collected = Proc(["batch", "collect", "--base-url", sim.base_url], env=env(), cwd=tmp_path)
        assert collected.wait(timeout=60) == 0, collected.text()
        assert sim.stats()["batch"]["jobs_created"] == 1
    rows = query(cli.db_path, "SELECT status FROM generations")
    completed = len(rows) - failed
    assert sorted(r["status"] for r in rows) == ["completed"] * completed + ["failed"] * failed
