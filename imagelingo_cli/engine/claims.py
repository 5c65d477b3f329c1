"""Which of an image's variations this run sends, and why the others are skipped.

A variation is skipped when it was completed earlier and its output is still there (resume;
the output is copied to this run's output folder if it lives elsewhere), when an identical
image of this run already did it, when another live run holds it, when it is abandoned
(unless forced), when it waits in a Batch API job (even forced: the job may deliver it), when
a run that died wrote its output but did not record it (the file is recorded now, not paid for
again), or when the image itself is an output imagelingo wrote.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio

from imagelingo_cli import events as ev
from imagelingo_cli.engine.jobs import ImageJob, VariationSpec
from imagelingo_cli.engine.run import Run, variation_ref
from imagelingo_cli.errors import TranslationError
from imagelingo_cli.images import PreparedImage
from imagelingo_cli.outputs import holds, mime_type_of, output_path
from imagelingo_cli.pathtext import encode_path
from imagelingo_cli.states import GenerationStatus, SkipReason
from imagelingo_cli.store import Claim, ClaimKind, GenerationKey

# Why a claim that is not ours skips a variation (the preview says the same).
SKIP_REASONS = {
    ClaimKind.COMPLETED: SkipReason.COMPLETED,
    ClaimKind.DONE_IN_RUN: SkipReason.SAME_CONTENT,
    ClaimKind.ABANDONED: SkipReason.ABANDONED,
    ClaimKind.BUSY: SkipReason.BUSY,
    ClaimKind.IN_BATCH: SkipReason.IN_BATCH,
}


class Claims:
    def __init__(self, run: Run) -> None:
        self.run = run

    async def sendable(
        self,
        job: ImageJob,
        image: PreparedImage | None,
        problem: TranslationError | None,
        sha256: str,
    ) -> tuple[PreparedImage, list[tuple[VariationSpec, ev.VariationRef]]] | None:
        """Claim the image's variations, and settle at once those that cannot be sent: not
        sent when the run has stopped sending, refused when the image is unusable (`problem`).
        The image and the variations to send, if any."""
        taken = await self.take(job, sha256)
        run = self.run
        if run.control.halted:
            for _spec, ref in taken:
                run.not_sent(ref, 0)
            return None
        if image is None:
            assert problem is not None
            for _spec, ref in taken:
                run.refused(ref, problem)
            return None
        return image, taken

    async def take(self, job: ImageJob, sha256: str) -> list[tuple[VariationSpec, ev.VariationRef]]:
        """Claim the image's variations for this run; returns those to send."""
        if self.run.store.is_recorded_output(sha256):
            for spec in job.variations:
                self._skip(variation_ref(job, spec), SkipReason.OUTPUT_OF_OURS, None)
            return []
        taken = []
        for spec in job.variations:
            ref = await self._take(job, spec, sha256)
            if ref is not None:
                taken.append((spec, ref))
        return taken

    async def _take(
        self, job: ImageJob, spec: VariationSpec, sha256: str
    ) -> ev.VariationRef | None:
        claim = self._claim(job, spec, sha256, force=self.run.options.force)
        ref = variation_ref(job, spec, str(claim.row["id"]))
        status = GenerationStatus(claim.row["status"])
        if claim.kind in (ClaimKind.COMPLETED, ClaimKind.DONE_IN_RUN) and (
            status is GenerationStatus.COMPLETED
        ):
            reused = await anyio.to_thread.run_sync(_reuse_output, job, spec, claim.row)
            if reused is not None:
                self._skip(ref, SkipReason.COMPLETED, reused)
                return None
            if claim.kind is ClaimKind.COMPLETED:  # its output is gone: translate it again
                claim = self._claim(job, spec, sha256, force=True)
        if claim.kind is not ClaimKind.SEND:
            output = claim.row.get("output_path")
            self._skip(ref, SKIP_REASONS[claim.kind], str(output) if output else None)
            return None
        if await self._recover_output(ref, claim.row):
            return None
        self.run.emit(ev.VariationQueued(ref))
        return ref

    def _claim(self, job: ImageJob, spec: VariationSpec, sha256: str, *, force: bool) -> Claim:
        store, run_id = self.run.store, self.run.run_id
        if spec.generation_id is not None:
            return store.claim_for_retry(spec.generation_id, run_id)
        key = GenerationKey(sha256, spec.language.tag, spec.model, spec.variation, spec.backend)
        return store.claim_generation(
            key,
            run_id=run_id,
            source_path=encode_path(job.source.path),
            relative_path=encode_path(job.source.relative),
            out_dir=encode_path(spec.out_dir),
            base_url=self.run.options.base_url,
            force=force,
        )

    async def _recover_output(self, ref: ev.VariationRef, row: dict[str, object]) -> bool:
        """A run killed between writing this variation's output and recording it left the
        file: if it is there whole, record it instead of paying for the translation again."""
        path, digest = row.get("pending_output"), row.get("pending_output_sha256")
        if not path or not digest:
            return False
        if not await anyio.to_thread.run_sync(holds, Path(str(path)), str(digest)):
            return False
        self.run.tally.credits += int(self.run.store.adopt_output(ref.generation_id))
        self._skip(ref, SkipReason.RECOVERED, str(path))
        return True

    def _skip(self, ref: ev.VariationRef, reason: SkipReason, output: str | None) -> None:
        self.run.tally.skipped += 1
        self.run.emit(ev.VariationSkipped(ref, reason, output))


def _reuse_output(job: ImageJob, spec: VariationSpec, row: dict[str, object]) -> str | None:
    """A completed variation's output, copied to this run's output path if it lives elsewhere.
    None when the recorded output is gone (the variation is translated again)."""
    recorded = Path(str(row.get("output_path") or ""))
    if not row.get("output_path") or not recorded.is_file():
        return None
    wanted = output_path(
        spec.out_dir, job.source.relative, spec.language.tag, spec.variation, mime_type_of(recorded)
    )
    if wanted == recorded or wanted.exists():  # here already, or the name holds another file
        return str(recorded)
    wanted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(recorded, wanted)
    return str(wanted)
