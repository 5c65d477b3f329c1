"""What a report shows, gathered from the database: the variations of a scope grouped by
source image, each with its attempts, and the scope's error analytics and spend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagelingo_cli import pricing
from imagelingo_cli.errors import ErrorCode
from imagelingo_cli.report.charts import Histogram, attempt_histogram
from imagelingo_cli.store import Store, now_iso, queries

FAILURE_STATUSES = ("failed", "abandoned", "interrupted")
RETRYABLE_STATUSES = ("failed", "interrupted")  # what retry-failed takes
SIMULATOR_PREFIX = "simulator:"


class NothingToReport(Exception):
    """The scope holds no variation (the message says which scope)."""


@dataclass(frozen=True)
class Scope:
    """Which variations: those a run worked on (default: the last run), and/or those updated
    since a moment; `errors_only` keeps those that did not complete."""

    run_id: str | None = None
    since: str | None = None  # UTC ISO stamp
    errors_only: bool = False


def label(code: str | None) -> str:
    """RATE_LIMIT -> "Rate Limit"; a code this version does not know stays as it is."""
    if not code:
        return ""
    return ErrorCode(code).label if code in ErrorCode.__members__ else code


@dataclass(frozen=True)
class Attempt:
    number: int
    round: int
    position: int  # within its round: `Attempt 2/3`
    round_max: int
    trigger: str  # auto | manual
    started_at: str
    duration_ms: int | None
    outcome: str | None  # succeeded | failed | interrupted | None (in flight)
    code: str | None
    message: str | None
    http_status: int | None
    api_status: str | None
    retry_after_ms: int | None
    wait_before_next_ms: int | None
    total_tokens: int | None

    @property
    def label(self) -> str:
        return label(self.code)


@dataclass(frozen=True)
class Variation:
    id: str
    short_id: str
    language: str
    number: int
    model: str
    backend: str
    status: str
    code: str | None
    message: str | None
    retryable: bool | None
    output_path: str | None  # as stored (printable)
    output_file: Path | None  # as the file system names it
    attempts: tuple[Attempt, ...]

    @property
    def label(self) -> str:
        return label(self.code)

    @property
    def is_failure(self) -> bool:
        return self.status in FAILURE_STATUSES

    @property
    def retry_command(self) -> str | None:
        return f"imagelingo retry-failed {self.id}" if self.status in RETRYABLE_STATUSES else None

    @property
    def codes_hit(self) -> tuple[str, ...]:
        """Every code a failed attempt of it had, and its own: what the code filter matches."""
        codes = [a.code for a in self.attempts if a.outcome == "failed" and a.code]
        if self.code and self.is_failure:
            codes.append(self.code)
        return tuple(dict.fromkeys(codes))


@dataclass(frozen=True)
class Source:
    """One source image and its variations (language, then variation number)."""

    path: str  # as stored (printable)
    relative_path: str
    file: Path
    variations: tuple[Variation, ...]

    @property
    def name(self) -> str:
        return Path(self.relative_path).name or self.relative_path


@dataclass(frozen=True)
class Spend:
    """One model's answers in scope, and what they cost (or would, on the simulator)."""

    model: str
    backend: str
    images: int
    answers: int
    prompt_tokens: int
    output_tokens: int
    thoughts_tokens: int
    total_tokens: int
    estimate: pricing.Estimate | None

    @property
    def simulated(self) -> bool:
        return self.backend.startswith(SIMULATOR_PREFIX)


