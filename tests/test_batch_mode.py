"""Batch mode end to end: the real CLI and the real google-genai SDK against the simulator's
Batch API, on one virtual clock (the engine's sleeps move the simulator's jobs along, so no
test waits for real), with a real database. What the user sees, what the database holds, and
what reached the simulator."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, json_lines
from PIL import Image, ImageDraw

from imagelingo_cli.simulator import Simulator

KEY = "fake-key-for-the-simulator"
MODEL = "gemini-2.5-flash-image"


def png(color: tuple[int, int, int], text: str = "OPEN") -> bytes:
    image = Image.new("RGB", (72, 48), color)
    ImageDraw.Draw(image).text((6, 16), text, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Bench:
    """A folder of images, an output folder, and the simulator on the CLI's virtual clock."""

    cli: Cli
    sim: Simulator
    folder: Path
    out: Path

    def process(self, *extra: str, folder: Path | None = None) -> Any:
        return self.cli(
            "process",
            str(folder or self.folder),
            "--batch",
            "--to",
            "es",
            "--out",
            str(self.out),
            "--base-url",
            self.sim.base_url,
            *extra,
            env={"GEMINI_API_KEY": KEY},
        )

    def run(self, *args: str) -> Any:
        return self.cli(*args, "--base-url", self.sim.base_url, env={"GEMINI_API_KEY": KEY})

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.cli.rows(sql, params)

    def variations(self) -> dict[str, dict[str, Any]]:
        """`<image name> v<N>` -> its generations row."""
        rows = self.rows("SELECT * FROM generations")
        return {f"{Path(r['source_path']).name} v{r['variation']}": r for r in rows}

    @property
    def batch(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.sim.stats()["batch"]
        return stats


def bench_for(cli: Cli, tmp_path: Path, images: dict[str, bytes], **kwargs: Any) -> Iterator[Bench]:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, data in images.items():
        (folder / name).write_bytes(data)
    scenario = kwargs.pop("scenario", None)
    if scenario is not None:
        (folder.parent / "scenario.json").write_text(json.dumps(scenario))
        kwargs["scenario"] = folder.parent / "scenario.json"
    kwargs.setdefault("batch_pending", 10)
    kwargs.setdefault("batch_running", 20)
    with Simulator("ok", clock=cli.clock.now, **kwargs) as sim:
        yield Bench(cli, sim, folder, tmp_path / "out")


@pytest.fixture
def bench(cli: Cli, tmp_path: Path) -> Iterator[Bench]:
    """Three plain images."""
    images = {f"sign-{i}.png": png((40 * i, 90, 160)) for i in range(3)}
    yield from bench_for(cli, tmp_path, images)


def summary_of(result: Any) -> dict[str, Any]:
    finished = [e for e in json_lines(result.output) if e["event"] == "batch_finished"]
    assert finished, result.output
    summary: dict[str, Any] = finished[-1]
    return summary


# --- a mixed job ------------------------------------------------------------------------------


MIXED_SCENARIO = {
    "rules": [
        {"image": "imgs/unsafe.png", "responses": ["image_safety"]},
        {"variation": 2, "responses": ["no_image"]},
        {"variation": 3, "responses": [{"fault": "rate_limit", "retry_delay": 7}]},
    ],
    "batch": {"jobs": [{"order": "reversed"}]},
}


def test_a_mixed_job_is_imported_line_by_line_by_key(cli: Cli, tmp_path: Path) -> None:
    """Successes, NO_IMAGE, SAFETY_BLOCKED and a per-line 429 in one job, whose results come
    back in reverse order: each variation gets its own outcome, with the same codes as an
    interactive request, one attempt (trigger batch) naming the job, one credit per success."""
    images = {"menu.png": png((20, 120, 60)), "unsafe.png": png((200, 20, 20), "XXX")}
    for bench in bench_for(cli, tmp_path, images, scenario=MIXED_SCENARIO):
        result = bench.process("--variations", "3")
        stats = bench.batch
    assert result.exit_code == 1, result.output  # some variations failed
    assert stats["jobs_created"] == 1 and stats["lines"] == 6
    found = bench.variations()
    outcome = {name: (row["status"], row["error_code"]) for name, row in found.items()}
    assert outcome == {
        "menu.png v1": ("completed", None),
        "menu.png v2": ("failed", "NO_IMAGE"),
        "menu.png v3": ("failed", "RATE_LIMIT"),
        "unsafe.png v1": ("failed", "SAFETY_BLOCKED"),
        "unsafe.png v2": ("failed", "SAFETY_BLOCKED"),
        "unsafe.png v3": ("failed", "SAFETY_BLOCKED"),
    }
    completed = found["menu.png v1"]
    assert completed["credits_charged"] == 1
    with Image.open(completed["output_path"]) as image:
        image.load()
    assert Path(completed["output_path"]).name == "menu.es.v1.png"
    assert [r["credits_charged"] for n, r in found.items() if n != "menu.png v1"] == [0] * 5
    (job,) = bench.rows("SELECT * FROM batch_jobs")
    assert job["state"] == "succeeded" and job["imported_at"] and job["name"].startswith("batches/")
    assert (job["succeeded_requests"], job["failed_requests"]) == (5, 1)  # batchStats
    attempts = bench.rows("SELECT * FROM attempts ORDER BY generation_id")
    assert len(attempts) == 6
    assert {(a["trigger"], a["batch_job_id"], a["attempt_number"]) for a in attempts} == {
        ("batch", job["id"], 1)
    }
    assert all(a["finished_at"] and a["outcome"] for a in attempts)
    limited = next(a for a in attempts if a["error_code"] == "RATE_LIMIT")
    assert (limited["http_status"], limited["api_status"], limited["retry_after_ms"]) == (
        429,
        "RESOURCE_EXHAUSTED",
        7000,
    )
    refused = next(a for a in attempts if a["error_code"] == "SAFETY_BLOCKED")
    assert refused["api_status"] == "IMAGE_SAFETY" and refused["total_tokens"]  # billed tokens


@pytest.mark.parametrize("output", ["auto", "inline"])
def test_results_that_repeat_their_keys_are_recorded_once(
    cli: Cli, tmp_path: Path, output: str
) -> None:
    """Every result twice over (nothing promises a key appears once): each variation is
    written and recorded once, its second line ignored, in the same chunk or a later one."""
    images = {f"sign-{i:02d}.png": png((20 * i, 90, 160)) for i in range(12)}
    scenario = {"batch": {"jobs": [{"order": "repeated", "output": output}]}}
    for bench in bench_for(cli, tmp_path, images, scenario=scenario):
        result = bench.process("--variations", "2")
    assert result.exit_code == 0, result.output
    rows = bench.rows("SELECT status, credits_charged, attempt_count FROM generations")
    assert [(r["status"], r["credits_charged"], r["attempt_count"]) for r in rows] == [
        ("completed", 1, 1)
    ] * 24
    outputs = sorted(path.name for path in bench.out.rglob("*") if path.is_file())
    assert len(outputs) == 24 and not any("-2." in name for name in outputs)
    assert "24 completed, 0 failed" in result.output


def test_line_errors_in_grpc_codes_under_status_are_classified(cli: Cli, tmp_path: Path) -> None:
    """A line error given as `{"status": {"code": 8}}` (a gRPC number, no status string, with
    details objects the SDK cannot parse) is a RATE_LIMIT all the same."""
    scenario = {
        "rules": [{"variation": 1, "responses": ["rate_limit"]}],
        "batch": {
            "jobs": [{"status_codes": "grpc", "error_field": "status", "status_details": True}]
        },
    }
    for bench in bench_for(cli, tmp_path, {"a.png": png((1, 2, 3))}, scenario=scenario):
        result = bench.process("--variations", "2")
    assert result.exit_code == 1, result.output
    found = bench.variations()
    assert (found["a.png v1"]["status"], found["a.png v1"]["error_code"]) == (
        "failed",
        "RATE_LIMIT",
    )
    assert found["a.png v2"]["status"] == "completed"
    (attempt,) = bench.rows("SELECT * FROM attempts WHERE outcome = 'failed'")
    assert (attempt["http_status"], attempt["api_status"]) == (429, "RESOURCE_EXHAUSTED")


# --- submit, leave, come back -----------------------------------------------------------------


def test_no_wait_then_collect_finds_every_variation_once(bench: Bench) -> None:
    """--no-wait returns once submitted; the variations wait in the job (history says so,
    process skips them, retry-failed does not offer them); batch collect imports them."""
    submitted = bench.process("--no-wait")
    assert submitted.exit_code == 0, submitted.output
    assert "wait in jobs at Google" in submitted.output
    assert "imagelingo batch collect" in submitted.output
    assert {r["status"] for r in bench.rows("SELECT status FROM generations")} == {"batched"}
    assert bench.rows("SELECT COUNT(*) AS n FROM attempts WHERE outcome IS NULL")[0]["n"] == 3
    history = bench.cli("history")
    assert history.output.count("Waiting in a Batch API job") == 3

    interactive = bench.cli(
        "process",
        str(bench.folder),
        "--to",
        "es",
        "--out",
        str(bench.out),
        "--base-url",
        bench.sim.base_url,
        "--json",
        env={"GEMINI_API_KEY": KEY},
    )
    skipped = [e for e in json_lines(interactive.output) if e["event"] == "variation_skipped"]
    assert [e["reason"] for e in skipped] == ["in_batch"] * 3
    assert bench.sim.stats()["outcomes"] == {}  # no interactive request was sent
    dry = json_lines(bench.cli("retry-failed", "--dry-run", "--json").output)[-1]
    assert dry["event"] == "nothing_to_do"
    preview = json_lines(bench.process("--dry-run", "--json").output)[-1]
    assert [p["reason"] for p in preview["would_skip"]] == ["in_batch"] * 3
    assert preview["would_send"] == []

    collected = bench.run("batch", "collect")
    assert collected.exit_code == 0, collected.output
    assert "3 completed, 0 failed" in collected.output
    rows = bench.rows("SELECT status, credits_charged, output_path FROM generations")
    assert [(r["status"], r["credits_charged"]) for r in rows] == [("completed", 1)] * 3
    assert all(Path(r["output_path"]).is_file() for r in rows)
    assert bench.batch["jobs_created"] == 1 and bench.batch["lines"] == 3
    history = bench.cli("history", "--json")
    assert len(json.loads(history.output)) == 3  # every variation once
    runs = bench.rows("SELECT COUNT(*) AS n FROM runs")[0]["n"]
    again = bench.run("batch", "collect")  # nothing left: nothing happens, no run is recorded
    assert again.exit_code == 0, again.output
    assert "No batch job to wait for" in again.output
    assert bench.rows("SELECT COUNT(*) AS n FROM runs")[0]["n"] == runs
    assert bench.batch["jobs_created"] == 1


def test_a_rerun_of_process_batch_follows_the_job_already_submitted(bench: Bench) -> None:
    """The same `process --batch` again, after --no-wait: no new job; it waits for the one
    at Google and imports it."""
    assert bench.process("--no-wait").exit_code == 0
    again = bench.process("--json")
    assert again.exit_code == 0, again.output
    summary = summary_of(again)
    assert (summary["completed"], summary["skipped"], summary["credits_charged"]) == (3, 0, 3)
    assert bench.batch["creates"] == bench.batch["jobs_created"] == 1
    events = [e["event"] for e in json_lines(again.output)]
    assert "job_recorded" not in events and "job_imported" in events


def test_status_and_list_show_the_job_as_google_sees_it(bench: Bench) -> None:
    """batch status asks Google (state, batchStats); batch list shows what is recorded."""
    assert bench.process("--no-wait").exit_code == 0
    bench.cli.clock._now += 20  # the job is running, two thirds done at Google
    shown = bench.run("batch", "status", "--json")
    assert shown.exit_code == 0, shown.output
    (job,) = json.loads(shown.output)
    assert job["api"]["state"] == "BATCH_STATE_RUNNING" and job["state"] == "running"
    assert job["api"]["request_count"] == 3 and job["variations"] == {"batched": 3}
    listed = bench.cli("batch", "list")
    assert "running" in listed.output and job["id"][:12] in listed.output
    words = bench.run("batch", "status", job["id"][:14])
    assert "RUNNING" in words.output and job["name"] in words.output


def test_a_job_too_big_for_the_cap_is_split(cli: Cli, tmp_path: Path) -> None:
    """With the size cap below two lines, each variation goes in a job of its own."""
    images = {f"s{i}.png": png((i * 60, 10, 10)) for i in range(3)}
    for bench in bench_for(cli, tmp_path, images):
        result = cli(
            "process",
            str(bench.folder),
            "--batch",
            "--out",
            str(bench.out),
            "--base-url",
            bench.sim.base_url,
            env={"GEMINI_API_KEY": KEY, "IMAGELINGO_BATCH_MAX_MB": "0.001"},
        )
        stats = bench.batch
    assert result.exit_code == 0, result.output
    assert stats["jobs_created"] == 3 and stats["lines"] == 3
    jobs = bench.rows("SELECT requests, input_bytes FROM batch_jobs")
    assert [j["requests"] for j in jobs] == [1, 1, 1]
    assert {r["status"] for r in bench.rows("SELECT status FROM generations")} == {"completed"}


# --- how jobs end -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "code", "words"),
    [
        ({"ending": "expired"}, "TIMEOUT", "the batch job expired"),
        (
            {"ending": "failed", "error": {"code": 3, "message": "Input file is not valid."}},
            "INVALID_REQUEST",
            "the batch job failed: Input file is not valid.",
        ),
        ({"ending": "failed", "status_details": True}, "SERVER_ERROR", "the batch job failed"),
        ({"output": "none"}, "API_ERROR", "hold no answer for this variation"),
    ],
)
def test_a_job_that_ends_without_results_fails_its_variations(
    cli: Cli, tmp_path: Path, rule: dict[str, Any], code: str, words: str
) -> None:
    """EXPIRED, FAILED (with or without details objects) and SUCCEEDED without any results:
    every variation fails with a clear code and message, is charged nothing, and is offered
    by retry-failed."""
    scenario = {"batch": {"jobs": [rule]}}
    images = {"a.png": png((9, 9, 9)), "b.png": png((99, 9, 9))}
    for bench in bench_for(cli, tmp_path, images, scenario=scenario):
        result = bench.process()
    assert result.exit_code == 1, result.output
    rows = bench.rows("SELECT * FROM generations")
    assert {(r["status"], r["error_code"], r["credits_charged"]) for r in rows} == {
        ("failed", code, 0)
    }
    assert all(words in r["error_message"] for r in rows), rows[0]["error_message"]
    assert code in result.output and "retry-failed" in result.output
    (job,) = bench.rows("SELECT * FROM batch_jobs")
    assert job["imported_at"] is not None
    offered = json_lines(bench.cli("retry-failed", "--dry-run", "--json").output)[-1]
    assert len(offered["would_send"]) == 2


