"""`--since WHEN`: a date, an ISO date-time, or a duration back from now, as a stored timestamp."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])", re.IGNORECASE)
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HELP = "Only since WHEN: a date (2026-11-28), a date-time (2026-11-28T20:30), or 30m, 2h, 7d."


def parse_since(text: str, now: datetime | None = None) -> str:
    """UTC ISO with milliseconds (as the database stores it). Dates and date-times without an
    offset are local time. ValueError says what is accepted."""
    value = text.strip()
    compact = value.replace(" ", "")
    if compact and _DURATIONS.fullmatch(compact):  # 30m, 2h, 7d, 1h30m
        delta = timedelta()
        for amount, unit in _DURATION.findall(compact):
            delta += timedelta(**{_UNITS[unit.lower()]: float(amount)})
        moment = (now or datetime.now(UTC)) - delta
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"cannot read --since {text!r}: give a date (2026-11-28), a date-time "
                "(2026-11-28T20:30, local unless it has Z or an offset), or a duration (30m, 2h, 7d)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.astimezone()  # naive: the user's local time
    stamp = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
