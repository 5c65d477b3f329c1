"""Crashes, signals and two runs at once, with real `imagelingo process` subprocesses against
the simulator: the database stays consistent, no output is half written, nothing completed is
sent twice, and the next run finishes the work."""

from __future__ import annotations

import itertools
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, json_lines
from PIL import Image, ImageDraw
from procs import (
    Proc,
    child_env,
    integrity,
    opens_as_image,
    pause_until,
    query,
    temp_files,
    wait_until,
)

from imagelingo_cli.simulator import Simulator

KEY = "fake-key-for-the-simulator"
SHOW_CURSOR = b"\x1b[?25h"
HIDE_CURSOR = b"\x1b[?25l"


def make_images(folder: Path, count: int, salt: int) -> list[Path]:
    """`count` small distinct PNGs (sent byte for byte, so file sha256 == the simulator's key)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        image = Image.new("RGB", (64, 40), ((salt * 37 + i * 53) % 256, (i * 91) % 256, salt % 256))
        ImageDraw.Draw(image).text((4, 12), f"S{salt} #{i}", fill=(255, 255, 255))
        path = folder / f"sign-{i}.png"
        image.save(path, "PNG")
        made.append(path)
    return made


def keys_by_status(db: Path, folder: Path) -> dict[str, str]:
    """`<sha256>:<variation>` -> status for the variations of images under `folder`."""
    rows = query(
        db,
        "SELECT image_sha256, variation, status FROM generations WHERE source_path LIKE ?",
        (f"{folder}/%",),
    )
    return {f"{r['image_sha256']}:{r['variation']}": r["status"] for r in rows}


def assert_consistent(db: Path, out: Path) -> int:
    """After a crash: the database is whole, every completed variation's output is a whole image,
    and no output file anywhere is a partial one. Returns how many are completed."""
    check, foreign = integrity(db)
    assert check == "ok" and foreign == [], (check, foreign)
    completed = query(db, "SELECT output_path FROM generations WHERE status = 'completed'")
    for row in completed:
        assert row["output_path"] and opens_as_image(Path(row["output_path"])), row
    for path in out.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            assert opens_as_image(path), f"{path} is not a whole image"
    assert not query(db, "SELECT id FROM attempts WHERE outcome = 'failed'")
    assert not query(db, "SELECT id FROM generations WHERE status = 'failed'")
    return len(completed)


def process_args(folder: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return [
        "process",
        str(folder),
        "--variations",
        "2",
        "--concurrency",
        "2",
        "--to",
        "es",
        "--out",
        str(out),
        "--base-url",
        base_url,
        *extra,
    ]


@dataclass(frozen=True)
class Moment:
    """When to kill: once the run is recorded (requests None), or once the simulator has seen
    `requests` requests of this batch, then `extra` seconds later."""

    requests: int | None
    extra: float = 0.0


class Crasher:
    """Starts `imagelingo process` on a folder and SIGKILLs it at a given moment."""

    def __init__(self, cli: Cli, sim: Simulator, out: Path) -> None:
        self.cli = cli
        self.sim = sim
        self.out = out
        self.kills = 0

    def args(self, folder: Path) -> list[str]:
        return process_args(folder, self.out, self.sim.base_url)

    def crash(self, folder: Path, moment: Moment) -> None:
        db = self.cli.db_path
        runs_before = len(query(db, "SELECT id FROM runs"))
        seen_before = self.sim.stats()["requests"]
        proc = Proc(self.args(folder), env=child_env(GEMINI_API_KEY=KEY), cwd=self.cli.tmp_path)
        if moment.requests is None:
            wait_until(
                lambda: len(query(db, "SELECT id FROM runs")) > runs_before or not proc.alive(),
                30,
                "the run to be recorded",
            )
        else:
            wanted = seen_before + moment.requests
            wait_until(
                lambda: self.sim.stats()["requests"] >= wanted or not proc.alive(),
                30,
                f"request {moment.requests}",
            )
        pause_until(time.monotonic() + moment.extra)
        assert proc.kill(), f"the process ended before the kill at {moment}:\n{proc.text()}"
        self.kills += 1


def rerun(cli: Cli, crasher: Crasher, folder: Path, command: str) -> dict[str, Any]:
    """The next run, through the real CLI: `process` on the folder, or a bare `retry-failed`."""
    args = [*crasher.args(folder), "--json"] if command == "process" else ["retry-failed", "--json"]
    result = cli(*args, env={"GEMINI_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    last = json_lines(result.output)[-1]
    if last["event"] == "nothing_to_do":  # retry-failed found nothing to retry
        return {"credits_charged": 0}
    assert last["event"] == "batch_finished", last
    return last


@pytest.mark.slow
def test_kill_9_at_many_moments_loses_nothing_and_resends_nothing_completed(
    cli: Cli, tmp_path: Path
) -> None:
    """SIGKILL at 13 moments: DB intact, whole outputs, rest finished, nothing completed resent."""
    out = tmp_path / "out"
    extras = itertools.cycle([0.0, 0.06, 0.12, 0.17])
    # 5 images x 2 variations, 2 at a time, 0.15 s each: about 0.8 s of sending per batch.
    moments = [Moment(None)] + [Moment(k, next(extras)) for k in range(1, 11)]
    with Simulator("ok", latency=0.15) as sim:
        crasher = Crasher(cli, sim, out)
        batches: list[Path] = []
        for index, moment in enumerate([*moments, "double"]):
            folder = tmp_path / "imgs" / f"batch{index:02d}"
            make_images(folder, 5, salt=index + 1)
            batches.append(folder)
            sim.reset_stats()
            if moment == "double":  # killed, then the resuming run killed too
                crasher.crash(folder, Moment(3))
                assert_consistent(cli.db_path, out)
                crasher.crash(folder, Moment(2, 0.05))
            else:
                assert isinstance(moment, Moment)
                crasher.crash(folder, moment)
            # Right after the crash: a consistent database and only whole outputs.
            assert_consistent(cli.db_path, out)
            at_kill = keys_by_status(cli.db_path, folder)
            sent_at_kill = dict(sim.stats()["by_key"])
            in_flight = query(
                cli.db_path,
                "SELECT id FROM attempts WHERE outcome IS NULL AND generation_id IN"
                " (SELECT id FROM generations WHERE source_path LIKE ?)",
                (f"{folder}/%",),
            )
            done_at_kill = {k for k, s in at_kill.items() if s == "completed"}
            left = 10 - len(done_at_kill)

            # On the next start the dead run's variations are interrupted, never failed/completed.
            if index % 3 == 2:
                result = cli("retry-failed", "--dry-run", "--json")  # recovers, sends nothing
                assert result.exit_code == 0, result.output
                recovered = keys_by_status(cli.db_path, folder)
                for key, status in at_kill.items():
                    wanted = "completed" if status == "completed" else "interrupted"
                    assert recovered[key] == wanted, (key, status, recovered[key])
                assert sim.stats()["by_key"] == sent_at_kill

            # The next run: `retry-failed` (recovering the dead run) then `process`, or `process`.
            credits = 0
            if index % 3 == 1:
                summary = rerun(cli, crasher, folder, "retry-failed")
                credits += summary["credits_charged"]
                unfinished = {k for k, s in at_kill.items() if s != "completed"}
                now = keys_by_status(cli.db_path, folder)
                assert {k for k in unfinished if now[k] == "completed"} == unfinished
            summary = rerun(cli, crasher, folder, "process")
            credits += summary["credits_charged"]

            final = keys_by_status(cli.db_path, folder)
            assert len(final) == 10 and set(final.values()) == {"completed"}, final
            sent = sim.stats()["by_key"]
            assert set(sent) == set(final)
            resent = {k: sent[k] - sent_at_kill.get(k, 0) for k in sent}
            assert all(resent[k] == 0 for k in done_at_kill), (moment, resent, done_at_kill)
            assert all(n <= 1 for n in resent.values()), resent
            assert credits == left  # one credit per variation, once
            rows = query(
                cli.db_path,
                "SELECT credits_charged FROM generations WHERE source_path LIKE ?",
                (f"{folder}/%",),
            )
            assert [r["credits_charged"] for r in rows] == [1] * 10
            # The dead run's attempts in flight were interrupted, never failed; one whose output
            # was already on disk succeeded (its file was recorded), and was not sent again.
            for attempt in in_flight:
                (row,) = query(
                    cli.db_path,
                    "SELECT a.outcome, g.image_sha256 || ':' || g.variation AS key"
                    " FROM attempts a JOIN generations g ON g.id = a.generation_id WHERE a.id = ?",
                    (attempt["id"],),
                )
                assert row["outcome"] in ("interrupted", "succeeded"), row
                if row["outcome"] == "succeeded":
                    assert resent[row["key"]] == 0, (moment, row)
            assert not query(cli.db_path, "SELECT id FROM runs WHERE status = 'running'")
            assert not query(cli.db_path, "SELECT id FROM attempts WHERE outcome IS NULL")
            assert temp_files(out) == []
            assert_consistent(cli.db_path, out)

        # A final run over everything sends nothing: all of it is completed and on disk.
        sim.reset_stats()
        result = cli(
            "process",
            *(str(b) for b in batches),
            "--variations",
            "2",
            "--to",
            "es",
            "--out",
            str(out),
            "--base-url",
            sim.base_url,
            "--json",
            env={"GEMINI_API_KEY": KEY},
        )
        assert result.exit_code == 0, result.output
        assert sim.stats()["requests"] == 0
    summary = json_lines(result.output)[-1]
    assert summary["skipped"] == 10 * len(batches) and summary["credits_charged"] == 0
    assert crasher.kills >= 13
    print(f"kills survived: {crasher.kills}")


# --- Ctrl-C and SIGTERM ---------------------------------------------------------------------


def test_first_ctrl_c_lets_requests_in_flight_finish_and_exits_130(
    cli: Cli, tmp_path: Path
) -> None:
    """One SIGINT on a tty: in-flight finish, nothing new sent, 130, cursor back, resume works."""
    folder = tmp_path / "imgs"
    make_images(folder, 4, salt=7)
    out = tmp_path / "out"
    with Simulator("ok", latency=1.0) as sim:
        args = process_args(folder, out, sim.base_url)
        proc = Proc(args, env=child_env(GEMINI_API_KEY=KEY), cwd=tmp_path, terminal=True)
        wait_until(lambda: sim.stats()["in_flight"] >= 2, 30, "two requests in flight")
        proc.signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        assert sim.stats()["requests"] == 2  # nothing new was sent after the signal
        output = proc.stdout
        assert code == 130, proc.text()
        assert HIDE_CURSOR in output and output.rindex(SHOW_CURSOR) > output.rindex(HIDE_CURSOR)
        text = proc.text()
        assert "SIGINT: stopping" in text
        assert "Run the same command again to resume" in text
        assert "Traceback" not in text
        assert integrity(cli.db_path) == ("ok", [])
        (run,) = query(cli.db_path, "SELECT status FROM runs")
        assert run["status"] == "interrupted"
        attempts = query(cli.db_path, "SELECT outcome FROM attempts")
        assert [a["outcome"] for a in attempts] == ["succeeded", "succeeded"]  # within the grace
        rows = query(cli.db_path, "SELECT status, output_path FROM generations")
        assert sorted(r["status"] for r in rows if r["status"] != "interrupted") == [
            "completed",
            "completed",
        ]
        assert all(opens_as_image(Path(r["output_path"])) for r in rows if r["output_path"])
        first = dict(sim.stats()["by_key"])

        result = cli(*args, env={"GEMINI_API_KEY": KEY})
        assert result.exit_code == 0, result.output
        sent = sim.stats()["by_key"]
    assert len(sent) == 8 and all(n == 1 for n in sent.values())
    assert {k: sent[k] for k in first} == first
    assert {r["status"] for r in query(cli.db_path, "SELECT status FROM generations")} == {
        "completed"
    }


def test_closing_the_terminal_stops_like_sigterm_and_keeps_what_was_in_flight(
    cli: Cli, tmp_path: Path
) -> None:
    """The terminal window closes under the live table (SIGHUP, writes failing): the requests
    in flight finish and are recorded, nothing new is sent, the run ends interrupted."""
    folder = tmp_path / "imgs"
    make_images(folder, 4, salt=13)
    with Simulator("ok", latency=1.0) as sim:
        args = process_args(folder, tmp_path / "out", sim.base_url)
        proc = Proc(args, env=child_env(GEMINI_API_KEY=KEY), cwd=tmp_path, terminal=True)
        wait_until(lambda: sim.stats()["in_flight"] >= 2, 30, "two requests in flight")
        proc.hang_up()
        code = proc.wait(timeout=20)
        assert sim.stats()["requests"] == 2
    assert code == 130
    (run,) = query(cli.db_path, "SELECT status FROM runs")
    assert run["status"] == "interrupted"
    attempts = query(cli.db_path, "SELECT outcome FROM attempts")
    assert [a["outcome"] for a in attempts] == ["succeeded", "succeeded"]
    assert integrity(cli.db_path) == ("ok", [])


def test_a_run_started_under_nohup_goes_on_when_the_terminal_closes(
    cli: Cli, tmp_path: Path
) -> None:
    """SIGHUP ignored by the parent (`nohup`) stays ignored: the run finishes."""
    folder = tmp_path / "imgs"
    make_images(folder, 2, salt=17)
    with Simulator("ok", latency=0.5) as sim:
        args = process_args(folder, tmp_path / "out", sim.base_url)
        proc = Proc(
            args,
            env=child_env(GEMINI_API_KEY=KEY),
            cwd=tmp_path,
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
        )
        wait_until(lambda: sim.stats()["in_flight"] >= 1, 30, "a request in flight")
        proc.signal(signal.SIGHUP)
        assert proc.wait(timeout=30) == 0, proc.text()
    statuses = query(cli.db_path, "SELECT status FROM generations")
    assert len(statuses) == 4 and {r["status"] for r in statuses} == {"completed"}


@pytest.mark.slow
def test_sigterm_grace_period_ends_by_cancelling_what_is_still_in_flight(
    cli: Cli, tmp_path: Path
) -> None:
    """One SIGTERM: after the 10 s grace, stalled requests are cancelled, recorded interrupted."""
    folder = tmp_path / "imgs"
    make_images(folder, 3, salt=11)
    with Simulator("ok", latency=60) as sim:
        args = process_args(folder, tmp_path / "out", sim.base_url)
        proc = Proc(args, env=child_env(GEMINI_API_KEY=KEY), cwd=tmp_path)
        wait_until(lambda: sim.stats()["in_flight"] >= 2, 30, "two requests in flight")
        signalled = time.monotonic()
        proc.signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        took = time.monotonic() - signalled
        assert sim.stats()["requests"] == 2
    assert code == 130, proc.text()
    assert 9.5 <= took <= 20, took  # the grace period, then at once
    text = proc.text()
    assert "SIGTERM: stopping" in text and "Traceback" not in text
    assert "Run the same command again to resume" in text
    assert integrity(cli.db_path) == ("ok", [])
    attempts = query(cli.db_path, "SELECT outcome, finished_at FROM attempts")
    assert len(attempts) == 2
    assert all(a["outcome"] == "interrupted" and a["finished_at"] for a in attempts)
    rows = query(cli.db_path, "SELECT status, attempt_count FROM generations")
    assert {r["status"] for r in rows} == {"interrupted"}
    assert sorted(r["attempt_count"] for r in rows).count(1) == 2
    assert [r["status"] for r in query(cli.db_path, "SELECT status FROM runs")] == ["interrupted"]


def test_second_signal_stops_at_once_and_leaves_a_consistent_database(
    cli: Cli, tmp_path: Path
) -> None:
    """A second SIGINT exits 130 at once, attempts recorded interrupted, the database intact."""
    folder = tmp_path / "imgs"
    make_images(folder, 3, salt=13)
    with Simulator("ok", latency=60) as sim:
        args = process_args(folder, tmp_path / "out", sim.base_url)
        proc = Proc(args, env=child_env(GEMINI_API_KEY=KEY), cwd=tmp_path)
        wait_until(lambda: sim.stats()["in_flight"] >= 2, 30, "two requests in flight")
        proc.signal(signal.SIGINT)
        wait_until(lambda: b"stopping" in proc.stdout, 10, "the first signal to be handled")
        signalled = time.monotonic()
        proc.signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        took = time.monotonic() - signalled
    assert code == 130, proc.text()
    assert took < 5, took
    assert b"SIGINT again: stopping now" in proc.stdout and b"Traceback" not in proc.stderr
    assert integrity(cli.db_path) == ("ok", [])
    assert {a["outcome"] for a in query(cli.db_path, "SELECT outcome FROM attempts")} == {
        "interrupted"
    }
    statuses = {r["status"] for r in query(cli.db_path, "SELECT status FROM generations")}
    assert statuses == {"interrupted"}
    assert [r["status"] for r in query(cli.db_path, "SELECT status FROM runs")] == ["interrupted"]


# --- two runs on one database ---------------------------------------------------------------


def test_two_processes_on_one_database_never_send_a_variation_twice(
    cli: Cli, tmp_path: Path
) -> None:
    """Two runs on one database, overlapping inputs: no lock error, no variation sent twice."""
    out = tmp_path / "out"
    duplicated = 0
    total = 0
    with Simulator("ok", latency=0.05) as sim:

        def start(*folders: Path) -> Proc:
            args = [
                "process",
                *(str(f) for f in folders),
                "--variations",
                "2",
                "--concurrency",
                "4",
                "--to",
                "es",
                "--out",
                str(out),
                "--base-url",
                sim.base_url,
            ]
            return Proc(args, env=child_env(GEMINI_API_KEY=KEY), cwd=tmp_path)

        for round_ in range(3):
            base = tmp_path / f"round{round_}"
            shared, only_a, only_b = base / "shared", base / "only-a", base / "only-b"
            make_images(shared, 12, salt=30 + round_)
            make_images(only_a, 2, salt=40 + round_)
            make_images(only_b, 2, salt=50 + round_)
            sim.reset_stats()
            first, second = start(shared, only_a), start(shared, only_b)
            codes = first.wait(timeout=60), second.wait(timeout=60)
            stats = sim.stats()
            for proc in (first, second):
                text = proc.text()
                assert "locked" not in text and "unexpected error" not in text, text
                assert "Traceback" not in text, text
            assert codes == (0, 0), (first.text(), second.text())
            duplicated += sum(n - 1 for n in stats["by_key"].values() if n > 1)
            total += stats["requests"]
            assert stats["requests"] == len(stats["by_key"]) == (12 + 2 + 2) * 2, stats["by_key"]
    print(f"concurrent-run requests: {total}, duplicated: {duplicated}")
    assert duplicated == 0
    rows = query(cli.db_path, "SELECT status, credits_charged, output_path FROM generations")
    assert len(rows) == 3 * 32
    assert {(r["status"], r["credits_charged"]) for r in rows} == {("completed", 1)}
    assert all(opens_as_image(Path(r["output_path"])) for r in rows)
    assert integrity(cli.db_path) == ("ok", [])
    assert [r["status"] for r in query(cli.db_path, "SELECT status FROM runs")] == ["completed"] * 6


# --- a kill between an output's write and its record ----------------------------------------

# An audit hook in the child: when an output is renamed into place under OUT, finish that
# rename, then SIGKILL the process, before it can record the output in the database.
KILL_AFTER_OUTPUT_WRITE = """
import os, signal, sys, threading
_lock, _owner = threading.Lock(), []
def _kill_after_output_write(event, args):
    if event != "os.rename" or not str(args[1]).startswith({out!r}):
        return
    if _owner == [threading.get_ident()]:
        return  # the rename below, done for the output that stops the process
    with _lock:  # a second output finishing at the same moment waits here for the kill
        _owner.append(threading.get_ident())
        os.replace(args[0], args[1])
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(_kill_after_output_write)
"""


@pytest.mark.parametrize("command", ["process", "retry-failed"])
def test_a_kill_between_writing_an_output_and_recording_it_is_adopted_not_paid_again(
    cli: Cli, tmp_path: Path, command: str
) -> None:
    """kill -9 right after an output lands on disk, before the database records it: the next
    run (`process` again, or `retry-failed`) records that file, sends nothing for it, and
    leaves one file, not a `-2` copy; the variation is charged once."""
    folder, out = tmp_path / "imgs", tmp_path / "out"
    make_images(folder, 1, salt=7)
    with Simulator("ok") as sim:
        args = process_args(folder, out, sim.base_url, "--concurrency", "1")
        killed = Proc(
            args,
            env=child_env(GEMINI_API_KEY=KEY),
            cwd=tmp_path,
            bootstrap=KILL_AFTER_OUTPUT_WRITE.format(out=str(out)),
        )
        assert killed.wait(timeout=60) == -signal.SIGKILL, killed.text()
        written = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
        assert len(written) == 1 and opens_as_image(written[0])
        assert not query(cli.db_path, "SELECT id FROM generations WHERE status = 'completed'")
        sent_before = sim.stats()["requests"]

        summary = rerun(cli, Crasher(cli, sim, out), folder, command)

        resent = sim.stats()["requests"] - sent_before
    files = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert files == ["sign-0.es.v1.png", "sign-0.es.v2.png"], files
    adopted = query(
        cli.db_path,
        "SELECT id, status, credits_charged, output_path, pending_output FROM generations"
        " WHERE output_path = ?",
        (str(written[0]),),
    )
    assert [(r["status"], r["credits_charged"], r["pending_output"]) for r in adopted] == [
        ("completed", 1, None)
    ]
    attempts = query(
        cli.db_path,
        "SELECT outcome FROM attempts WHERE generation_id = ?",
        (adopted[0]["id"],),
    )
    assert [a["outcome"] for a in attempts] == ["succeeded"]
    assert resent == 1, resent  # only the other variation, which the kill left unsent
    assert summary["credits_charged"] == 2
    assert assert_consistent(cli.db_path, out) == 2


# The file system refuses every new file under the output folder, as a full disk does.
DISK_FULL = """
import errno, os, sys
def _disk_full(event, args):
    if event == "open" and str(args[0]).startswith({out!r}) and (args[2] or 0) & os.O_CREAT:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]))