def test_cancel_interrupts_what_the_job_did_not_finish(bench: Bench) -> None:
    """batch cancel: what the job finished is recorded, the rest is interrupted (not an API
    failure) and the next process --batch sends it again in a new job."""
    assert bench.process("--no-wait").exit_code == 0
    bench.cli.clock._now += 10 + 20 * 0.5  # running, half done: one line of three
    (job,) = bench.rows("SELECT id FROM batch_jobs")
    cancelled = bench.run("batch", "cancel", job["id"])
    assert cancelled.exit_code == 0, cancelled.output
    statuses = sorted(r["status"] for r in bench.rows("SELECT status FROM generations"))
    assert statuses == ["completed", "interrupted", "interrupted"]
    outcomes = sorted(str(a["outcome"]) for a in bench.rows("SELECT outcome FROM attempts"))
    assert outcomes == ["interrupted", "interrupted", "succeeded"]
    assert bench.rows("SELECT state FROM batch_jobs")[0]["state"] == "cancelled"
    again = bench.process()
    assert again.exit_code == 0, again.output
    assert {r["status"] for r in bench.rows("SELECT status FROM generations")} == {"completed"}
    assert bench.batch["jobs_created"] == 2 and bench.batch["lines"] == 1 + 2
    credits = bench.rows("SELECT credits_charged FROM generations")
    assert [c["credits_charged"] for c in credits] == [1, 1, 1]


