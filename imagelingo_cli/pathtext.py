"""Paths as text. A file name may hold bytes that are not UTF-8 (Python keeps them as
surrogates); the database and the screen get each such byte written `\\xNN`, and the database's
text is turned back into the name the file system knows when it is read.

    encode_path(path) -> str     UTF-8-safe text
    decode_path(text) -> str     the file system's name again
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath

__all__ = ["decode_path", "encode_path"]

_ESCAPED_BYTE = re.compile(r"(\\x[89a-f][0-9a-f])")


def encode_path(path: PurePath | str) -> str:
    """A path as UTF-8-safe text for the database and the screen (undecodable bytes as \\xNN)."""
    return os.fsencode(str(path)).decode("utf-8", errors="backslashreplace")


def decode_path(text: str) -> str:
    r"""Stored text as the file system names the path: each `\xNN` escape becomes its byte
    again (held by Python as a surrogate, as os.listdir gives it). Text that exists exactly as
    written (a name that really holds a backslash), or holds no escape, is returned as it is."""
    if not _ESCAPED_BYTE.search(text) or os.path.lexists(text):
        return text
    parts = _ESCAPED_BYTE.split(text)
    raw = b"".join(
        bytes([int(part[2:], 16)]) if index % 2 else part.encode("utf-8")
        for index, part in enumerate(parts)
    )
    return os.fsdecode(raw)