sys.addaudithook(_disk_full)
"""


def test_a_full_disk_stops_sending_and_retry_failed_finishes_once_there_is_room(
    cli: Cli, tmp_path: Path
) -> None:
    """No output can be written: the first OUTPUT_ERROR (ENOSPC) stops the run sending, so
    credits are not spent on images that cannot be kept; the rest fail as not sent, and
    retry-failed, once there is room, completes every variation."""
    folder, out = tmp_path / "imgs", tmp_path / "out"
    make_images(folder, 4, salt=19)
    with Simulator("ok") as sim:
        args = process_args(folder, out, sim.base_url, "--concurrency", "1")
        full = Proc(
            args,
            env=child_env(GEMINI_API_KEY=KEY),
            cwd=tmp_path,
            bootstrap=DISK_FULL.format(out=str(out)),
        )
        assert full.wait(timeout=60) == 1, full.text()
        sent = sim.stats()["requests"]
        assert sent <= 2  # the one that met the full disk, and one sent while it was written
        text = full.text()
        assert "Sending stopped - Output Error" in text and "No space left on device" in text
        rows = query(cli.db_path, "SELECT status, error_code, error_message FROM generations")
        assert len(rows) == 8 and {(r["status"], r["error_code"]) for r in rows} == {
            ("failed", "OUTPUT_ERROR")
        }
        assert sum(r["error_message"].startswith("not sent: ") for r in rows) == 8 - sent

        retried = cli("retry-failed", "--base-url", sim.base_url, env={"GEMINI_API_KEY": KEY})
        assert retried.exit_code == 0, retried.output
        assert sim.stats()["requests"] == sent + 8
    statuses = query(cli.db_path, "SELECT status FROM generations")
    assert {r["status"] for r in statuses} == {"completed"}