def test_an_unknown_state_is_reported_not_polled_for_ever(cli: Cli, tmp_path: Path) -> None:
    """A job in a state this version does not know: after the limit the wait stops and says
    so; the variations stay in the job (it may still deliver them); exit 1."""
    scenario = {"batch": {"jobs": [{"ending": "unknown"}]}}
    for bench in bench_for(cli, tmp_path, {"a.png": png((5, 5, 5))}, scenario=scenario):
        result = bench.process()
        polls = bench.sim.stats()["requests"]
    assert result.exit_code == 1, result.output
    assert "BATCH_STATE_SOMETHING_NEW" in result.output
    assert "imagelingo batch status" in result.output
    assert {r["status"] for r in bench.rows("SELECT status FROM generations")} == {"batched"}
    (job,) = bench.rows("SELECT state, api_state FROM batch_jobs")
    assert (job["state"], job["api_state"]) == ("unknown", "BATCH_STATE_SOMETHING_NEW")
    assert polls < 30  # 10 minutes of polls backing off, not a poll loop


def test_results_not_downloadable_yet_are_fetched_when_they_are(cli: Cli, tmp_path: Path) -> None:
    """SUCCEEDED before its results file can be downloaded (404 for a while): tried again."""
    scenario = {"batch": {"jobs": [{"output_delay": 60}]}}
    for bench in bench_for(cli, tmp_path, {"a.png": png((7, 70, 7))}, scenario=scenario):
        result = bench.process("--json")
    assert result.exit_code == 0, result.output
    trouble = [e for e in json_lines(result.output) if e["event"] == "job_trouble"]
    assert trouble and trouble[0]["doing"] == "downloading the results"
    assert bench.rows("SELECT status FROM generations")[0]["status"] == "completed"


