"""The HTTP face of the Batch and Files APIs, as google-genai 3.6.1 calls them.

Every path may carry a prefix (``base_url=http://127.0.0.1:P/proxy/`` gives ``/proxy/v1/…``)
and either API version::

    POST   {p}/{v}/models/{model}:batchGenerateContent   create (inline or file input)
    GET    {p}/{v}/batches?pageSize=&pageToken=          list, newest first
    GET    {p}/{v}/batches/{id}                          get (an Operation)
    DELETE {p}/{v}/batches/{id}                          delete
    POST   {p}/{v}/batches/{id}:cancel                   cancel
    POST   {p}/upload/{v}/files                          resumable upload: start, then chunks
    GET    {p}/{v}/files/{id}                            file metadata
    DELETE {p}/{v}/files/{id}                            delete (400 for ids over 40 chars)
    GET    {p}/{v}/files/{id}:download?alt=media         the bytes of a generated file
    GET    {p}/download/{v}/files/{id}:download?alt=media

The API key is checked as for ``generateContent``, except on upload chunks: they go to the
absolute ``X-Goog-Upload-URL`` the start reply named and carry no key, only the upload id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from imagelingo_cli.simulator import faults
from imagelingo_cli.simulator.batches import BatchBook, job_fault_reply
from imagelingo_cli.simulator.files import FileStore
from imagelingo_cli.simulator.request import Rejected, Route, check_headers, is_known_model

__all__ = ["BatchRoutes", "Delivery"]

_PREFIX = r"(?P<prefix>(?:/[^/]+)*?)"
_VERSION = r"(?P<version>v1|v1beta)"
_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "create",
        re.compile(rf"^{_PREFIX}/{_VERSION}/models/(?P<model>[^/:]+):batchGenerateContent$"),
    ),
    ("batches", re.compile(rf"^{_PREFIX}/{_VERSION}/batches$")),
    ("batch", re.compile(rf"^{_PREFIX}/{_VERSION}/batches/(?P<id>[^/:]+)$")),
    ("cancel", re.compile(rf"^{_PREFIX}/{_VERSION}/batches/(?P<id>[^/:]+):cancel$")),
    ("upload", re.compile(rf"^{_PREFIX}/upload/{_VERSION}/files$")),
    ("file", re.compile(rf"^{_PREFIX}/{_VERSION}/files/(?P<id>[^/:]+)$")),
    ("download", re.compile(rf"^{_PREFIX}/{_VERSION}/files/(?P<id>[^/:]+):download$")),
    ("download", re.compile(rf"^{_PREFIX}/download/{_VERSION}/files/(?P<id>[^/:]+):download$")),
)
_EMPTY = faults.json_reply(200, {})


@dataclass(frozen=True)
class Delivery:
    """What to send: the reply, extra headers, and optionally a file to stream as the body."""

    reply: faults.Reply
    headers: tuple[tuple[str, str], ...] = ()
    body_file: Path | None = None


@dataclass(frozen=True)
class _Call:
    """One request to a recognised route: its path parameters, query, headers and body."""

    prefix: str
    version: str
    params: Mapping[str, str]
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    @property
    def origin(self) -> str:
        """``http://HOST:PORT[/prefix]`` as the client reached us (for absolute URLs)."""
        return f"http://{self.headers.get('host', '127.0.0.1')}{self.prefix}"

    def first(self, name: str) -> str | None:
        return next(iter(self.query.get(name, [])), None)

    def json_body(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Rejected(
                faults.invalid_argument(f"Invalid JSON payload received. {exc}"),
                "invalid_payload",
            ) from None


class BatchRoutes:
    """Recognises the batch and file paths and answers them from a `BatchBook` and `FileStore`."""

    def __init__(self, book: BatchBook, files: FileStore, api_key: str | None) -> None:
        self._book = book
        self._files = files
        self._api_key = api_key
        self._handlers: dict[tuple[str, str], Callable[[_Call], Delivery]] = {
            ("create", "POST"): self._create,
            ("batches", "GET"): self._list,
            ("batch", "GET"): self._get,
            ("batch", "DELETE"): self._delete_batch,
            ("cancel", "POST"): self._cancel,
            ("upload", "POST"): self._upload_start,
            ("file", "GET"): self._file,
            ("file", "DELETE"): self._delete_file,
            ("download", "GET"): self._download,
        }

    def serves(self, raw_path: str) -> bool:
        """Whether `raw_path` is one of the batch or file routes."""
        return self._match(raw_path) is not None

    @staticmethod
    def _match(raw_path: str) -> tuple[str, dict[str, str]] | None:
        path = unquote(urlsplit(raw_path).path)
        for kind, pattern in _ROUTES:
            match = pattern.match(path)
            if match is not None:
                return kind, {k: v for k, v in match.groupdict().items() if v is not None}
        return None

    def serve(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> Delivery:
        """Answer one request (`headers` lower-cased). Refusals raise `Rejected`."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        matched = self._match(raw_path)
        handler = self._handlers.get((matched[0], method)) if matched is not None else None
        if matched is None or handler is None:
            raise Rejected(faults.path_not_found(path), "not_found")
        kind, params = matched
        call = _Call(
            prefix=params.pop("prefix", ""),
            version=params.pop("version"),
            params=params,
            query=parse_qs(parts.query),
            headers=headers,
            body=body,
        )
        if kind == "upload" and call.first("upload_id") is not None:
            return self._upload_chunk(call)  # no key: the upload id is the credential
        check_headers(
            dict(headers),
            Route(call.version, params.get("model", ""), kind, call.query),
            self._api_key,
        )
        return handler(call)

    def _create(self, call: _Call) -> Delivery:
        model = call.params["model"]
        if not is_known_model(model):
            raise Rejected(faults.model_not_found(model, call.version), "model_not_found")
        created = self._book.create(model, call.version, call.json_body())
        if isinstance(created, faults.Reply):
            return Delivery(created)
        return Delivery(faults.json_reply(200, self._book.operation(created)))

    def _get(self, call: _Call) -> Delivery:
        job = self._book.get(call.params["id"])
        fault = job.next_get_answer()
        if fault is not None:
            return Delivery(job_fault_reply(fault, job.model, job.api_version))
        return Delivery(faults.json_reply(200, self._book.operation(job)))

    def _list(self, call: _Call) -> Delivery:
        size_raw = call.first("pageSize") or call.first("page_size")
        try:
            size = int(size_raw) if size_raw is not None else None
        except ValueError:
            raise Rejected(
                faults.invalid_argument(f"Invalid page size: {size_raw!r}."), "invalid_argument"
            ) from None
        jobs, token = self._book.page(size, call.first("pageToken") or call.first("page_token"))
        payload: dict[str, Any] = {}
        if jobs:  # proto3 JSON omits an empty list
            payload["operations"] = [self._book.operation(job) for job in jobs]
        if token:
            payload["nextPageToken"] = token
        return Delivery(faults.json_reply(200, payload))

    def _cancel(self, call: _Call) -> Delivery:
        self._book.cancel(call.params["id"])
        return Delivery(_EMPTY)

    def _delete_batch(self, call: _Call) -> Delivery:
        self._book.delete(call.params["id"])
        return Delivery(_EMPTY)

    def _file(self, call: _Call) -> Delivery:
        stored = self._files.get(call.params["id"])
        return Delivery(
            faults.json_reply(200, self._files.metadata(stored, call.origin, call.version))
        )

    def _delete_file(self, call: _Call) -> Delivery:
        self._files.delete(call.params["id"])
        return Delivery(_EMPTY)

    def _download(self, call: _Call) -> Delivery:
        stored = self._files.for_download(call.params["id"])
        return Delivery(faults.Reply(200, b"", stored.mime_type), body_file=stored.path)

    def _upload_start(self, call: _Call) -> Delivery:
        body = call.json_body()
        upload_id = self._files.start_upload(call.headers, body if isinstance(body, dict) else {})
        url = (
            f"{call.origin}/upload/{call.version}/files"
            f"?upload_id={upload_id}&upload_protocol=resumable"
        )
        headers = (("X-Goog-Upload-URL", url), ("X-Goog-Upload-Status", "active"))
        return Delivery(faults.Reply(200, b"", None), headers)

    def _upload_chunk(self, call: _Call) -> Delivery:
        progress = self._files.receive_chunk(
            call.first("upload_id") or "",
            call.headers.get("x-goog-upload-command", ""),
            call.headers.get("x-goog-upload-offset"),
            call.body,
        )
        if progress.status == "missing":
            return Delivery(faults.Reply(200, b"", None))
        if progress.file is None:
            return Delivery(faults.Reply(200, b"", None), (("X-Goog-Upload-Status", "active"),))
        meta = self._files.metadata(progress.file, call.origin, call.version)
        return Delivery(
            faults.json_reply(200, {"file": meta}), (("X-Goog-Upload-Status", "final"),)
        )
