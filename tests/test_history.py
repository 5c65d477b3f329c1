"""`history`, `show` and `abandon` over a real database written through the Store API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli

from imagelingo_cli.answers import Usage
from imagelingo_cli.cli.when import parse_since
from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.states import Trigger
from imagelingo_cli.store import AttemptId, GenerationKey, Store, encoding, open_store

WIDE = {"COLUMNS": "250"}
RATE = TranslationError(
    ErrorCode.RATE_LIMIT, "Resource exhausted.", 429, "RESOURCE_EXHAUSTED", 17000
)
TIMEOUT = TranslationError(ErrorCode.TIMEOUT, "Deadline expired.", 504, "DEADLINE_EXCEEDED")
CONFIG = TranslationError(ErrorCode.CONFIG_ERROR, "API key not valid.", 400, "INVALID_ARGUMENT")
QUOTA = TranslationError(ErrorCode.QUOTA_EXHAUSTED, "Quota exceeded (limit: 0).", 429)


SEQ = "(SELECT seq FROM generation_rows WHERE id = ?)"


class Recorder:
    """Writes runs, variations and attempts the way the engine does, through `Store`."""

    def __init__(self, path: Path) -> None:
        self.store: Store = open_store(path)
        self.clock = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)  # the attempts' timeline

    def _timed(self, attempt: AttemptId, duration_ms: int, after_ms: int | None) -> None:
        """Give the attempt its place on the timeline: it lasted `duration_ms`, and the next
        one starts `after_ms` after its end (the planned wait, kept to the millisecond)."""
        finished = self.clock + timedelta(milliseconds=duration_ms)
        self.store.db.execute(
            "UPDATE attempt_rows SET started_ms = ?, finished_ms = ?"
            f" WHERE generation_seq = {SEQ} AND attempt_number = ?",
            [ms(self.clock), ms(finished), attempt.generation_id, attempt.number],
        )
        self.clock = finished + timedelta(milliseconds=after_ms or 1000)

    def wait_longer(self, ms: int) -> None:
        """The next attempt starts `ms` later than planned (the gate held it)."""
        self.clock += timedelta(milliseconds=ms)

    def run(self, command: str = "process", **options: Any) -> str:
        options.setdefault("max_retries", 2)
        options.setdefault("auto_retry", True)
        return self.store.start_run(
            command, target_language="es", model="m", backend="simulator:ok", options=options
        )

    def variation(self, run: str, name: str, number: int = 1) -> str:
        key = GenerationKey(name, "es", "m", number, "simulator:ok")
        claim = self.store.claim_generation(
            key,
            run_id=run,
            source_path=f"/imgs/{name}",
            relative_path=name,
            out_dir="/out",
            base_url=None,
        )
        return str(claim.row["id"])

    def retry_round(self, generation_id: str, run: str) -> None:
        assert self.store.claim_for_retry(generation_id, run).kind == "send"

    def fail(
        self,
        gid: str,
        run: str,
        error: TranslationError,
        *,
        wait_ms: int | None = None,
        trigger: Trigger = Trigger.AUTO,
    ) -> None:
        attempt, _ = self.store.start_attempt(gid, run, trigger)
        self.store.attempt_failed(attempt, gid, error, duration_ms=412, retry_in_ms=wait_ms)
        self._timed(attempt, 412, wait_ms)

    def succeed(self, gid: str, run: str, *, trigger: Trigger = Trigger.AUTO) -> None:
        attempt, _ = self.store.start_attempt(gid, run, trigger)
        self.store.attempt_succeeded(
            attempt,
            gid,
            duration_ms=1290,
            output_path=f"/out/{gid}.png",
            output_sha256=gid.ljust(64, "0"),
            usage=Usage(
                prompt_tokens=1000, output_tokens=290, total_tokens=1290, model_version="m"
            ),
        )
        self._timed(attempt, 1290, None)

    def interrupt(self, gid: str, run: str) -> None:
        attempt, _ = self.store.start_attempt(gid, run, Trigger.AUTO)
        self.store.attempt_interrupted(attempt, duration_ms=5)
        self.store.mark_interrupted(gid)

    def stamp(self, gid: str, when: str) -> None:
        """Pin updated_at, and move the attempts so the first starts then (keeping their
        gaps), so order and --since are deterministic."""
        self.store.db.execute(
            "UPDATE generation_rows SET updated_ms = ? WHERE id = ?", [ms(when), gid]
        )
        (first,) = self.store.db.execute(
            f"SELECT MIN(started_ms) FROM attempt_rows WHERE generation_seq = {SEQ}", [gid]
        ).fetchone()
        if first is not None:
            shift = ms(when) - first
            self.store.db.execute(
                "UPDATE attempt_rows SET started_ms = started_ms + ?, finished_ms = finished_ms + ?"
                f" WHERE generation_seq = {SEQ}",
                [shift, shift, gid],
            )


def ms(when: datetime | str) -> int:
    """A moment as the database keeps it: UTC milliseconds."""
    return encoding.ms(when if isinstance(when, str) else when.isoformat())


@pytest.fixture
def rec(cli: Cli) -> Iterator[Recorder]:
    recorder = Recorder(cli.db_path)
    yield recorder
    recorder.store.close()


def history_json(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli("history", "--json", *args)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


def shared_prefix(one: str, other: str) -> str:
    pairs = zip(one, other, strict=False)
    return one[: next((i for i, (a, b) in enumerate(pairs) if a != b), len(one))]


def unique_prefix(target: str, others: list[str]) -> str:
    common = max(len(shared_prefix(target, o)) for o in others if o != target)
    return target[: common + 1]


@pytest.fixture
def mixed(rec: Recorder) -> dict[str, str]:
    """One variation per outcome, updated one minute apart in this order."""
    run = rec.run()
    ids = {
        name: rec.variation(run, f"{name}.png")
        for name in ("first", "second", "timeout", "config", "quota", "abandoned", "interrupted")
    }
    rec.succeed(ids["first"], run)
    rec.fail(ids["second"], run, RATE, wait_ms=17400)
    rec.succeed(ids["second"], run)
    for wait in (2100, 4300, None):
        rec.fail(ids["timeout"], run, TIMEOUT, wait_ms=wait)
    rec.fail(ids["config"], run, CONFIG)
    rec.store.fail_unsent(ids["quota"], QUOTA)
    rec.fail(ids["abandoned"], run, RATE)
    rec.interrupt(ids["interrupted"], run)
    rec.store.finish_run(run, "failed")
    for minute, gid in enumerate(ids.values()):
        rec.stamp(gid, f"2025-11-28T20:{minute:02d}:00.000Z")
    return ids


def test_empty_database_says_nothing_is_recorded(cli: Cli) -> None:
    """A fresh database: a plain sentence and exit 0, for history and history --errors."""
    assert (cli("history").exit_code, cli("history").output.strip()) == (
        0,
        "No variations recorded yet.",
    )
    assert cli("history", "--errors").output.strip() == "No failed variations."
    assert cli("history", "--json").output.strip() == "[]"


def test_history_is_newest_first_and_tells_each_story(
    cli: Cli, rec: Recorder, mixed: dict[str, str]
) -> None:
    """Every status in words, newest update first, failures included."""
    assert cli("abandon", mixed["abandoned"]).exit_code == 0
    rec.stamp(mixed["abandoned"], "2025-11-28T20:05:00.000Z")
    rows = history_json(cli)
    assert [r["id"] for r in rows] == list(reversed(mixed.values()))
    stories = {r["source_path"]: r["story"] for r in rows}
    assert stories == {
        "/imgs/first.png": "Completed on attempt 1/3",
        "/imgs/second.png": "Completed on attempt 2/3",
        "/imgs/timeout.png": "Failed after 2 retries · Timeout",
        "/imgs/config.png": "Failed · Config Error (permanent)",
        "/imgs/quota.png": "Failed · Quota Exhausted (not sent)",
        "/imgs/abandoned.png": "Abandoned · Rate Limit",
        "/imgs/interrupted.png": "Interrupted on attempt 1/3",
    }
    table = cli("history", env=WIDE).output
    assert "Failed after 2 retries · Timeout" in table and "Completed on attempt 2/3" in table
    assert table.index("interrupted.png") < table.index("first.png")


def test_errors_lists_exactly_the_failed_ones_with_codes_and_counts(
    cli: Cli, mixed: dict[str, str]
) -> None:
    """--errors: status failed only, with code, message, retry count and is_retryable."""
    rows = history_json(cli, "--errors")
    got = {
        r["id"]: (r["error_code"], r["retry_count"], r["attempt_count"], r["is_retryable"])
        for r in rows
    }
    assert got == {
        mixed["timeout"]: ("TIMEOUT", 2, 3, True),
        mixed["config"]: ("CONFIG_ERROR", 0, 1, False),
        mixed["quota"]: ("QUOTA_EXHAUSTED", 0, 0, True),
        mixed["abandoned"]: ("RATE_LIMIT", 0, 1, True),
    }
    assert all(r["status"] == "failed" and r["error_message"] for r in rows)
    text = cli("history", "--errors", env=WIDE).output
    assert "4 failed variations; 3 may pass on a retry." in text
    assert "Retry them: imagelingo retry-failed" in text and "not sent" in text


def test_code_run_since_and_limit_filter_in_sql(
    cli: Cli, rec: Recorder, mixed: dict[str, str]
) -> None:
    """--code (repeatable), --run by prefix, --since a date-time, --limit with a 'showing' note."""
    codes = {
        r["error_code"] for r in history_json(cli, "--code", "timeout", "--code", "CONFIG_ERROR")
    }
    assert codes == {"TIMEOUT", "CONFIG_ERROR"}
    later = rec.run("retry-failed")
    rec.retry_round(mixed["timeout"], later)
    rec.succeed(mixed["timeout"], later, trigger=Trigger.MANUAL)
    assert [r["id"] for r in history_json(cli, "--run", later[:20])] == [mixed["timeout"]]
    since = [r["id"] for r in history_json(cli, "--since", "2025-11-28T20:05:00Z")]
    assert since == [mixed["timeout"], mixed["interrupted"], mixed["abandoned"]]
    assert len(history_json(cli, "--limit", "2")) == 2
    assert "Showing the newest 2 of 7" in cli("history", "--limit", "2", env=WIDE).output


def test_bad_filters_are_usage_errors(cli: Cli, mixed: dict[str, str]) -> None:
    """An unknown code, an unreadable --since or an unknown run: exit 2 with the reason."""
    result = cli("history", "--code", "NOPE")
    assert result.exit_code == 2 and "RATE_LIMIT" in result.output
    assert cli("history", "--since", "yesterday").exit_code == 2
    assert cli("history", "--run", "zzzz").exit_code == 2


def test_manual_round_counts_again_from_one(cli: Cli, rec: Recorder) -> None:
    """After retry-failed the story names the round: attempt 5 overall, 2/3 of round 2."""
    run = rec.run()
    gid = rec.variation(run, "sign.png")
    for wait in (2000, 4000, None):
        rec.fail(gid, run, RATE, wait_ms=wait)
    later = rec.run("retry-failed", max_retries=1)
    rec.retry_round(gid, later)
    rec.fail(gid, later, RATE, wait_ms=2000, trigger=Trigger.MANUAL)
    rec.succeed(gid, later)
    assert history_json(cli)[0]["story"] == "Completed on attempt 5 (2/2 of round 2)"


def test_since_reads_dates_datetimes_and_durations() -> None:
    """--since accepts a date, an ISO date-time and 30m/2h/7d, giving stored-format UTC."""
    now = datetime(2026, 11, 28, 20, 30, 4, 123000, tzinfo=UTC)
    assert parse_since("2h", now) == "2026-11-28T18:30:04.123Z"
    assert parse_since("7d", now) == "2026-11-21T20:30:04.123Z"
    assert parse_since("1h30m", now) == "2026-11-28T19:00:04.123Z"
    assert parse_since("2026-11-28T20:30:04.123+01:00") == "2026-11-28T19:30:04.123Z"
    local_midnight = datetime(2026, 11, 28).astimezone().astimezone(UTC)
    assert parse_since("2026-11-28") == local_midnight.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
    with pytest.raises(ValueError, match="duration"):
        parse_since("last week")


def test_show_by_unique_prefix_lists_every_attempt_with_its_wait(
    cli: Cli, mixed: dict[str, str]
) -> None:
    """show: the error record, then each attempt with duration, code, status and the wait."""
    gid = mixed["timeout"]
    result = cli("show", unique_prefix(gid, list(mixed.values())), env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.output
    assert gid in out and "Failed after 2 retries · Timeout" in out
    assert (
        "Attempt 1/3 (auto)" in out
        and "412 ms · Failed - Timeout (HTTP 504 DEADLINE_EXCEEDED) → waited 2.1 s" in out
    )
    assert "→ waited 4.3 s" in out and "Attempt 3/3 (auto)" in out
    assert out.count("Deadline expired.") == 4  # the record's message, then each attempt's
    assert f"imagelingo retry-failed {gid}" in out


def test_show_json_and_rate_limit_wording(cli: Cli, mixed: dict[str, str]) -> None:
    """show --json: the row and its attempts with round positions; the server's delay is shown."""
    data = json.loads(cli("show", mixed["second"], "--json").output)
    assert data["status"] == "completed" and data["credits_charged"] == 1
    assert [
        (a["attempt_number"], a["position"], a["round_max"], a["outcome"]) for a in data["attempts"]
    ] == [
        (1, 1, 3, "failed"),
        (2, 2, 3, "succeeded"),
    ]
    text = cli("show", mixed["second"], env=WIDE).output
    assert (
        "Failed - Rate Limit (HTTP 429 RESOURCE_EXHAUSTED) (server asked 17 s) → waited 17.4 s"
        in text
    )
    assert "Attempt 2/3 (auto)" in text and "Succeeded · 1290 tokens" in text