# --- submitting ---------------------------------------------------------------------------------


def test_a_refused_create_fails_the_variations_and_retry_batch_sends_them(
    cli: Cli, tmp_path: Path
) -> None:
    """A 429 on create (the batch token quota) is definite: nothing was created, the job is
    not_submitted and its variations fail RATE_LIMIT; retry-failed --batch makes a new job."""
    scenario = {"batch": {"jobs": [{"create": ["enqueued_tokens"]}]}}
    for bench in bench_for(cli, tmp_path, {"a.png": png((1, 100, 1))}, scenario=scenario):
        refused = bench.process("--variations", "2")
        assert refused.exit_code == 1, refused.output
        rows = bench.rows("SELECT status, error_code FROM generations")
        assert {(r["status"], r["error_code"]) for r in rows} == {("failed", "RATE_LIMIT")}
        assert bench.rows("SELECT state FROM batch_jobs")[0]["state"] == "not_submitted"
        retried = bench.run("retry-failed", "--batch")
        stats = bench.batch
    assert retried.exit_code == 0, retried.output
    assert stats["creates"] == 2 and stats["jobs_created"] == 1
    rows = bench.rows("SELECT status, credits_charged, attempt_count FROM generations")
    assert [(r["status"], r["credits_charged"], r["attempt_count"]) for r in rows] == [
        ("completed", 1, 2)
    ] * 2
    triggers = [a["trigger"] for a in bench.rows("SELECT trigger FROM attempts")]
    assert triggers == ["batch"] * 4


