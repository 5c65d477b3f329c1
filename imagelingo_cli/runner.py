"""The library entry points behind `process` and `retry-failed`: validate a request, turn it
into image jobs and translators, run the batch, and clean up. Callable without Typer.

    plan_process(request, store) -> ProcessPlan   SetupError: nothing can be sent
    run_process(request, plan, store, ...) -> Summary
    plan_retry(request) -> jobs                   SetupError: nothing can be sent
    run_retry(request, jobs, store, ...) -> Summary
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from imagelingo_cli import events as ev
from imagelingo_cli.clock import Clock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.digest import file_sha256
from imagelingo_cli.engine import Batch, BatchOptions, ImageJob, Translator, VariationSpec
from imagelingo_cli.engine.claims import SKIP_REASONS
from imagelingo_cli.errors import SetupError
from imagelingo_cli.gemini import GeminiTranslator, check_base_url
from imagelingo_cli.images import SourceImage, discover
from imagelingo_cli.languages import Language, resolve_language
from imagelingo_cli.limits import MAX_VARIATIONS
from imagelingo_cli.pathtext import encode_path
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.states import SkipReason, Trigger
from imagelingo_cli.store import ClaimKind, GenerationKey, Store

SIMULATOR_KEY = "simulator-key"  # the in-process simulator needs no real key
SIMULATOR_BACKEND = "simulator:"
# The flaky profile is seeded; with this seed the quickstart on sample_images meets every kind
# of weather once: rate limits that clear, a timeout, an overloaded server and a refusal.
DEMO_SEED = 52
NO_KEY = (
    "no API key. Set GEMINI_API_KEY (export GEMINI_API_KEY=your-key; get one at "
    "https://aistudio.google.com/apikey), or try the built-in simulator: "
    "imagelingo process PATH --simulate flaky"
)


@dataclass(frozen=True)
class Connection:
    """Where requests go: Gemini with a key, or the built-in simulator with a profile."""

    api_key: str | None = None
    simulate: str | None = None  # simulator profile
    base_url: str | None = None
    timeout: float = 120.0  # seconds per attempt, in total
    simulator_seed: int = DEMO_SEED

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise SetupError(f"the timeout must be more than 0 seconds (got {self.timeout:g})")
        if self.simulate is None:
            check_base_url(self.base_url)

    @property
    def backend(self) -> str:
        return f"{SIMULATOR_BACKEND}{self.simulate}" if self.simulate else "gemini"


@dataclass(frozen=True)
class ProcessRequest:
    paths: Sequence[Path]
    variations: int  # per image and language
    languages: tuple[Language, ...]
    model: str
    out_dir: Path
    policy: RetryPolicy
    concurrency: int
    connection: Connection
    force: bool = False
    rpm: float | None = None

    def __post_init__(self) -> None:
        if not self.languages:
            raise SetupError("no target language")
        if not 1 <= self.variations <= MAX_VARIATIONS:
            raise SetupError(
                f"variations must be between 1 and {MAX_VARIATIONS} (got {self.variations})"
            )
        if self.connection.simulate is None and not self.connection.api_key:
            raise SetupError(NO_KEY)

    def batch_options(self) -> BatchOptions:
        return BatchOptions(
            command="process",
            trigger=Trigger.AUTO,
            policy=self.policy,
            concurrency=self.concurrency,
            rpm=self.rpm,
            force=self.force,
            base_url=self.connection.base_url,
            run_options={
                "paths": [str(p) for p in self.paths],
                "variations": self.variations,
                "languages": [language.tag for language in self.languages],
                "out": str(self.out_dir),
                "concurrency": self.concurrency,
                **_policy_options(self.policy),
                "timeout": self.connection.timeout,
                "force": self.force,
                "rpm": self.rpm,
                "backend": self.connection.backend,
            },
        )


@dataclass(frozen=True)
class ProcessPlan:
    jobs: list[ImageJob]
    files_skipped: dict[str, int]  # what the folders held that is not an image, by reason

    @property
    def variations(self) -> int:
        return sum(len(job.variations) for job in self.jobs)


def plan_process(request: ProcessRequest, store: Store) -> ProcessPlan:
    """Check the output folder and find the images (no content is read here). Folders
    imagelingo has written outputs to are never searched: its outputs are not inputs."""
    out_dir = _usable_out_dir(request.out_dir, request.paths)
    # One image's variations, language by language: its rows read together in the table.
    specs = tuple(
        VariationSpec(n, language, request.model, request.connection.backend, out_dir)
        for language in request.languages
        for n in range(1, request.variations + 1)
    )
    exclude = [out_dir, *(Path(folder) for folder in store.output_folders())]
    jobs: list[ImageJob] = []
    skipped: Counter[str] = Counter()
    try:
        for found in discover(list(request.paths), exclude=exclude, skipped=skipped):
            if isinstance(found, SourceImage):
                jobs.append(ImageJob(found, specs))
            else:  # recorded as a failure of its own, so nothing found is silently dropped
                source = SourceImage(found.path, PurePosixPath(found.path.name))
                jobs.append(ImageJob(source, specs, problem=found.reason))
    except FileNotFoundError as exc:
        raise SetupError(f"no such file or folder: {exc.filename or exc}") from None
    return ProcessPlan(jobs, dict(skipped))


@dataclass(frozen=True)
class Planned:
    """One variation as `process --dry-run` sees it: sent, or skipped and why."""

    image: str
    variation: int
    language: str
    model: str
    skip: SkipReason | None = None
    problem: str | None = None  # the file cannot be sent (it would fail INVALID_TYPE)


def preview_process(request: ProcessRequest, plan: ProcessPlan, store: Store) -> list[Planned]:
    """What `run_process` would send and what resume would skip, recording nothing and
    sending nothing. Reads each file once to know its content."""
    found: list[Planned] = []
    seen: set[str] = set()
    for job in plan.jobs:
        image = encode_path(job.source.relative)
        digest = _file_sha256(job.source.path)
        for spec in job.variations:
            planned = Planned(image, spec.variation, spec.language.tag, spec.model)
            if job.problem is not None or digest is None:
                found.append(replace(planned, problem=job.problem or "cannot be read"))
                continue
            key = GenerationKey(digest, spec.language.tag, spec.model, spec.variation, spec.backend)
            found.append(replace(planned, skip=_preview_skip(store, key, request.force, seen)))
        if digest is not None:
            seen.add(digest)
    return found


def _preview_skip(
    store: Store, key: GenerationKey, force: bool, seen: set[str]
) -> SkipReason | None:
    if store.is_recorded_output(key.image_sha256):
        return SkipReason.OUTPUT_OF_OURS
    if key.image_sha256 in seen:
        return SkipReason.SAME_CONTENT
    row = store.find_generation(key)
    if row is None:
        return None
    kind = store.claim_decision(row, run_id=None, force=force)
    if kind is ClaimKind.COMPLETED and not Path(str(row.get("output_path") or "")).is_file():
        return None  # its output is gone: it would be translated again
    return SKIP_REASONS.get(kind)


def _file_sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def _usable_out_dir(out_dir: Path, inputs: Sequence[Path]) -> Path:
    """The resolved output folder, created; refused if unwritable or if it holds an input."""
    resolved = out_dir.expanduser().resolve()
    for given in inputs:
        source = given.expanduser().resolve()
        if source == resolved or resolved in source.parents:
            raise SetupError(
                f"the output folder {out_dir} contains the input {given}: translated images "
                "would be read as input next time; choose an output folder outside it"
            )
    try:
        resolved.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(
            f"cannot create the output folder {out_dir}: {exc.strerror or exc}"
        ) from None
    if not os.access(resolved, os.W_OK | os.X_OK):
        raise SetupError(f"the output folder {out_dir} is not writable")
    return resolved


@asynccontextmanager
async def endpoint(connection: Connection) -> AsyncIterator[tuple[str, str | None]]:
    """The key and base URL requests go to: Gemini's, or those of a simulator started here
    for as long as the context lasts."""
    if not connection.simulate:
        if not connection.api_key:
            raise SetupError(NO_KEY)
        yield connection.api_key, connection.base_url
        return
    from imagelingo_cli.simulator import Simulator

    simulator = Simulator(connection.simulate, seed=connection.simulator_seed)
    base_url = simulator.start()
    try:
        yield SIMULATOR_KEY, base_url
    finally:
        simulator.stop()


@asynccontextmanager
async def open_translator(connection: Connection, concurrency: int) -> AsyncIterator[Translator]:
    """A GeminiTranslator aimed at Gemini, or at a simulator started for this run."""
    async with AsyncExitStack() as stack:
        api_key, base_url = await stack.enter_async_context(endpoint(connection))
        translator = GeminiTranslator(
            api_key,
            base_url=base_url,
            timeout=connection.timeout,
            max_connections=max(concurrency, 1) * 2,
        )
        stack.push_async_callback(translator.aclose)
        yield translator


async def run_process(
    request: ProcessRequest,
    plan: ProcessPlan,
    store: Store,
    *,
    clock: Clock,
    emit: Callable[[ev.Event], None],
    control: BatchControl | None = None,
) -> ev.Summary:
    async with open_translator(request.connection, request.concurrency) as translator:
        batch = Batch(
            store,
            {request.connection.backend: translator},
            request.batch_options(),
            clock=clock,
            emit=emit,
            control=control,
        )
        return await batch.run(
            plan.jobs,
            language=",".join(language.tag for language in request.languages),
            model=request.model,
            files_skipped=plan.files_skipped,
        )


@dataclass(frozen=True)
class RetryRequest:
    """Retry these failed variations (database rows), each with what it was made with, except
    what is given here: a model to ask instead, and the connection of the present flags and
    environment (its key and base URL win over what a variation recorded)."""

    rows: Sequence[dict[str, Any]]
    policy: RetryPolicy
    concurrency: int
    connection: Connection  # simulate is ignored: each variation's backend decides
    model: str | None = None
    rpm: float | None = None
    seed: int = DEMO_SEED  # the simulator's, for variations made with --simulate

    def __post_init__(self) -> None:
        needs_key = any(not _simulated(row) for row in self.rows)
        if needs_key and not self.connection.api_key:
            raise SetupError(
                "no API key: these variations were sent to Gemini. Set GEMINI_API_KEY "
                "(export GEMINI_API_KEY=your-key) and run imagelingo retry-failed again."
            )

    def batch_options(self) -> BatchOptions:
        return BatchOptions(
            command="retry-failed",
            trigger=Trigger.MANUAL,
            policy=self.policy,
            concurrency=self.concurrency,
            rpm=self.rpm,
            base_url=self.connection.base_url,
            run_options={
                "generations": [str(row["id"]) for row in self.rows],
                "concurrency": self.concurrency,
                **_policy_options(self.policy),
                "timeout": self.connection.timeout,
                "model": self.model,
                "rpm": self.rpm,
            },
        )

    def connections(self) -> dict[str, Connection]:
        """The connection each recorded backend needs: the simulator profile it used, or
        Gemini, at the present base URL if one is given, else at the one it recorded."""
        found: dict[str, Connection] = {}
        for row in self.rows:
            backend = str(row["backend"])
            if backend not in found:
                found[backend] = recorded_connection(
                    backend, row.get("base_url"), self.connection, seed=self.seed
                )
        return found


def recorded_connection(
    backend: str, base_url: object, present: Connection, *, seed: int = DEMO_SEED
) -> Connection:
    """The connection a recorded backend needs: the simulator profile it used, or Gemini, at
    the present base URL if one is given, else at the one it recorded (`base_url`)."""
    if backend.startswith(SIMULATOR_BACKEND):
        profile = backend.removeprefix(SIMULATOR_BACKEND)
        return Connection(simulate=profile, timeout=present.timeout, simulator_seed=seed)
    return Connection(
        api_key=present.api_key,
        base_url=present.base_url or (str(base_url) if base_url else None),
        timeout=present.timeout,
    )


def plan_retry(request: RetryRequest) -> list[ImageJob]:
    """One job per source image and content, each variation with the parameters it was made
    with. SetupError (before anything is sent) for a recorded language this version does not
    know."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in request.rows:
        grouped.setdefault((str(row["source_path"]), str(row["image_sha256"])), []).append(row)
    jobs = []
    for (source_path, sha), members in grouped.items():
        first = members[0]
        source = SourceImage(Path(source_path), PurePosixPath(str(first["relative_path"])))
        specs = tuple(
            VariationSpec(
                variation=int(row["variation"]),
                language=_recorded_language(row),
                model=str(row["model"]),
                backend=str(row["backend"]),
                out_dir=Path(str(row["out_dir"])),
                generation_id=str(row["id"]),
                send_model=request.model if request.model != row["model"] else None,
            )
            for row in members
        )
        jobs.append(
            ImageJob(source, specs, expected_sha256=None if sha.startswith("unreadable:") else sha)
        )
    return jobs


