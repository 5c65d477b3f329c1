"""Real Gemini answers end to end: the real CLI and SDK, the simulator, a real database.

Google's explanation of a refused image reaches the database and every view of it; a broken
image is a failed attempt and never a charged output; the saved extension follows the bytes;
the last final image of an answer is kept; every 200 answer's tokens are stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import TEST_KEY, Cli, scenario_simulator
from PIL import Image

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}
PROHIBITED = (
    "The model output could not be generated. This output contains sensitive words that "
    "violate Google's Responsible AI practices. If you think this was an error, send "
    "feedback. Support code: 42876398."
)
GEMINI_3 = "gemini-3-pro-image-preview"


def process(
    cli: Cli, tmp_path: Path, image: Path, answers: list[Any], *args: str
) -> tuple[int, str]:
    """`process` of one image whose attempts get `answers` in order, then success."""
    rules = [{"responses": answers}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        result = cli(
            "process", str(image), "--base-url", sim.base_url, "--to", "es", *args, env=KEY_ENV
        )
    return result.exit_code, result.output


def variation(cli: Cli) -> dict[str, Any]:
    (row,) = cli.rows("SELECT * FROM generations")
    return row


def tries(cli: Cli) -> list[dict[str, Any]]:
    return cli.rows("SELECT * FROM attempts ORDER BY attempt_number")


# --- Google's explanation ------------------------------------------------------------------


def test_googles_finish_message_reaches_the_database_show_history_and_the_panel(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """IMAGE_PROHIBITED_CONTENT's finishMessage, support code included, is the stored message
    of the variation and the attempt; show prints it whole, history and the panel begin it."""
    code, output = process(cli, tmp_path, images / "shop-sign.png", ["image_prohibited_content"])
    assert code == 1
    row = variation(cli)
    expected = f"IMAGE_PROHIBITED_CONTENT: {PROHIBITED}"
    assert (row["error_code"], row["error_message"], row["is_retryable"]) == (
        "SAFETY_BLOCKED",
        expected,
        0,
    )
    assert [a["error_message"] for a in tries(cli)] == [expected]
    panel = " ".join(output.split())
    assert "IMAGE_PROHIBITED_CONTENT: The model output could not be generated." in panel

    shown = cli("show", row["id"]).output
    assert " ".join(shown.split()).count("Support code: 42876398.") == 2  # variation, attempt
    history = " ".join(cli("history", "--errors", env={"COLUMNS": "400"}).output.split())
    assert "IMAGE_PROHIBITED_CONTENT: The model output could not be generated" in history
    (listed,) = json.loads(cli("history", "--errors", "--json").output)
    assert listed["error_message"] == expected


def test_image_other_may_pass_on_a_retry_but_is_not_retried_automatically(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """IMAGE_OTHER ("you will not be charged") is stored as retryable, gets one attempt, is
    not called permanent, and is what retry-failed --transient-only picks up."""
    code, output = process(cli, tmp_path, images / "shop-sign.png", ["image_other"])
    assert code == 1
    row = variation(cli)
    assert (row["error_code"], row["is_retryable"], row["attempt_count"]) == ("NO_IMAGE", 1, 1)
    assert "You will not be charged for this request." in row["error_message"]
    assert "transient: imagelingo retry-failed" in output
    assert "(permanent)" not in cli("history").output
    chosen = cli("retry-failed", "--transient-only", "--dry-run", env={"COLUMNS": "400"}).output
    assert "Would send 1 request" in chosen and row["id"][:8] in chosen


def test_no_image_can_be_auto_retried_only_where_a_retry_may_help(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """With NO_IMAGE in the auto-retry set, IMAGE_OTHER is retried and then succeeds."""
    code, _ = process(
        cli, tmp_path, images / "shop-sign.png", ["image_other"], "--auto-retry-on", "NO_IMAGE"
    )
    assert code == 0
    assert [a["outcome"] for a in tries(cli)] == ["failed", "succeeded"]


# --- broken images -------------------------------------------------------------------------


def test_one_byte_truncated_and_corrupt_images_are_failed_attempts_never_charged(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """An image part of 1 byte ("AA=="), a PNG cut in half and one with bad CRCs are each a
    failed, retryable attempt saying what is wrong; nothing is written and no credit charged
    until a real image arrives."""
    rules = [{"responses": ["one_byte_image", "truncated_image", "corrupt_image"]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        args = ["--base-url", sim.base_url, "--auto-retry-on", "API_ERROR"]
        first = cli("process", str(images / "shop-sign.png"), "--to", "es", *args, env=KEY_ENV)
        assert first.exit_code == 1  # three attempts, all broken
        row = variation(cli)
        assert (row["status"], row["credits_charged"], row["output_path"]) == ("failed", 0, None)
        assert (row["error_code"], row["is_retryable"]) == ("API_ERROR", 1)
        assert not list((tmp_path / "imagelingo-out").rglob("*.*"))
        assert cli("retry-failed", env=KEY_ENV).exit_code == 0  # the fourth answer is an image
    messages = [a["error_message"] for a in tries(cli)]
    assert messages[0] == (
        "the image in the answer (image/png, 1 byte) is not an image (it starts 0x00)"
    )
    assert messages[1].startswith("the image in the answer (image/png, ")
    assert "is truncated or corrupt" in messages[1]
    assert "is truncated or corrupt: broken PNG file" in messages[2]
    assert [a["total_tokens"] is not None for a in tries(cli)] == [True] * 4
    row = variation(cli)
    assert (row["status"], row["credits_charged"]) == ("completed", 1)
    assert Image.open(row["output_path"]).size == Image.open(images / "shop-sign.png").size


# --- the extension follows the bytes -------------------------------------------------------


def test_a_jpeg_answer_to_a_png_input_is_saved_as_jpg(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """A Gemini 3 model answers JPEG to a PNG: the output is a .jpg that opens as JPEG."""
    code, _ = process(cli, tmp_path, images / "shop-sign.png", [], "--model", GEMINI_3)
    assert code == 0
    output = Path(variation(cli)["output_path"])
    assert output.name == "shop-sign.es.v1.jpg"
    assert Image.open(output).format == "JPEG"


def test_a_jpeg_declared_as_png_is_saved_as_jpg(cli: Cli, images: Path, tmp_path: Path) -> None:
    """The bytes decide the extension, not the part's mimeType."""
    assert process(cli, tmp_path, images / "shop-sign.png", ["mislabelled_image"])[0] == 0
    output = Path(variation(cli)["output_path"])
    assert output.name == "shop-sign.es.v1.jpg" and Image.open(output).format == "JPEG"