def test_show_refuses_ambiguous_and_unknown_ids(cli: Cli, mixed: dict[str, str]) -> None:
    """An ambiguous prefix lists candidates and exits 2; an unknown one exits 2 too."""
    shared = shared_prefix(mixed["first"], mixed["second"])
    result = cli("show", shared)
    assert result.exit_code == 2 and "matches several variations" in result.output
    assert mixed["first"] in result.output
    assert cli("show", "zzzzzz").exit_code == 2


def test_abandon_marks_failures_abandoned_and_refuses_completed(
    cli: Cli, mixed: dict[str, str]
) -> None:
    """abandon: failed and interrupted become Abandoned; a completed one is refused (exit 1)."""
    result = cli("abandon", mixed["timeout"], mixed["interrupted"])
    assert result.exit_code == 0 and "Abandoned 2 variations." in result.output
    statuses = {r["id"]: r["status"] for r in history_json(cli)}
    assert statuses[mixed["timeout"]] == statuses[mixed["interrupted"]] == "abandoned"
    assert mixed["timeout"] not in {r["id"] for r in history_json(cli, "--errors")}
    refused = cli("abandon", mixed["first"])
    assert refused.exit_code == 1 and "completed" in refused.output
    assert statuses[mixed["first"]] == "completed"
    assert cli("abandon").exit_code == 2
    assert cli("abandon", "zzzzzz").exit_code == 2


