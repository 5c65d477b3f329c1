"""How the history keeps its values small: a million variations must stay a file a user keeps.

    now_ms() / ms(stamp) / iso(ms)   times as integer UTC milliseconds; the tables show them as
                                     ISO-8601 text in generated `*_at` columns
    digest(sha256)                   a hex SHA-256 as its 32 bytes (shown as hex by `*_sha256`)
    source_folder(source, relative)  the text shared by every image found under one folder
    split_path(path)                 (folder, name): the folder is stored once, the name per row
    TRIGGERS, OUTCOMES               an attempt's trigger and outcome as the numbers stored (the
                                     schema's `trigger` and `outcome` columns say them in words)

Each function is the one way its value is written; the reverse is SQL, in the schema's views
and generated columns, so that `sqlite3` reads the database whole.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta

from imagelingo_cli.states import AttemptOutcome, Trigger

__all__ = ["OUTCOMES", "TRIGGERS", "digest", "iso", "ms", "now_ms", "source_folder", "split_path"]

TRIGGERS = {Trigger.AUTO: 0, Trigger.MANUAL: 1, Trigger.BATCH: 2}
OUTCOMES = {AttemptOutcome.SUCCEEDED: 0, AttemptOutcome.FAILED: 1, AttemptOutcome.INTERRUPTED: 2}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_SEPARATORS = frozenset({"/", os.sep})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ms(stamp: str) -> int:
    """A stored UTC ISO-8601 stamp (`2026-11-28T20:31:02.123Z`) as milliseconds."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso(value: int) -> str:
    """Milliseconds as the database shows them: UTC ISO-8601 with milliseconds and `Z`."""
    moment = _EPOCH + timedelta(milliseconds=value)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def digest(sha256: str) -> bytes | str:
    """A lowercase hex SHA-256 as its 32 bytes; any other text is kept as it is, so that what
    is read back (`lower(hex(...))`, or the text) is always what was written."""
    return bytes.fromhex(sha256) if _HEX_DIGEST.fullmatch(sha256) else sha256


def source_folder(source_path: str, relative_path: str) -> str:
    """What the source path holds before its relative path (`/home/me/imgs/` for
    `/home/me/imgs/a/b.png` and `a/b.png`), ending with a separator; the whole source path
    when the relative path is not its tail. The view joins them back."""
    head = source_path[: len(source_path) - len(relative_path)]
    if relative_path and source_path.endswith(relative_path) and head[-1:] in _SEPARATORS:
        return head
    return source_path


def split_path(path: str) -> tuple[str, str]:
    """(folder with its trailing separator, file name): `folder + name == path`."""
    cut = max(path.rfind(separator) for separator in _SEPARATORS) + 1
    return path[:cut], path[cut:]
