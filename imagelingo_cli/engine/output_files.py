"""Where each translated image goes, and getting it there: `<stem>.<lang>.v<N>.<ext>` in the
variation's output folder, never over another variation's output (the first free `-2`,
`-3`… instead), with the path and the digest of the bytes recorded before the write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from imagelingo_cli.engine.jobs import ImageJob, VariationSpec
from imagelingo_cli.errors import TranslationError, output_error
from imagelingo_cli.gemini import Translation
from imagelingo_cli.outputs import output_path, write_atomic
from imagelingo_cli.pathtext import encode_path
from imagelingo_cli.store import Store

# Where an output went and the SHA-256 of its bytes, or why it could not be written.
Written = tuple[Path, str] | TranslationError


@dataclass(frozen=True)
class PlannedOutput:
    """An output whose path is reserved: the variation's image and the SHA-256 of its bytes."""

    path: Path
    generation_id: str
    translation: Translation
    sha256: str


class OutputFiles:
    def __init__(self, store: Store, *, force: bool) -> None:
        self.store = store
        self.force = force
        self._reserved: dict[Path, str] = {}  # output paths taken in this run -> generation

    def path_for(
        self, job: ImageJob, spec: VariationSpec, generation_id: str, mime_type: str
    ) -> Path:
        """The path this variation's output will be written to, reserved for it in this run.
        ValueError if the name would leave the output folder."""
        wanted = output_path(
            spec.out_dir, job.source.relative, spec.language.tag, spec.variation, mime_type
        )
        return self._free(wanted, generation_id)

    def plan(
        self,
        job: ImageJob,
        spec: VariationSpec,
        generation_id: str,
        translation: Translation,
        sha256: str,
    ) -> PlannedOutput | TranslationError:
        """The output of a variation's image, its path reserved, or the OUTPUT_ERROR saying why
        it has none."""
        try:
            path = self.path_for(job, spec, generation_id, translation.mime_type)
        except (OSError, ValueError) as exc:
            return output_error(encode_path(spec.out_dir), exc, translation.usage)
        return PlannedOutput(path, generation_id, translation, sha256)

    async def write(self, planned: Sequence[PlannedOutput]) -> list[Written]:
        """Record the intents (one transaction), then write the files atomically, in turn, in
        a worker thread: where each went, or its OUTPUT_ERROR. The list ends early after an
        error every later write would meet too (a full disk)."""
        if not planned:  # a chunk of failed answers: no transaction, no thread
            return []
        self.store.intend_outputs(
            [(output.generation_id, encode_path(output.path), output.sha256) for output in planned]
        )
        return await anyio.to_thread.run_sync(_write_in_turn, planned)

    def _free(self, wanted: Path, generation_id: str) -> Path:
        """`wanted`, unless it holds a file that is not this variation's earlier output: then the
        first free `<name>-2.<ext>`, `-3`… An unrelated file is overwritten only when forced,
        another variation's output never."""
        candidate = wanted
        for number in range(2, 1000):
            taken_by = self._reserved.get(candidate)
            if taken_by is None and not candidate.exists():
                break
            owner = taken_by or self.store.output_owner(encode_path(candidate))
            if owner == generation_id or (owner is None and self.force):
                break
            candidate = wanted.with_name(f"{wanted.stem}-{number}{wanted.suffix}")
        self._reserved[candidate] = generation_id  # before the write: two may finish together
        return candidate


def _write_in_turn(planned: Sequence[PlannedOutput]) -> list[Written]:
    written: list[Written] = []
    for output in planned:
        try:
            write_atomic(output.path, output.translation.data)
        except OSError as exc:
            error = output_error(encode_path(output.path), exc, output.translation.usage)
            written.append(error)
            if error.is_global:
                break
        else:
            written.append((output.path, output.sha256))
    return written
