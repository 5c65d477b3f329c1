"""The tallies `stats` reads stay equal to the stats counted from the whole history, whatever
writes the history: every Store write, the real CLI with the simulator, a dead run recovered."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY, Cli, scenario_simulator
from test_history import CONFIG, QUOTA, RATE, TIMEOUT, Recorder

from imagelingo_cli.answers import Usage
from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.states import Trigger
from imagelingo_cli.store import GenerationKey, Store, encoding, open_store, queries, tallies

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}
EPOCH = "1970-01-01T00:00:00.000Z"


def assert_true(store: Store) -> None:
    """The kept tallies are what a count of the whole history gives, and `stats` read from
    them says what `stats` counted from the attempts says, for all runs and for each run."""
    assert tallies.stored(store.db) == tallies.recount(store.db)
    runs = [run for (run,) in store.db.execute("SELECT id FROM runs")]
    for run_id in (None, *runs):
        kept = queries.stats(store, run_id=run_id)
        counted = queries.stats(store, run_id=run_id, since=EPOCH)
        assert {**kept, "scope": None} == {**counted, "scope": None}, run_id


@pytest.fixture
def rec(cli: Cli) -> Iterator[Recorder]:
    recorder = Recorder(cli.db_path)
    yield recorder
    recorder.store.close()


def test_every_store_write_keeps_the_tallies_true(rec: Recorder) -> None:
    """Claims, attempts that fail, succeed or are cut short, unsent failures, interruptions,
    an adopted output, a forced redo by another run, retry-failed rounds and abandon."""
    store = rec.store
    first = rec.run()
    done, retried, stuck, unsent, cut, adopted, dropped = (
        rec.variation(first, f"{name}.png")
        for name in ("done", "retried", "stuck", "unsent", "cut", "adopted", "dropped")
    )
    steps = [
        lambda: rec.succeed(done, first),
        lambda: rec.fail(retried, first, RATE, wait_ms=2000),
        lambda: rec.fail(retried, first, RATE, wait_ms=4000),
        lambda: rec.fail(retried, first, TIMEOUT),
        lambda: rec.fail(stuck, first, CONFIG),
        lambda: store.fail_unsent(unsent, QUOTA),
        lambda: rec.interrupt(cut, first),
        lambda: store.intend_outputs([(adopted, "/out/adopted.es.v1.png", "ab" * 32)]),
        lambda: store.start_attempt(adopted, first, Trigger.AUTO),
        lambda: store.adopt_output(adopted),
        lambda: rec.fail(dropped, first, RATE),
        lambda: queries.abandon(store, [dropped]),
        lambda: store.finish_run(first, "failed"),
    ]
    for step in steps:
        step()
        assert_true(store)
    later = rec.run("retry-failed")
    for gid in (retried, unsent, cut):
        rec.retry_round(gid, later)
        assert_true(store)
    rec.fail(retried, later, RATE, wait_ms=2000, trigger=Trigger.MANUAL)
    rec.succeed(retried, later)
    rec.succeed(unsent, later, trigger=Trigger.MANUAL)
    attempt, _ = store.start_attempt(cut, later, Trigger.MANUAL)
    store.attempt_interrupted(attempt, duration_ms=5)
    store.mark_interrupted(cut)
    assert_true(store)
    forced = rec.run("process")
    claim = store.claim_generation(
        rec_key(rec, done), run_id=forced, source_path="/imgs/done.png",
        relative_path="done.png", out_dir="/out", base_url=None, force=True,
    )  # fmt: skip
    assert claim.kind == "send"
    assert_true(store)
    attempt, _ = store.start_attempt(done, forced, Trigger.AUTO)
    store.attempt_failed(attempt, done, RATE, duration_ms=5, retry_in_ms=None)
    assert_true(store)  # a failed redo keeps the variation completed


def rec_key(rec: Recorder, gid: str) -> GenerationKey:
    row = rec.store.generation(gid)
    return GenerationKey(
        row["image_sha256"], row["target_language"], row["model"], row["variation"], row["backend"]
    )


def test_a_dead_run_recovered_keeps_the_tallies_true(rec: Recorder) -> None:
    """A run whose process is gone: its in-flight attempt and unfinished variations become
    interrupted, and the tallies follow."""
    run = rec.run()
    sending = rec.variation(run, "a.png")
    rec.store.start_attempt(sending, run, Trigger.AUTO)
    waiting = rec.variation(run, "b.png")
    rec.fail(waiting, run, RATE, wait_ms=2000)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rec.store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", [int(gone), run])
    assert rec.store.recover_dead_runs() == 1
    statuses = {rec.store.generation(gid)["status"] for gid in (sending, waiting)}
    assert statuses == {"interrupted"}
    assert_true(rec.store)


def test_the_real_cli_keeps_the_tallies_true(cli: Cli, images: Path, tmp_path: Path) -> None:
    """process (a 429 retried, a 503, a 400, NO_IMAGE), retry-failed, abandon, process --force:
    after each, the tallies equal a count of the history and `stats` agrees with it."""
    rules = [
        {"image": "imgs/cafe-menu.jpg", "variation": 1,
         "responses": [{"fault": "rate_limit", "retry_delay": 1}]},
        {"image": "imgs/cafe-menu.jpg", "variation": 2, "responses": ["overloaded"]},
        {"image": "imgs/shop-sign.png", "variation": 1, "responses": ["invalid_argument"]},
        {"image": "imgs/concert-poster.webp", "variation": 2, "responses": ["no_image"]},
    ]  # fmt: skip
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        base = ["--base-url", sim.base_url]
        assert cli("process", str(images), "-n", "2", *base, env=KEY_ENV).exit_code == 1
        check(cli)
        cli("retry-failed", "--code", "SERVER_ERROR", *base, env=KEY_ENV)
        check(cli)
        assert cli("abandon", "--code", "INVALID_REQUEST", "--yes").exit_code == 0
        check(cli)
        cli("process", str(images), "-n", "2", "--force", *base, env=KEY_ENV)
        check(cli)
    data = json.loads(cli("stats", "--json").output)
    assert data["variations"]["variations"] == 6 and data["by_code"], data


def test_batch_mode_keeps_the_tallies_true(cli: Cli, images: Path, tmp_path: Path) -> None:
    """process --batch --no-wait (variations waiting in a job), batch collect (a NO_IMAGE
    among them), retry-failed --batch: after each, the tallies equal a count of the history,
    and the spend counts the batch's answers at the batch rate."""
    rules = [{"image": "imgs/cafe-menu.jpg", "variation": 1, "responses": ["no_image"]}]
    with scenario_simulator(tmp_path, {"rules": rules}, batch_pending=0, batch_running=0) as sim:
        base = ["--base-url", sim.base_url]
        submit = cli("process", str(images), "--batch", "--no-wait", *base, env=KEY_ENV)
        assert submit.exit_code == 0, submit.output
        check(cli)
        waiting = json.loads(cli("stats", "--json").output)
        assert waiting["variations"]["in_progress"] == 3 and waiting["attempts"]["in_flight"] == 3
        assert cli("batch", "collect", *base, env=KEY_ENV).exit_code == 1
        check(cli)
        assert cli("retry-failed", "--batch", *base, env=KEY_ENV).exit_code == 0
        check(cli)
    store = open_store(cli.db_path)
    try:
        usage = queries.usage_by_model(store)
    finally:
        store.close()
    assert [(u["batch"], u["images"]) for u in usage] == [(1, 3)]