async def run_retry(
    request: RetryRequest,
    jobs: Sequence[ImageJob],
    store: Store,
    *,
    clock: Clock,
    emit: Callable[[ev.Event], None],
    control: BatchControl | None = None,
) -> ev.Summary:
    """A new run over the chosen failed variations: a manual round for each."""
    models = sorted({str(row["model"]) for row in request.rows})
    languages = sorted({str(row["target_language"]) for row in request.rows})
    async with AsyncExitStack() as stack:
        translators: dict[str, Translator] = {}
        for backend, connection in request.connections().items():
            translators[backend] = await stack.enter_async_context(
                open_translator(connection, request.concurrency)
            )
        batch = Batch(
            store, translators, request.batch_options(), clock=clock, emit=emit, control=control
        )
        return await batch.run(
            jobs, language=",".join(languages), model=request.model or ",".join(models)
        )


def _recorded_language(row: dict[str, Any]) -> Language:
    try:
        return resolve_language(str(row["target_language"]))
    except ValueError as exc:
        raise SetupError(f"variation {row['id']}: {exc}") from None


def _simulated(row: dict[str, Any]) -> bool:
    return str(row["backend"]).startswith(SIMULATOR_BACKEND)


def _policy_options(policy: RetryPolicy) -> dict[str, object]:
    return {
        "max_retries": policy.max_retries,
        "auto_retry": policy.auto_retry,
        "auto_retry_codes": sorted(c.value for c in policy.auto_retry_codes),
        "max_wait": policy.max_wait,
    }
