"""The Files API side of the simulator: resumable uploads, stored files, their metadata.

Bytes live on disk in a private temporary folder (`Storage`), never in memory, so a
multi-gigabyte JSONL costs the simulator no RAM. An upload is the SDK's resumable protocol:
``start`` (metadata; the reply's absolute ``X-Goog-Upload-URL`` names the session), then chunks
with ``X-Goog-Upload-Command: upload`` and a final ``upload, finalize``, each at the
``X-Goog-Upload-Offset`` the session expects. Batch results join as GENERATED files. Refusals
are `Rejected` with the API's error body. Thread-safe.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shutil
import string
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from imagelingo_cli.simulator import faults
from imagelingo_cli.simulator.request import Rejected
from imagelingo_cli.simulator.timeline import Timeline

__all__ = ["FileStore", "Storage", "StoredFile", "UploadProgress", "random_id"]

_FILE_LIFETIME = 48 * 3600.0  # uploaded files expire after 48 h
_MAX_DELETABLE_ID = 40  # DeleteFileRequest refuses longer ids, such as batch-<36 chars>
_ID_ALPHABET = string.ascii_lowercase + string.digits


def random_id(length: int) -> str:
    """A lowercase alphanumeric id like the API's (``ncdlxnfztvvdy7lv52g4s7ge6l385vi46eyi``)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