def check(cli: Cli) -> None:
    store = open_store(cli.db_path)
    try:
        assert_true(store)
    finally:
        store.close()


def test_tokens_of_a_failed_answer_count(rec: Recorder) -> None:
    """A refusal is billed: its tokens count in the tallies like an image's."""
    run = rec.run()
    gid = rec.variation(run, "t.png")
    attempt, _ = rec.store.start_attempt(gid, run, Trigger.AUTO)
    refusal = TranslationError(
        ErrorCode.SAFETY_BLOCKED,
        "IMAGE_SAFETY",
        200,
        usage=Usage(prompt_tokens=10, total_tokens=12),
    )
    rec.store.attempt_failed(attempt, gid, refusal, duration_ms=5, retry_in_ms=None)
    assert queries.stats(rec.store)["total_tokens"] == 12
    assert_true(rec.store)


def test_since_counts_only_the_attempts_made_since(rec: Recorder) -> None:
    """--since a moment between two runs: the later run's attempts, and the variations they
    touched, nothing before."""
    store = rec.store
    first = rec.run()
    early = [rec.variation(first, f"early{index}.png") for index in range(3)]
    for gid in early:
        attempt, _ = store.start_attempt(gid, first, Trigger.AUTO)
        store.attempt_failed(attempt, gid, RATE, duration_ms=5, retry_in_ms=None)
    store.finish_run(first, "failed")
    hour = 3_600_000  # the first run took place an hour ago
    store.db.execute("UPDATE generation_rows SET updated_ms = updated_ms - ?", [hour])
    store.db.execute(
        "UPDATE attempt_rows SET started_ms = started_ms - ?1, finished_ms = finished_ms - ?1",
        [hour],
    )
    moment = encoding.iso(encoding.now_ms() - hour // 2)
    later = rec.run("retry-failed")
    rec.retry_round(early[0], later)
    attempt, _ = store.start_attempt(early[0], later, Trigger.MANUAL)
    store.attempt_succeeded(
        attempt, early[0], duration_ms=5, output_path="/out/early0.png",
        output_sha256="ab" * 32, usage=Usage(total_tokens=3),
    )  # fmt: skip
    data = queries.stats(store, since=moment)
    assert data["attempts"]["total"] == 1 and data["variations"]["variations"] == 1
    assert data["by_code"] == [] and data["credits_charged"] == 1
    assert queries.stats(store)["attempts"]["total"] == 4
