"""The library entry points behind `process` and `retry-failed`: turn a request into image
jobs and translators, run the batch, and clean up. Callable without Typer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from imagelingo_cli import events as ev
from imagelingo_cli.clock import Clock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.engine import (
    Batch,
    BatchOptions,
    ImageJob,
    Translator,
    VariationSpec,
)
from imagelingo_cli.errors import SetupError
from imagelingo_cli.gemini import GeminiTranslator, check_base_url
from imagelingo_cli.images import SourceImage, discover
from imagelingo_cli.languages import Language, resolve_language
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.store import Store

SIMULATOR_KEY = "simulator-key"  # the in-process simulator needs no real key
# The flaky profile is seeded; with this seed the quickstart on sample_images meets every kind
# of weather once: rate limits that clear, a timeout, an overloaded server and a refusal.
DEMO_SEED = 52


@dataclass(frozen=True)
class Connection:
    """Where requests go: Gemini with a key, or the built-in simulator with a profile."""

    api_key: str | None = None
    simulate: str | None = None  # simulator profile
    base_url: str | None = None
    timeout: float = 120.0
    simulator_seed: int = DEMO_SEED

    @property
    def backend(self) -> str:
        return f"simulator:{self.simulate}" if self.simulate else "gemini"


@dataclass(frozen=True)
class ProcessRequest:
    paths: Sequence[Path]
    variations: int
    language: Language
    model: str
    out_dir: Path
    policy: RetryPolicy
    concurrency: int
    connection: Connection
    force: bool = False
    rpm: float | None = None


def plan_process(request: ProcessRequest) -> list[ImageJob]:
    """Check the base URL and the output folder, and find the images (no content is read here)."""
    if request.variations < 1:
        raise SetupError("--variations must be at least 1")
    check_base_url(request.connection.base_url)
    out_dir = _usable_out_dir(request.out_dir, request.paths)
    specs = tuple(
        VariationSpec(n, request.language, request.model, request.connection.backend, out_dir)
        for n in range(1, request.variations + 1)
    )
    jobs: list[ImageJob] = []
    try:
        for found in discover(list(request.paths), exclude=[out_dir]):
            if isinstance(found, SourceImage):
                jobs.append(ImageJob(found, specs))
            else:  # recorded as a failure of its own, so nothing found is silently dropped
                source = SourceImage(found.path, PurePosixPath(found.path.name))
                jobs.append(ImageJob(source, specs, problem=found.reason))
    except FileNotFoundError as exc:
        raise SetupError(f"no such file or folder: {exc.filename or exc}") from None
    return jobs


def _usable_out_dir(out_dir: Path, inputs: Sequence[Path]) -> Path:
    """The resolved output folder, created; refused if unwritable or if it holds an input."""
    resolved = out_dir.expanduser().resolve()
    for given in inputs:
        source = given.expanduser().resolve()
        if source == resolved or resolved in source.parents:
            raise SetupError(
                f"--out {out_dir} contains the input {given}: translated images would be read "
                "as input next time; choose an output folder outside it"
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
async def open_translator(connection: Connection, concurrency: int) -> AsyncIterator[Translator]:
    """A GeminiTranslator aimed at Gemini, or at a simulator started for this run."""
    async with AsyncExitStack() as stack:
        base_url = connection.base_url
        api_key = connection.api_key
        if connection.simulate:
            from imagelingo_cli.simulator import Simulator

            simulator = Simulator(connection.simulate, seed=connection.simulator_seed)
            base_url = simulator.start()
            stack.callback(simulator.stop)
            api_key = SIMULATOR_KEY
        if not api_key:
            raise SetupError(
                "no API key: set GEMINI_API_KEY (export GEMINI_API_KEY=...; get one at "
                "https://aistudio.google.com/apikey), or try the built-in simulator with "
                "--simulate flaky"
            )
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
    jobs: Sequence[ImageJob],
    store: Store,
    *,
    clock: Clock,
    emit: Callable[[ev.Event], None],
    control: BatchControl | None = None,
) -> ev.Summary:
    options = BatchOptions(
        command="process",
        trigger="auto",
        policy=request.policy,
        concurrency=request.concurrency,
        rpm=request.rpm,
        force=request.force,
        base_url=request.connection.base_url,
        run_options={
            "paths": [str(p) for p in request.paths],
            "variations": request.variations,
            "out": str(request.out_dir),
            "concurrency": request.concurrency,
            "max_retries": request.policy.max_retries,
            "auto_retry": request.policy.auto_retry,
            "auto_retry_codes": sorted(c.value for c in request.policy.auto_retry_codes),
            "max_wait": request.policy.max_wait,
            "timeout": request.connection.timeout,
            "force": request.force,
            "rpm": request.rpm,
            "backend": request.connection.backend,
        },
    )
    async with open_translator(request.connection, request.concurrency) as translator:
        batch = Batch(
            store,
            {request.connection.backend: translator},
            options,
            clock=clock,
            emit=emit,
            control=control,
        )
        return await batch.run(jobs, language=request.language.tag, model=request.model)


@dataclass(frozen=True)
class RetrySelection:
    ids: list[str] = field(default_factory=list)
    run_id: str | None = None
    codes: list[str] = field(default_factory=list)
    transient_only: bool = False


def plan_retry(rows: Sequence[dict[str, object]]) -> list[ImageJob]:
    """One job per source image and content, each variation with the parameters it was made with."""
    grouped: dict[tuple[str, str], list[dict[str, object]]] = {}
    for row in rows:
        grouped.setdefault((str(row["source_path"]), str(row["image_sha256"])), []).append(row)
    jobs = []
    for (source_path, sha), members in grouped.items():
        first = members[0]
        source = SourceImage(Path(source_path), PurePosixPath(str(first["relative_path"])))
        specs = tuple(
            VariationSpec(
                variation=int(str(row["variation"])),
                language=resolve_language(str(row["target_language"])),
                model=str(row["model"]),
                backend=str(row["backend"]),
                out_dir=Path(str(row["out_dir"])),
                generation_id=str(row["id"]),
            )
            for row in members
        )
        jobs.append(
            ImageJob(source, specs, expected_sha256=None if sha.startswith("unreadable:") else sha)
        )
    return jobs


def connections_for(
    rows: Sequence[dict[str, object]], *, api_key: str | None, timeout: float, seed: int
) -> dict[str, Connection]:
    """The connection each recorded backend needs: the simulator profile it used, or Gemini."""
    found: dict[str, Connection] = {}
    for row in rows:
        backend = str(row["backend"])
        if backend in found:
            continue
        if backend.startswith("simulator:"):
            profile = backend.split(":", 1)[1]
            found[backend] = Connection(simulate=profile, timeout=timeout, simulator_seed=seed)
        else:
            base_url = str(row["base_url"]) if row.get("base_url") else None
            found[backend] = Connection(api_key=api_key, base_url=base_url, timeout=timeout)
    return found


async def run_retry_failed(
    rows: Sequence[dict[str, object]],
    store: Store,
    *,
    policy: RetryPolicy,
    concurrency: int,
    api_key: str | None,
    timeout: float,
    clock: Clock,
    emit: Callable[[ev.Event], None],
    control: BatchControl | None = None,
    rpm: float | None = None,
) -> ev.Summary:
    """A new run over the chosen failed variations: a manual round for each."""
    jobs = plan_retry(rows)
    # Each retry round gets a fresh simulator seed, as a later real request meets new weather.
    seed = store.count_runs()
    connections = connections_for(rows, api_key=api_key, timeout=timeout, seed=seed)
    options = BatchOptions(
        command="retry-failed",
        trigger="manual",
        policy=policy,
        concurrency=concurrency,
        rpm=rpm,
        run_options={
            "generations": [str(row["id"]) for row in rows],
            "concurrency": concurrency,
            "max_retries": policy.max_retries,
            "auto_retry": policy.auto_retry,
            "auto_retry_codes": sorted(c.value for c in policy.auto_retry_codes),
            "max_wait": policy.max_wait,
            "timeout": timeout,
        },
    )
    models = sorted({str(row["model"]) for row in rows})
    languages = sorted({str(row["target_language"]) for row in rows})
    async with AsyncExitStack() as stack:
        translators: dict[str, Translator] = {}
        for backend, connection in connections.items():
            translators[backend] = await stack.enter_async_context(
                open_translator(connection, concurrency)
            )
        batch = Batch(store, translators, options, clock=clock, emit=emit, control=control)
        return await batch.run(
            jobs,
            language=",".join(languages),
            model=",".join(models),
        )