class Storage:
    """A private temporary folder, made on first use and removed by `close`."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._lock = threading.Lock()
        self._count = 0

    def new_path(self, stem: str) -> Path:
        """A fresh, not yet existing path inside the folder."""
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="imagelingo-simulator-"))
            self._count += 1
            return self._folder / f"{self._count:06d}-{stem}"

    def close(self) -> None:
        """Remove the folder and everything in it. Idempotent."""
        with self._lock:
            folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class StoredFile:
    """A file the API knows: its bytes on disk and what ``GET files/{id}`` says of it."""

    id: str
    path: Path
    mime_type: str
    size: int
    sha256: str
    created: float
    source: Literal["UPLOADED", "GENERATED"]
    display_name: str | None = None
    available_at: float = 0.0  # a GENERATED file answers 404 before this clock reading

    @property
    def name(self) -> str:
        return f"files/{self.id}"


@dataclass
class _Upload:
    id: str
    path: Path
    mime_type: str
    size: int | None
    display_name: str | None
    file_id: str | None
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


@dataclass(frozen=True)
class UploadProgress:
    """The answer to a chunk: still `active`, `final` with the stored file, or `missing`
    (a scripted reply without the status header, the chunk dropped)."""

    status: Literal["active", "final", "missing"]
    file: StoredFile | None = None


class FileStore:
    """Uploads in progress and stored files, by id."""

    def __init__(self, storage: Storage, timeline: Timeline) -> None:
        self._storage = storage
        self._timeline = timeline
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._uploads: dict[str, _Upload] = {}
        self._status_missing = 0
        self.uploads_started = 0

    def drop_status_headers(self, count: int) -> None:
        """Answer the next `count` chunks without ``X-Goog-Upload-Status`` (the SDK's retry path)."""
        with self._lock:
            self._status_missing = count

    # --- uploads ----------------------------------------------------------------------------

    def start_upload(self, headers: Mapping[str, str], body: Mapping[str, Any]) -> str:
        """Open a resumable session from the start request; returns its upload id."""
        if headers.get("x-goog-upload-protocol", "").lower() != "resumable":
            raise _invalid("Only the resumable upload protocol is supported.")
        if headers.get("x-goog-upload-command", "").lower() != "start":
            raise _invalid("The first request of a resumable upload must be a start command.")
        meta = body.get("file") or {}
        if not isinstance(meta, dict):
            raise _invalid("Invalid JSON payload received. 'file' must be an object.")
        mime = _first(meta, "mime_type", "mimeType") or headers.get(
            "x-goog-upload-header-content-type"
        )
        if not isinstance(mime, str) or not mime:
            raise _invalid("Missing MIME type for the uploaded file.")
        size_raw = _first(meta, "size_bytes", "sizeBytes") or headers.get(
            "x-goog-upload-header-content-length"
        )
        try:
            size = int(size_raw) if size_raw is not None else None
        except (TypeError, ValueError):
            raise _invalid(f"Invalid file size: {size_raw!r}") from None
        requested = _first(meta, "name")
        file_id = str(requested).removeprefix("files/") if requested else None
        display_name = _first(meta, "display_name", "displayName")
        upload = _Upload(
            id=random_id(48),
            path=self._storage.new_path("upload"),
            mime_type=mime,
            size=size,
            display_name=str(display_name) if display_name is not None else None,
            file_id=file_id,
        )
        upload.path.touch()
        with self._lock:
            if file_id is not None and file_id in self._files:
                raise Rejected(
                    faults.error_reply(
                        409, "ALREADY_EXISTS", f"File files/{file_id} already exists."
                    ),
                    "already_exists",
                )
            self._uploads[upload.id] = upload
            self.uploads_started += 1
        return upload.id

    def receive_chunk(
        self, upload_id: str, command: str, offset: str | None, data: bytes
    ) -> UploadProgress:
        """Append one chunk of an upload; on ``finalize``, store the file."""
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None:
                raise Rejected(
                    faults.error_reply(404, "NOT_FOUND", "No upload session with this id."),
                    "not_found",
                )
            if self._status_missing > 0:
                self._status_missing -= 1
                return UploadProgress("missing")
            words = {word.strip() for word in command.lower().split(",")}
            if not words <= {"upload", "finalize"} or not words:
                raise _invalid(f"Unsupported X-Goog-Upload-Command: {command!r}")
            if offset is None or not offset.isdigit() or int(offset) != upload.received:
                raise _invalid(
                    f"Invalid X-Goog-Upload-Offset {offset!r}: {upload.received} bytes received."
                )
            if data:
                with upload.path.open("ab") as sink:
                    sink.write(data)
                upload.received += len(data)
                upload.digest.update(data)
            if "finalize" not in words:
                return UploadProgress("active")
            del self._uploads[upload_id]
            if upload.size is not None and upload.size != upload.received:
                raise _invalid(
                    f"Upload finalized with {upload.received} bytes, {upload.size} announced."
                )
            stored = StoredFile(
                id=upload.file_id or random_id(12),
                path=upload.path,
                mime_type=upload.mime_type,
                size=upload.received,
                sha256=upload.digest.hexdigest(),
                created=self._timeline.now(),
                source="UPLOADED",
                display_name=upload.display_name,
            )
            self._files[stored.id] = stored
            return UploadProgress("final", stored)

    # --- stored files -----------------------------------------------------------------------

    def add_generated(self, file_id: str, path: Path, mime_type: str, available_at: float) -> None:
        """Register a file the API produced (a batch's responses file)."""
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
        stored = StoredFile(
            id=file_id,
            path=path,
            mime_type=mime_type,
            size=size,
            sha256=digest.hexdigest(),
            created=self._timeline.now(),
            source="GENERATED",
            available_at=available_at,
        )
        with self._lock:
            self._files[file_id] = stored

    def get(self, file_id: str) -> StoredFile:
        """The file, or `Rejected` 404 (also for a generated file not yet available)."""
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None or stored.available_at > self._timeline.now():
            raise Rejected(
                faults.error_reply(
                    404,
                    "NOT_FOUND",
                    f"File files/{file_id} does not exist or you do not have permission to "
                    "access it.",
                ),
                "not_found",
            )
        return stored

    def for_download(self, file_id: str) -> StoredFile:
        """A file whose bytes may be downloaded: only generated files can be."""
        stored = self.get(file_id)
        if stored.source != "GENERATED":
            raise _invalid("Only generated files can be downloaded; uploaded files cannot.")
        return stored

    def delete(self, file_id: str) -> None:
        """Forget a file (its bytes stay until the storage closes: a job may still read them)."""
        if len(file_id) > _MAX_DELETABLE_ID:
            raise _invalid(
                "* DeleteFileRequest.name: File ID (name excluding 'files/') cannot be more "
                f"than {_MAX_DELETABLE_ID} characters.\n"
            )
        self.get(file_id)
        with self._lock:
            self._files.pop(file_id, None)

    def counts(self) -> dict[str, int]:
        """Stored files by source (``UPLOADED``, ``GENERATED``)."""
        with self._lock:
            files = list(self._files.values())
        counts: dict[str, int] = {}
        for stored in files:
            counts[stored.source] = counts.get(stored.source, 0) + 1
        return counts

    def metadata(self, stored: StoredFile, origin: str, api_version: str) -> dict[str, Any]:
        """The ``File`` resource, with URIs on `origin` (``http://127.0.0.1:PORT[/prefix]``)."""
        created = self._timeline.stamp(stored.created)
        meta: dict[str, Any] = {"name": stored.name}
        if stored.display_name is not None:
            meta["displayName"] = stored.display_name
        meta.update(
            mimeType=stored.mime_type,
            sizeBytes=str(stored.size),
            createTime=created,
            updateTime=created,
            expirationTime=self._timeline.stamp(stored.created + _FILE_LIFETIME),
            sha256Hash=base64.b64encode(stored.sha256.encode("ascii")).decode("ascii"),
            uri=f"{origin}/{api_version}/{stored.name}",
            state="ACTIVE",
            source=stored.source,
        )
        if stored.source == "GENERATED":
            meta["downloadUri"] = (
                f"{origin}/download/{api_version}/{stored.name}:download?alt=media"
            )
        return meta


def _first(meta: Mapping[str, Any], *names: str) -> Any:
    return next((meta[name] for name in names if meta.get(name) is not None), None)


def _invalid(message: str) -> Rejected:
    return Rejected(faults.invalid_argument(message), "invalid_argument")
