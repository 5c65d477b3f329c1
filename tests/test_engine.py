"""The engine's units without HTTP or the SDK: a scripted translator on a virtual clock, a real
database, real files. Claims and resume, the attempt loop, output files, image slots, tally."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import anyio
import pytest
from PIL import Image

from imagelingo_cli import events as ev
from imagelingo_cli.clock import VirtualClock
from imagelingo_cli.engine import Batch, BatchOptions, ImageJob, VariationSpec
from imagelingo_cli.engine.slots import ImageSlots
from imagelingo_cli.errors import ErrorCode, SetupError, TranslationError
from imagelingo_cli.images import SourceImage
from imagelingo_cli.languages import resolve_language
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.states import RunStatus, SkipReason, Trigger
from imagelingo_cli.store import Store, open_store
from imagelingo_cli.testing import ScriptedTranslator

SPANISH = resolve_language("es")
TIMEOUT = TranslationError(ErrorCode.TIMEOUT, "Deadline expired.", 504)
BAD_KEY = TranslationError(ErrorCode.CONFIG_ERROR, "API key not valid.", 400)


def picture(folder: Path, name: str, shade: int) -> SourceImage:
    path = folder / name
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(path)
    return SourceImage(path, PurePosixPath(name))


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "in"
        self.folder.mkdir()
        self.out = tmp_path / "out"
        self.store: Store = open_store(tmp_path / "db.sqlite")
        self.clock = VirtualClock()
        self.translator = ScriptedTranslator(self.clock)
        self.events: list[ev.Event] = []

    def jobs(self, names: Sequence[str], variations: int = 1, **spec: object) -> list[ImageJob]:
        specs = tuple(
            VariationSpec(n, SPANISH, "m", "gemini", self.out, **spec)  # type: ignore[arg-type]
            for n in range(1, variations + 1)
        )
        return [
            ImageJob(picture(self.folder, name, 10 + index), specs)
            for index, name in enumerate(names)
        ]

    def run(
        self, jobs: Sequence[ImageJob], *, concurrency: int = 2, force: bool = False
    ) -> ev.Summary:
        options = BatchOptions("process", Trigger.AUTO, RetryPolicy(), concurrency, force=force)
        batch = Batch(
            self.store,
            {"gemini": self.translator},
            options,
            clock=self.clock,
            emit=self.events.append,
            seed=1,
        )

        async def main() -> ev.Summary:
            return await batch.run(jobs, language="es", model="m")

        return anyio.run(main)

    def of(self, kind: type[ev.Event]) -> list[ev.Event]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_a_timeout_is_retried_and_the_second_attempt_completes(harness: Harness) -> None:
    """504 then success: two requests, a 2 s backoff on the clock, one credit, one file."""
    harness.translator.enqueue(TIMEOUT)
    summary = harness.run(harness.jobs(["a.png"]))
    assert (summary.completed, summary.attempts, summary.credits_charged) == (1, 2, 1)
    assert any(2.0 <= s <= 2.4 for s in harness.clock.sleeps)
    assert [p.name for p in harness.out.iterdir()] == ["a.es.v1.png"]


def test_a_permanent_error_is_not_retried(harness: Harness) -> None:
    """NO_IMAGE (permanent): one request, failed, recorded as not retryable."""
    harness.translator.enqueue(TranslationError(ErrorCode.NO_IMAGE, "STOP, text only", 200))
    summary = harness.run(harness.jobs(["a.png"]))
    assert (summary.failed, summary.attempts, summary.status) == (1, 1, RunStatus.FAILED)
    row = harness.store.select_for_retry()[0]
    assert (row["error_code"], row["is_retryable"]) == ("NO_IMAGE", 0)


def test_a_bad_key_stops_sending_the_rest(harness: Harness) -> None:
    """CONFIG_ERROR is global: the first answer stops the run; the others fail unsent."""
    harness.translator.enqueue(BAD_KEY)
    summary = harness.run(harness.jobs(["a.png", "b.png", "c.png"]), concurrency=1)
    assert (summary.failed, len(harness.translator.requests)) == (3, 1)
    unsent = [e for e in harness.of(ev.VariationFailed) if isinstance(e, ev.VariationFailed)]
    assert sorted(e.sent for e in unsent) == [False, False, True]


def test_resume_skips_what_is_done_and_identical_images_are_sent_once(
    harness: Harness,
) -> None:
    """The same content under two names is translated once; a second run sends nothing."""
    jobs = harness.jobs(["a.png"], variations=2)
    twin = harness.folder / "twin.png"
    twin.write_bytes(jobs[0].source.path.read_bytes())
    jobs.append(ImageJob(SourceImage(twin, PurePosixPath("twin.png")), jobs[0].variations))
    first = harness.run(jobs)
    assert (first.completed, first.skipped, len(harness.translator.requests)) == (2, 2, 2)
    second = harness.run(jobs)
    assert (second.skipped, len(harness.translator.requests)) == (4, 2)
    reasons = {
        e.reason for e in harness.of(ev.VariationSkipped) if isinstance(e, ev.VariationSkipped)
    }
    assert reasons == {SkipReason.COMPLETED}
    assert sorted(p.name for p in harness.out.iterdir()) == [
        "a.es.v1.png",
        "a.es.v2.png",
        "twin.es.v1.png",
        "twin.es.v2.png",
    ]


def test_an_unrelated_file_at_the_output_path_is_kept(harness: Harness) -> None:
    """The output name holds a file that is not ours: ours goes to `-2`."""
    harness.out.mkdir()
    (harness.out / "a.es.v1.png").write_bytes(b"my notes")
    harness.run(harness.jobs(["a.png"]))
    assert (harness.out / "a.es.v1.png").read_bytes() == b"my notes"
    assert (harness.out / "a.es.v1-2.png").is_file()


def test_our_own_output_is_not_translated(harness: Harness) -> None:
    """An output copied among the inputs is skipped, not sent."""
    harness.run(harness.jobs(["a.png"]))
    copy = harness.folder / "copy.png"
    copy.write_bytes((harness.out / "a.es.v1.png").read_bytes())
    sent = len(harness.translator.requests)
    summary = harness.run(
        [
            ImageJob(
                SourceImage(copy, PurePosixPath("copy.png")), harness.jobs(["b.png"])[0].variations
            )
        ]
    )
    assert (summary.skipped, len(harness.translator.requests)) == (1, sent)


def test_validation_lives_in_the_request_objects() -> None:
    """Out-of-range options are refused where they are built, whoever builds them."""
    with pytest.raises(SetupError, match="concurrency"):
        BatchOptions("process", Trigger.AUTO, RetryPolicy(), 0)
    with pytest.raises(SetupError, match="retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(SetupError, match="variation number"):
        VariationSpec(0, SPANISH, "m", "gemini", Path("out"))


def test_a_resting_image_gives_its_slot_to_the_next_and_takes_it_back_at_once() -> None:
    """ImageSlots(1): while A's only variation backs off, B gets the slot; A's wake-up does
    not queue behind new images."""
    log: list[str] = []

    async def main() -> None:
        slots = ImageSlots(1)
        a_resting = anyio.Event()
        b_in = anyio.Event()

        async def image_a() -> None:
            async with slots.image() as ticket:
                log.append("a in")
                with ticket.variation():
                    with ticket.backoff():
                        a_resting.set()
                        await b_in.wait()
                    log.append("a awake")

        async def image_b() -> None:
            await a_resting.wait()
            async with slots.image():
                log.append("b in")
                b_in.set()
                await anyio.sleep(0)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(image_a)
                group.start_soon(image_b)
        assert (slots.busy, slots.in_memory) == (0, 0)

    anyio.run(main)
    assert log == ["a in", "b in", "a awake"]