def test_an_image_part_without_a_type_is_used(cli: Cli, images: Path, tmp_path: Path) -> None:
    """A part with no mimeType whose bytes are a PNG is the translation, saved as .png."""
    assert process(cli, tmp_path, images / "cafe-menu.jpg", ["unlabelled_image"])[0] == 0
    row = variation(cli)
    assert Path(row["output_path"]).name == "cafe-menu.es.v1.png"
    assert [a["outcome"] for a in tries(cli)] == ["succeeded"]


# --- several images ------------------------------------------------------------------------


def test_of_two_final_images_the_last_is_kept(cli: Cli, images: Path, tmp_path: Path) -> None:
    """An answer with a half-size render then the full one: the full (last) one is saved."""
    assert process(cli, tmp_path, images / "shop-sign.png", ["several_images"])[0] == 0
    output = Image.open(variation(cli)["output_path"])
    assert output.size == Image.open(images / "shop-sign.png").size


def test_a_thought_image_is_never_the_translation(cli: Cli, images: Path, tmp_path: Path) -> None:
    """A thinking model's interim (thought) render is skipped; the final one is saved."""
    answers = ["thought_image_then_final"]
    assert process(cli, tmp_path, images / "shop-sign.png", answers, "--model", GEMINI_3)[0] == 0
    output = Image.open(variation(cli)["output_path"])
    assert output.size == Image.open(images / "shop-sign.png").size


# --- tokens --------------------------------------------------------------------------------


def test_tokens_are_stored_for_no_image_and_safety_blocked_answers(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """A NO_IMAGE and an IMAGE_SAFETY answer were billed: their attempts hold prompt, thoughts
    and total tokens and the model version; output tokens only where there were some."""
    answers = ["no_image", "image_safety"]
    rules = [{"variation": v, "responses": [answers[v - 1]]} for v in (1, 2)]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        result = cli(
            "process",
            str(images / "shop-sign.png"),
            "-n",
            "2",
            "--model",
            GEMINI_3,
            "--base-url",
            sim.base_url,
            "--to",
            "es",
            env=KEY_ENV,
        )
    assert result.exit_code == 1
    rows = cli.rows(
        "SELECT g.variation, a.error_code, a.prompt_tokens, a.output_tokens, a.thoughts_tokens,"
        " a.total_tokens, a.model_version FROM attempts a JOIN generations g"
        " ON g.id = a.generation_id ORDER BY g.variation"
    )
    no_image, blocked = rows
    assert no_image["error_code"] == "NO_IMAGE" and blocked["error_code"] == "SAFETY_BLOCKED"
    for row in rows:
        assert row["prompt_tokens"] and row["model_version"] == GEMINI_3
        assert row["output_tokens"] is None
    assert no_image["thoughts_tokens"] is None
    assert no_image["total_tokens"] == no_image["prompt_tokens"]
    assert blocked["thoughts_tokens"] == 180
    assert blocked["total_tokens"] == blocked["prompt_tokens"] + 180


def test_a_success_stores_output_and_thought_tokens_apart(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """Thinking tokens are stored next to the output tokens, and the total counts both."""
    assert process(cli, tmp_path, images / "shop-sign.png", [], "--model", GEMINI_3)[0] == 0
    (attempt,) = tries(cli)
    assert (attempt["output_tokens"], attempt["thoughts_tokens"]) == (1120, 180)
    assert attempt["total_tokens"] == attempt["prompt_tokens"] + 1120 + 180


# --- writing the output --------------------------------------------------------------------


def test_an_output_that_cannot_be_written_is_an_output_error(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """The translated image cannot replace what holds its name (a folder): OUTPUT_ERROR,
    transient, with the path and errno; the answer's tokens are still recorded."""
    blocker = tmp_path / "imagelingo-out" / "shop-sign.es.v1.png"
    blocker.mkdir(parents=True)
    assert process(cli, tmp_path, images / "shop-sign.png", [], "--force")[0] == 1
    row = variation(cli)
    assert (row["error_code"], row["is_retryable"], row["credits_charged"]) == (
        "OUTPUT_ERROR",
        1,
        0,
    )
    assert row["error_message"] == (
        f"Is a directory (errno 21 EISDIR): the translated image could not be written to {blocker}"
    )
    (attempt,) = tries(cli)
    assert attempt["total_tokens"] and attempt["output_tokens"] == 1290
