"""What the parts of one batch run share: the database and the run's id, its options, the
clock, where events go, the stop switch and the tally."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imagelingo_cli import events as ev
from imagelingo_cli.clock import Clock
from imagelingo_cli.control import BatchControl
from imagelingo_cli.engine.jobs import BatchOptions, ImageJob, VariationSpec
from imagelingo_cli.engine.tally import Tally
from imagelingo_cli.store import Store


@dataclass
class Run:
    store: Store
    run_id: str
    options: BatchOptions
    clock: Clock
    emit: Callable[[ev.Event], None]
    control: BatchControl
    tally: Tally

    def interrupted(self, ref: ev.VariationRef, attempt: int) -> None:
        """The run stopped before this variation finished; a later run does it."""
        if ref.generation_id:
            self.store.mark_interrupted(ref.generation_id)
        self.tally.interrupted += 1
        self.emit(ev.VariationInterrupted(ref, attempt))


def variation_ref(job: ImageJob, spec: VariationSpec, generation_id: str = "") -> ev.VariationRef:
    """How events name a variation: its id (once claimed), image, number and language."""
    return ev.VariationRef(
        generation_id or spec.generation_id or "",
        str(job.source.relative),
        spec.variation,
        spec.language.tag,
    )
