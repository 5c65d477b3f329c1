"""Checks shared by the parts of a scenario file: each raises ValueError naming where it failed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["optional_model", "optional_text", "reject_unknown"]


def reject_unknown(raw: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    """Refuse any field of `raw` not in `allowed` (a typo must not pass silently)."""
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def optional_text(raw: Mapping[str, Any], field: str, where: str) -> str | None:
    """A non-empty string field, stripped, or None when absent."""
    if field not in raw:
        return None
    value = raw[field]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'{where}: "{field}" must be a non-empty string, got {value!r}')
    return value.strip()


def optional_model(raw: Mapping[str, Any], where: str) -> str | None:
    """The ``model`` field as the id in the URL (``models/`` dropped), or None."""
    value = optional_text(raw, "model", where)
    return value.removeprefix("models/") if value is not None else None