def test_an_ambiguous_create_is_looked_for_before_creating_again(cli: Cli, tmp_path: Path) -> None:
    """A 503 on create leaves it unknown whether the job exists: it is looked for by its
    display name (not there), then created once."""
    scenario = {"batch": {"jobs": [{"create": ["unavailable"]}]}}
    for bench in bench_for(cli, tmp_path, {"a.png": png((3, 30, 3))}, scenario=scenario):
        result = bench.process("--json")
        stats = bench.batch
    assert result.exit_code == 0, result.output
    assert stats["creates"] == 2 and stats["jobs_created"] == 1
    events = json_lines(result.output)
    trouble = [e for e in events if e["event"] == "job_trouble"]
    assert [t["doing"] for t in trouble] == ["creating the job"]
    assert trouble[0]["error"]["code"] == "SERVER_ERROR"


def test_retry_failed_retries_batch_failures_interactively_by_default(
    cli: Cli, tmp_path: Path
) -> None:
    """Failures from a job go to retry-failed like any other: one by one (manual), not as a job."""
    scenario = {"rules": [{"variation": 2, "responses": ["no_image"], "then": "ok"}]}
    for bench in bench_for(cli, tmp_path, {"a.png": png((50, 5, 5))}, scenario=scenario):
        assert bench.process("--variations", "2").exit_code == 1
        retried = bench.run("retry-failed", "--json")
        stats = bench.batch
    assert retried.exit_code == 0, retried.output
    assert stats["jobs_created"] == 1
    attempts = bench.rows(
        "SELECT a.trigger, a.outcome FROM attempts a JOIN generations g ON g.id = a.generation_id"
        " WHERE g.variation = 2 ORDER BY a.attempt_number"
    )
    assert [(a["trigger"], a["outcome"]) for a in attempts] == [
        ("batch", "failed"),
        ("manual", "succeeded"),
    ]


