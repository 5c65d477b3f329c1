"""The Gemini Batch API boundary: the only module besides `gemini` that talks to google-genai.

    BatchClient(api_key, base_url=…, timeout=…)
        upload(path, display_name) -> "files/…"      a JSONL of requests, streamed in chunks
        create(model, file_name, display_name) -> "batches/…"
        find(display_name) -> "batches/…" | None     by listing: a job created before a crash
        get(name) -> RemoteJob                        state, batchStats, error and output
        cancel(name)
        download(file_name, destination)             the results file, streamed to disk

Every failure is raised classified by `errors` (TranslationError; SetupError for a base URL no
request can go to). `get` is one raw GET of ``v1beta/batches/{id}`` with the same key and base
URL, not google-genai's `batches.get`: the SDK's BatchJob drops `batchStats` and the job's
`error`, its converter drops each inline answer's finishMessage, and its JobError type cannot
hold Status `details` objects (pydantic raises and the whole job is lost). `find` lists with
the SDK and falls back to the raw list for that last reason.

Creating a job is not idempotent (the same request twice makes two jobs), so `create` is never
retried here: the caller records a unique display name first and, after an ambiguous failure,
looks for the job with `find` before creating it again.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from imagelingo_cli.errors import classify_exception
from imagelingo_cli.gemini import API_VERSION, api_client
from imagelingo_cli.states import JobState

__all__ = ["DEFAULT_BASE_URL", "JSONL_MIME_TYPE", "BatchClient", "JobCounts", "RemoteJob"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
# Python's mimetypes does not know .jsonl, and the SDK refuses a file whose type it cannot
# guess, so the type is always given.
JSONL_MIME_TYPE = "application/jsonl"
_PAGE_SIZE = 100
_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "EXPIRED": JobState.EXPIRED,
}

T = TypeVar("T")


@dataclass(frozen=True)
class JobCounts:
    """The job's `batchStats` (proto3 JSON leaves zeros out and writes int64 as strings)."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0

    @classmethod
    def of(cls, stats: Mapping[str, Any]) -> JobCounts:
        def count(key: str) -> int:
            value = stats.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return int(value) if isinstance(value, str) and value.isdigit() else 0

        return cls(
            count("requestCount"),
            count("successfulRequestCount"),
            count("failedRequestCount"),
            count("pendingRequestCount"),
        )


@dataclass(frozen=True)
class RemoteJob:
    """A job as the API shows it now."""

    name: str  # batches/<id>
    display_name: str | None
    api_state: str  # as sent: BATCH_STATE_RUNNING
    counts: JobCounts
    error: Mapping[str, Any] | None  # the failed job's google.rpc.Status
    result_file: str | None  # files/batch-<id>
    inline_results: Sequence[Mapping[str, Any]] | None = field(default=None, repr=False)

    @property
    def state(self) -> JobState:
        short = self.api_state.removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_")
        return _STATES.get(short, JobState.UNKNOWN)

    @property
    def has_results(self) -> bool:
        return self.result_file is not None or self.inline_results is not None

    @classmethod
    def of(cls, operation: Mapping[str, Any]) -> RemoteJob:
        """From the Operation a GET or a list returns."""
        metadata = _object(operation.get("metadata"))
        output = _object(metadata.get("output")) or _object(operation.get("response"))
        inline = _object(output.get("inlinedResponses")).get("inlinedResponses")
        error = operation.get("error")
        return cls(
            name=str(operation.get("name") or metadata.get("name") or ""),
            display_name=_text(metadata.get("displayName")),
            api_state=_text(metadata.get("state")) or "BATCH_STATE_UNSPECIFIED",
            counts=JobCounts.of(_object(metadata.get("batchStats"))),
            error=error if isinstance(error, dict) else None,
            result_file=_text(output.get("responsesFile")),
            inline_results=[i for i in inline if isinstance(i, dict)]
            if isinstance(inline, list)
            else None,
        )