@dataclass(frozen=True)
class ReportData:
    scope: Scope
    runs: tuple[dict[str, Any], ...]
    sources: tuple[Source, ...]
    stats: dict[str, Any]  # queries.stats
    retries: tuple[dict[str, Any], ...]  # queries.retries_by_code
    spend: tuple[Spend, ...]
    timeline: Histogram
    generated_at: str = field(default_factory=now_iso)

    @property
    def variations(self) -> list[Variation]:
        return [v for source in self.sources for v in source.variations]

    @property
    def failures(self) -> list[tuple[Source, Variation]]:
        return [(s, v) for s in self.sources for v in s.variations if v.is_failure]

    @property
    def codes(self) -> dict[str, int]:
        """Variations hit per code, most first: the code filter's choices."""
        counts: dict[str, int] = {}
        for variation in self.variations:
            for code in variation.codes_hit:
                counts[code] = counts.get(code, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    @property
    def simulated(self) -> bool:
        """Every answer in scope came from the simulator: nothing was spent."""
        return bool(self.spend) and all(s.simulated for s in self.spend)

    @property
    def estimated_usd(self) -> float | None:
        """The whole scope's estimate; None when no answer in it has a known price."""
        known = [s.estimate.total_usd for s in self.spend if s.estimate is not None]
        return sum(known) if known else None


def gather(store: Store, scope: Scope) -> ReportData:
    """Everything the report shows, for `scope` (the last run when it names neither a run nor
    a moment). Raises NothingToReport when the scope holds no variation."""
    if scope.run_id is None and scope.since is None:
        last = queries.last_run(store)
        if last is None:
            raise NothingToReport("no runs recorded yet")
        scope = Scope(run_id=str(last["id"]), errors_only=scope.errors_only)
    filters = queries.HistoryFilter(run_id=scope.run_id, since=scope.since, limit=None)
    rows = queries.report_variations(store, filters)
    if scope.errors_only:
        rows = [row for row in rows if row["status"] in FAILURE_STATUSES]
    if not rows:
        raise NothingToReport(_describe_empty(scope))
    attempts: dict[str, list[Attempt]] = {}
    for row in queries.report_attempts(store, filters):
        attempts.setdefault(row["generation_id"], []).append(_attempt(row))
    in_scope = {"run_id": scope.run_id, "since": scope.since}
    return ReportData(
        scope=scope,
        runs=tuple(queries.runs_in_scope(store, **in_scope)),
        sources=_group(rows, attempts),
        stats=queries.stats(store, run_id=scope.run_id, since=scope.since),
        retries=tuple(queries.retries_by_code(store, **in_scope)),
        spend=tuple(
            _spend(row)
            for row in queries.usage_by_model(store, run_id=scope.run_id, since=scope.since)
        ),
        timeline=attempt_histogram(
            [
                (_seconds(row["started_at"]), _category(row))
                for row in queries.attempt_times(store, **in_scope)
            ]
        ),
    )


def _describe_empty(scope: Scope) -> str:
    what = "no failed variations" if scope.errors_only else "no variations"
    where = []
    if scope.run_id:
        where.append(f"in run {scope.run_id}")
    if scope.since:
        where.append(f"updated since {scope.since}")
    return " ".join([what, *where])


def _attempt(row: dict[str, Any]) -> Attempt:
    return Attempt(
        number=int(row["attempt_number"]),
        round=int(row["round"]),
        position=int(row["position"]),
        round_max=int(row["round_max"]),
        trigger=str(row["trigger"]),
        started_at=str(row["started_at"]),
        duration_ms=row["duration_ms"],
        outcome=row["outcome"],
        code=row["error_code"],
        message=row["error_message"],
        http_status=row["http_status"],
        api_status=row["api_status"],
        retry_after_ms=row["retry_after_ms"],
        wait_before_next_ms=row["wait_before_next_ms"],
        total_tokens=row["total_tokens"],
    )


def _group(rows: list[dict[str, Any]], attempts: dict[str, list[Attempt]]) -> tuple[Source, ...]:
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_source.setdefault(row["source_path"], []).append(row)
    sources = []
    for path, group in by_source.items():
        group.sort(key=lambda r: (r["target_language"], r["variation"], r["model"], r["id"]))
        sources.append(
            Source(
                path=path,
                relative_path=str(group[0]["relative_path"]),
                file=Path(group[0]["source_file"]),
                variations=tuple(_variation(r, attempts.get(r["id"], [])) for r in group),
            )
        )
    sources.sort(key=lambda s: (s.relative_path, s.path))
    return tuple(sources)


def _variation(row: dict[str, Any], attempts: list[Attempt]) -> Variation:
    output = row["output_file"]
    retryable = row["is_retryable"]
    return Variation(
        id=str(row["id"]),
        short_id=str(row["short_id"]),
        language=str(row["target_language"]),
        number=int(row["variation"]),
        model=str(row["model"]),
        backend=str(row["backend"]),
        status=str(row["status"]),
        code=row["error_code"],
        message=row["error_message"],
        retryable=None if retryable is None else bool(retryable),
        output_path=row["output_path"],
        output_file=Path(output) if output and row["status"] == "completed" else None,
        attempts=tuple(attempts),
    )


def _spend(row: dict[str, Any]) -> Spend:
    return Spend(
        model=str(row["model"]),
        backend=str(row["backend"]),
        images=int(row["images"]),
        answers=int(row["answers"]),
        prompt_tokens=int(row["prompt_tokens"]),
        output_tokens=int(row["output_tokens"]),
        thoughts_tokens=int(row["thoughts_tokens"]),
        total_tokens=int(row["total_tokens"]),
        estimate=pricing.estimate(
            str(row["model"]),
            int(row["images"]),
            input_tokens=int(row["prompt_tokens"]),
            batch=bool(row["batch"]),
        ),
    )


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def _category(row: dict[str, Any]) -> str:
    """How the timeline colours an attempt: rate limits apart from other failures."""
    if row["outcome"] == "failed":
        code = row["error_code"]
        return "limited" if code in ("RATE_LIMIT", "QUOTA_EXHAUSTED") else "failed"
    return str(row["outcome"] or "in_flight")