def test_the_run_that_collects_a_job_finds_its_failures_by_its_own_id(
    cli: Cli, tmp_path: Path
) -> None:
    """batch collect's failure panel points at `history --errors --run <its id>`: that and
    retry-failed --run find what it imported (the attempts stay the submitting run's)."""
    scenario = {"rules": [{"variation": 2, "responses": ["no_image"], "then": "ok"}]}
    for bench in bench_for(cli, tmp_path, {"a.png": png((60, 6, 6))}, scenario=scenario):
        assert bench.process("--variations", "2", "--no-wait").exit_code == 0
        collected = bench.run("batch", "collect")
    assert collected.exit_code == 1, collected.output
    (collector,) = bench.rows("SELECT id FROM runs WHERE command = 'batch collect'")
    errors = bench.cli("history", "--errors", "--run", collector["id"], "--format", "json")
    assert [(r["variation"], r["error_code"]) for r in json.loads(errors.output)] == [
        (2, "NO_IMAGE")
    ]
    offered = bench.cli("retry-failed", "--run", collector["id"], "--dry-run", "--json")
    assert len(json_lines(offered.output)[-1]["would_send"]) == 1
    attempts = bench.rows("SELECT run_id FROM attempts")
    assert len(attempts) == 2 and collector["id"] not in {a["run_id"] for a in attempts}


def test_simulate_runs_the_whole_flow_in_process(cli: Cli, images: Path, tmp_path: Path) -> None:
    """`process --batch --simulate ok` needs no key and no server; --no-wait with it is refused
    (its simulator would stop with the run)."""
    from typer.testing import CliRunner

    from imagelingo_cli.cli import app

    runner = CliRunner()
    args = ["process", str(images), "--batch", "--simulate", "ok", "--out", str(tmp_path / "o")]
    refused = runner.invoke(app, [*args, "--no-wait"])
    assert refused.exit_code == 2 and "needs a server that outlives this run" in refused.output
    # The in-process simulator runs jobs on real time: the real clock waits for them.
    done = runner.invoke(app, args, env={"IMAGELINGO_BATCH_POLL": "0.5"}, obj={})
    assert done.exit_code == 0, done.output
    assert "3 completed, 0 failed" in done.output
    rows = cli.rows("SELECT status, backend FROM generations")
    assert rows == [{"status": "completed", "backend": "simulator:ok"}] * 3