class BatchClient:
    """One project's Batch API, at Gemini or at a simulator's base URL."""

    def __init__(
        self, api_key: str, *, base_url: str | None = None, timeout: float = 120.0
    ) -> None:
        self.timeout = timeout
        self._key = api_key
        self._base_url = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL
        self._api = api_client(api_key, base_url=base_url, timeout=timeout, max_connections=4)

    async def upload(self, path: Path, display_name: str) -> str:
        """Upload a JSONL file; its `files/…` name. No overall deadline: it takes as long as
        its size needs (each chunk has the per-request timeout)."""
        from google.genai import types

        config = types.UploadFileConfig(mime_type=JSONL_MIME_TYPE, display_name=display_name)
        uploaded = await _classified(self._api.genai.aio.files.upload(file=path, config=config))
        if not uploaded.name:
            raise classify_exception(ValueError("the upload answer named no file"))
        return uploaded.name

    async def create(self, model: str, file_name: str, display_name: str) -> str:
        """Create a job from an uploaded JSONL; its `batches/…` name. Not idempotent."""
        created = await _classified(
            self._deadline(
                self._api.genai.aio.batches.create(
                    model=model, src=file_name, config={"display_name": display_name}
                )
            )
        )
        if not created.name:
            raise classify_exception(ValueError("the create answer named no job"))
        return created.name

    async def find(self, display_name: str) -> str | None:
        """The name of the job with this display name, if the API has one."""
        import pydantic

        try:
            names = [job async for job in self._sdk_jobs()]
        except pydantic.ValidationError:  # a listed job's Status details: read the list raw
            names = [job async for job in self._raw_jobs()]
        except Exception as exc:
            raise classify_exception(exc) from None
        return next((name for name, shown in names if shown == display_name), None)

    async def _sdk_jobs(self) -> AsyncIterator[tuple[str, str | None]]:
        pager = await self._deadline(
            self._api.genai.aio.batches.list(config={"page_size": _PAGE_SIZE})
        )
        iterator = pager.__aiter__()
        while True:
            try:
                job = await self._deadline(iterator.__anext__())
            except StopAsyncIteration:
                return
            if job.name:
                yield job.name, job.display_name

    async def _raw_jobs(self) -> AsyncIterator[tuple[str, str | None]]:
        token: str | None = None
        while True:
            params = {"pageSize": str(_PAGE_SIZE), **({"pageToken": token} if token else {})}
            page = await self._raw_get("batches", params)
            for operation in page.get("operations") or []:
                if isinstance(operation, dict):
                    job = RemoteJob.of(operation)
                    yield job.name, job.display_name
            token = _text(page.get("nextPageToken"))
            if not token:
                return

    async def get(self, name: str) -> RemoteJob:
        """The job now: state, batchStats, the job's error and its output, raw."""
        return RemoteJob.of(await self._raw_get(name, {}))

    async def cancel(self, name: str) -> None:
        await _classified(self._deadline(self._api.genai.aio.batches.cancel(name=name)))

    async def download(self, file_name: str, destination: Path) -> None:
        """Stream a results file to `destination` (pass the `files/…` name: the SDK cuts a
        URI down to a wrong id)."""
        await _classified(
            self._api.genai.aio.files.download(file=file_name, destination=str(destination))
        )

    async def aclose(self) -> None:
        await self._api.aclose()

    async def _raw_get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        from google.genai import errors

        url = f"{self._base_url.rstrip('/')}/{API_VERSION}/{path}"
        headers = {"x-goog-api-key": self._key, "content-type": "application/json"}

        async def call() -> dict[str, Any]:
            response = await self._api.http.get(url, params=params, headers=headers)
            await errors.APIError.raise_for_async_response(response)
            body = response.json()
            return body if isinstance(body, dict) else {}

        return await _classified(self._deadline(call()))

    async def _deadline(self, call: Awaitable[T]) -> T:
        """`call` within the per-call deadline; other failures are left to the caller."""
        try:
            with anyio.fail_after(self.timeout):
                return await call
        except TimeoutError:  # our own deadline (httpx2's timeouts are not TimeoutError)
            deadline = TimeoutError(f"no answer within the {self.timeout:g} s deadline")
            raise classify_exception(deadline) from None


async def _classified(call: Awaitable[T]) -> T:
    try:
        return await call
    except Exception as exc:
        raise classify_exception(exc) from None


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
