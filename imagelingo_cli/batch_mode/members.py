"""A job's variations in the engine's terms, rebuilt from their database rows: how events name
them, the image job and variation spec an output path is made from, and how long they waited."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from imagelingo_cli import events as ev
from imagelingo_cli.engine.jobs import ImageJob, VariationSpec
from imagelingo_cli.images import SourceImage
from imagelingo_cli.languages import Language, resolve_language


def ref_of(row: Mapping[str, Any]) -> ev.VariationRef:
    """How events name the variation of an attempt row (`store.batch_jobs.open_attempts`)."""
    return ev.VariationRef(
        str(row["generation_id"]),
        str(row["relative_path"]),
        int(row["variation"]),
        str(row["target_language"]),
    )


def image_job_of(row: Mapping[str, Any]) -> tuple[ImageJob, VariationSpec]:
    """The image and the one variation of an attempt row, as `plan_retry` would make them."""
    spec = VariationSpec(
        variation=int(row["variation"]),
        language=language(str(row["target_language"])),
        model=str(row["model"]),
        backend=str(row["backend"]),
        out_dir=Path(str(row["out_dir"])),
        generation_id=str(row["generation_id"]),
        send_model=str(row["asked_model"]) if row.get("asked_model") else None,
    )
    source = SourceImage(Path(str(row["source_path"])), PurePosixPath(str(row["relative_path"])))
    # Only readable images are ever sent, so the recorded key is the content's digest.
    return ImageJob(source, (spec,), expected_sha256=str(row["image_sha256"])), spec


@cache
def language(tag: str) -> Language:
    """A recorded language tag (resolved once per tag: a job holds thousands of each)."""
    return resolve_language(tag)


def elapsed_ms(started_at: str) -> int:
    """Milliseconds since a stored UTC stamp: an attempt's time from submission to outcome."""
    started = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    return max(0, round((datetime.now(UTC) - started).total_seconds() * 1000))