@pytest.mark.parametrize("echo", [True, False])
def test_inline_results_are_matched_by_their_metadata_key(
    cli: Cli, tmp_path: Path, echo: bool
) -> None:
    """Google may answer a file job inline: the answers are matched by their metadata key;
    without that echo they cannot be matched (order proves nothing), and the variations fail
    saying so rather than taking another's image."""
    scenario = {
        "batch": {"jobs": [{"output": "inline", "order": "reversed", "echo_metadata": echo}]}
    }
    images = {"a.png": png((10, 200, 10)), "b.png": png((10, 10, 200))}
    for bench in bench_for(cli, tmp_path, images, scenario=scenario):
        result = bench.process()
    rows = bench.rows("SELECT status, error_code, error_message FROM generations")
    if echo:
        assert result.exit_code == 0, result.output
        assert {r["status"] for r in rows} == {"completed"}
        for name, row in bench.variations().items():
            assert Path(row["output_path"]).name == name.replace(".png v1", ".es.v1.png")
    else:
        assert result.exit_code == 1, result.output
        assert {(r["status"], r["error_code"]) for r in rows} == {("failed", "API_ERROR")}
        assert all("2 result lines had no key" in r["error_message"] for r in rows)


def library_request(folder: Path, out: Path, base_url: str, *, concurrency: int) -> Any:
    """What `process FOLDER --batch -n 2 --to es` asks, built for the library."""
    from imagelingo_cli.languages import resolve_language
    from imagelingo_cli.retry import RetryPolicy
    from imagelingo_cli.runner import Connection, ProcessRequest

    return ProcessRequest(
        paths=[folder],
        variations=2,
        languages=(resolve_language("es"),),
        model=MODEL,
        out_dir=out,
        policy=RetryPolicy(),
        concurrency=concurrency,
        connection=Connection(api_key=KEY, base_url=base_url),
    )


def test_a_job_pending_past_the_limit_is_reported_and_left_waiting(tmp_path: Path) -> None:
    """The library: a job still PENDING after `pending_limit` seconds of waiting is reported,
    not polled for ever; the run ends `submitted`, its variations still in the job."""
    import anyio

    from imagelingo_cli.batch_mode.runner import BatchModeOptions, submit
    from imagelingo_cli.clock import VirtualClock
    from imagelingo_cli.runner import plan_process
    from imagelingo_cli.store import open_store

    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(png((1, 1, 1)))
    clock = VirtualClock()
    store = open_store(tmp_path / "db.sqlite")
    seen: list[Any] = []
    options = BatchModeOptions(first_poll=1, max_poll=30, pending_limit=600)
    with Simulator("ok", clock=clock.now, batch_pending=100_000) as sim:
        request = library_request(folder, tmp_path / "out", sim.base_url, concurrency=2)
        jobs = plan_process(request, store).jobs

        async def main() -> Any:
            return await submit(
                request, jobs, store, options=options, clock=clock, emit=seen.append
            )

        outcome = anyio.run(main, backend="asyncio")
        polls = sum(1 for event in seen if type(event).__name__ == "JobPolled")
    assert outcome.summary.status == "submitted" and outcome.waiting == 2
    (left,) = outcome.problems
    assert left.reason.startswith("still pending after 10 min of waiting")
    assert 10 <= polls <= 30  # every 1 s at first, backing off to 30 s: not a busy loop
    statuses = store.db.execute("SELECT status FROM generations").fetchall()
    assert statuses == [("batched",), ("batched",)]
    store.close()


