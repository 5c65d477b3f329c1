"""Content keys: the SHA-256 of bytes or of a file, as lower-case hex."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_sha256", "sha256"]

_CHUNK = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The file's digest, read in chunks. OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
