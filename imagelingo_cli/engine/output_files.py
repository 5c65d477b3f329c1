"""Where each translated image goes, and getting it there: `<stem>.<lang>.v<N>.<ext>` in the
variation's output folder, never over another variation's output (the first free `-2`,
`-3`… instead), with the path and the digest of the bytes recorded before the write."""

from __future__ import annotations

from pathlib import Path

import anyio

from imagelingo_cli.digest import sha256
from imagelingo_cli.engine.jobs import ImageJob, VariationSpec
from imagelingo_cli.gemini import Translation
from imagelingo_cli.outputs import output_path, write_atomic
from imagelingo_cli.pathtext import encode_path
from imagelingo_cli.store import Store


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

    async def write(self, path: Path, generation_id: str, translation: Translation) -> str:
        """Record the intent, write the file atomically; returns the bytes' SHA-256 (hex).
        OSError when it cannot be written."""
        digest = await anyio.to_thread.run_sync(sha256, translation.data)
        self.store.intend_output(generation_id, encode_path(path), digest)
        await anyio.to_thread.run_sync(write_atomic, path, translation.data)
        return digest

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