def test_the_jobs_view_shows_state_counts_and_the_next_poll() -> None:
    """The live view at a fixed width: each job's state, batchStats, elapsed and next poll,
    then the counts and what Ctrl-C does."""
    from rich.console import Console

    from imagelingo_cli import events as ev
    from imagelingo_cli.cli.batch_mode_display import JobsState, render_jobs
    from imagelingo_cli.cli.progress import ProgressState
    from imagelingo_cli.states import JobState

    now = [100.0]
    jobs, progress = JobsState(lambda: now[0]), ProgressState(lambda: now[0])
    job = ev.JobView(
        "01m8q1y5xw7ys60gkf95rmsegy", "imagelingo-01m8…", "batches/xyz", JobState.RUNNING, 30, 12, 1
    )
    progress.apply(ev.BatchStarted("run1", "process", 30, 4, 1))
    jobs.apply(ev.JobRecorded(job))
    now[0] += 42
    jobs.apply(ev.JobPolled(job, now[0] + 20))
    console = Console(width=100, record=True, color_system=None)
    console.print(render_jobs(jobs, progress))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "RUNNING" in line)
    assert row.startswith("01m8q1y5xw7y ")  # the id prefix every batch command takes
    assert row.split()[1:] == ["RUNNING", "30", "12", "1", "0:42", "poll", "in", "20s"]
    assert "0 done · 0 failed · 0 skipped · 30 in jobs" in text
    assert "Ctrl-C stops waiting (jobs go on at Google)" in text

    jobs.apply(ev.JobLeft(job, "uploading the requests: Network Error - " + "x" * 200))
    for width, cells in (
        (110, ["RUNNING", "30", "12", "1", "0:42"]),
        (60, ["RUNNING", "12/30", "1"]),
    ):
        console = Console(width=width, record=True, color_system=None)
        console.print(render_jobs(jobs, progress))
        row = next(line for line in console.export_text().splitlines() if "RUNNING" in line)
        assert row.startswith("01m8q1y5xw7y ") and row.split()[1 : len(cells) + 1] == cells
        assert row.rstrip().endswith("…") and len(row.rstrip()) <= width  # the note gives way
        assert "uploading" in row


def test_stopping_while_building_creates_no_job_and_leaves_nothing_claimed(tmp_path: Path) -> None:
    """Ctrl-C before a job is recorded: no job, nothing uploaded; the variations already
    claimed and written are interrupted, the rest never claimed; a later run does them all."""
    import anyio

    from imagelingo_cli import events as ev
    from imagelingo_cli.batch_mode.runner import BatchModeOptions, submit
    from imagelingo_cli.clock import VirtualClock
    from imagelingo_cli.control import BatchControl
    from imagelingo_cli.runner import plan_process
    from imagelingo_cli.store import open_store

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"s{i}.png").write_bytes(png((i * 70, 3, 3)))
    clock, control = VirtualClock(), BatchControl()
    store = open_store(tmp_path / "db.sqlite")

    def emit(event: Any) -> None:
        if isinstance(event, ev.VariationQueued):  # the first image is claimed: Ctrl-C
            control.request_stop()

    with Simulator("ok", clock=clock.now) as sim:
        request = library_request(folder, tmp_path / "out", sim.base_url, concurrency=1)
        jobs = plan_process(request, store).jobs

        async def main() -> Any:
            options = BatchModeOptions(first_poll=1)
            return await submit(
                request, jobs, store, options=options, clock=clock, emit=emit, control=control
            )

        outcome = anyio.run(main, backend="asyncio")
        stats = sim.stats()["batch"]
    assert outcome.summary.status == "interrupted" and outcome.summary.interrupted == 6
    assert stats["uploads_started"] == 0 and stats["jobs_created"] == 0
    rows = store.db.execute("SELECT status FROM generations").fetchall()
    assert rows == [("interrupted",), ("interrupted",)]  # the first image's; the rest unclaimed
    assert store.db.execute("SELECT COUNT(*) FROM batch_jobs").fetchone() == (0,)
    store.close()