def test_abandon_by_run_and_code(cli: Cli, rec: Recorder, mixed: dict[str, str]) -> None:
    """abandon --run R --code C: only that run's failures with that code."""
    run = cli.rows("SELECT run_id FROM generations WHERE id = ?", (mixed["config"],))[0]["run_id"]
    preview = cli("abandon", "--run", run, "--code", "CONFIG_ERROR", "--dry-run")
    assert preview.exit_code == 0 and "Would abandon 1 variation:" in preview.output
    assert mixed["config"][:8] in preview.output
    unconfirmed = cli("abandon", "--run", run, "--code", "CONFIG_ERROR")
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.output
    assert not cli.rows("SELECT id FROM generations WHERE status = 'abandoned'")
    result = cli("abandon", "--run", run, "--code", "CONFIG_ERROR", "--yes")
    assert result.exit_code == 0 and "Abandoned 1 variation." in result.output
    rows = cli.rows("SELECT id FROM generations WHERE status = 'abandoned'")
    assert [r["id"] for r in rows] == [mixed["config"]]


def test_show_says_the_real_wait_when_it_was_longer_than_planned(cli: Cli, rec: Recorder) -> None:
    """A retry planned 2.1 s later that the gate held until 8.6 s: show says both."""
    run = rec.run()
    gid = rec.variation(run, "held.png")
    rec.fail(gid, run, RATE, wait_ms=2100)
    rec.wait_longer(6500)
    rec.succeed(gid, run)
    out = cli("show", gid, env=WIDE).output
    assert "→ waited 8.6 s (planned 2.1 s)" in out, out
    attempts = json.loads(cli("show", gid, "--json").output)["attempts"]
    assert [(a["wait_planned_s"], a["waited_s"]) for a in attempts] == [
        (2.1, 8.6),
        (None, None),
    ]
