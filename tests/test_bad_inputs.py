"""Bad input never stops the batch: each odd file is either translated or recorded as a failed
INVALID_TYPE naming the file and the reason, never sent, and the good image beside it completes.
Through the real CLI (and, for files that change under a run, the library entry points)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import SAMPLES, TEST_KEY, Cli, scenario_simulator
from PIL import Image
from procs import Proc, as_ordinary_user, assert_permissions_apply, child_env, opens_as_image

from imagelingo_cli import events as ev
from imagelingo_cli.clock import MonotonicClock
from imagelingo_cli.languages import resolve_language
from imagelingo_cli.retry import RetryPolicy
from imagelingo_cli.runner import Connection, ProcessRequest, plan_process, run_process
from imagelingo_cli.simulator import Simulator
from imagelingo_cli.store import open_store

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}
GOOD = "good.png"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator("ok") as simulator:
        yield simulator


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An input folder holding one good image."""
    path = tmp_path / "imgs"
    path.mkdir()
    shutil.copy(SAMPLES / "shop-sign.png", path / GOOD)
    return path


# --- building odd files ---------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noisy(mode: str = "RGB", size: tuple[int, int] = (96, 64)) -> Image.Image:
    return Image.effect_noise(size, 60).convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """A valid PNG header for 30000x30000 pixels (900 M, over twice Pillow's bomb limit) in a
    few hundred bytes."""
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 30001))
        + png_chunk(b"IEND", b"")
    )


def bad_crc_png() -> bytes:
    data = bytearray(encoded(noisy(), "PNG"))
    at = data.index(b"IDAT")
    length = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 + length] ^= 0xFF  # the IDAT chunk's CRC
    return bytes(data)


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (48, 32), color) for color in ((200, 0, 0), (0, 200, 0))]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (64, 48))
    image.putdata([(x * 997) % 65536 for x in range(64 * 48)])
    return encoded(image, "PNG")


# --- running and checking -------------------------------------------------------------------


def run(cli: Cli, sim: Simulator, *args: Path | str) -> tuple[int, str]:
    result = cli(
        "process", *(str(a) for a in args), "--to", "es", "--base-url", sim.base_url, env=KEY_ENV
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def row_for(cli: Cli, name: str) -> dict[str, Any]:
    rows = [
        r
        for r in cli.rows("SELECT * FROM generations")
        if r["source_path"].rsplit("/", 1)[-1] == name
    ]
    assert len(rows) == 1, (name, rows)
    return rows[0]


def assert_good_completed(cli: Cli) -> None:
    row = row_for(cli, GOOD)
    assert row["status"] == "completed" and opens_as_image(Path(row["output_path"])), row


def assert_refused(cli: Cli, sim: Simulator, name: str, reason: str) -> None:
    """The bad file: failed INVALID_TYPE, never sent, the message naming it and the reason; the
    good image completed."""
    row = row_for(cli, name)
    assert (row["status"], row["error_code"], row["attempt_count"]) == (
        "failed",
        "INVALID_TYPE",
        0,
    ), row
    assert f"'{name}'" in row["error_message"] and reason in row["error_message"], row
    assert row["is_retryable"] == 0
    assert_good_completed(cli)
    assert sim.stats()["requests"] == 1  # only the good image was sent


def assert_cli_refused(
    cli: Cli, sim: Simulator, name: str, reason: str, code: int, output: str
) -> None:
    """As `assert_refused`, for a CLI run: exit 1 and the failure shown with the file's name."""
    assert code == 1, output
    assert_refused(cli, sim, name, reason)
    assert name in output and "Invalid Type" in output, output


def assert_translated(cli: Cli, sim: Simulator, name: str, code: int, output: str) -> Path:
    """The odd file was translated: completed, a whole image written; exit 0."""
    assert code == 0, output
    row = row_for(cli, name)
    assert row["status"] == "completed", row
    out = Path(row["output_path"])
    assert opens_as_image(out) and out.name.startswith(Path(name).stem + ".es.v1.")
    assert_good_completed(cli)
    assert sim.stats()["requests"] == 2
    return out


# --- files that cannot be sent --------------------------------------------------------------

REFUSED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.png": (lambda: b"", "is empty (0 bytes)"),
    "truncated.png": (
        lambda: (lambda d: d[: len(d) // 2])(encoded(noisy(), "PNG")),
        "is truncated or corrupt",
    ),
    "truncated.jpg": (
        lambda: (lambda d: d[: len(d) // 2])(encoded(noisy(), "JPEG")),
        "is truncated or corrupt",
    ),
    "notes.png": (
        lambda: b"shopping list: eggs, milk\n" * 4,
        "is not an image: it looks like text",
    ),
    "bad-crc.png": (bad_crc_png, "is truncated or corrupt"),
    "bomb.png": (bomb_png, "is too large to decode safely: 30000×30000 pixels"),
}


def test_zero_byte_file_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A 0-byte .png: INVALID_TYPE "is empty (0 bytes)", the rest completes."""
    check_refused(cli, sim, folder, "empty.png")


def test_truncated_png_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A PNG cut in half: INVALID_TYPE "truncated or corrupt", the rest completes."""
    check_refused(cli, sim, folder, "truncated.png")


def test_truncated_jpeg_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A JPEG cut in half: INVALID_TYPE "truncated or corrupt", the rest completes."""
    check_refused(cli, sim, folder, "truncated.jpg")


def test_text_file_named_png_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A text file named .png: INVALID_TYPE "looks like text", the rest completes."""
    check_refused(cli, sim, folder, "notes.png")


def test_png_with_a_wrong_crc_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A PNG whose IDAT checksum is wrong: INVALID_TYPE, the rest completes."""
    check_refused(cli, sim, folder, "bad-crc.png")


def test_decompression_bomb_is_refused_before_decoding(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """A 30000x30000 PNG header (over Pillow's bomb limit): INVALID_TYPE "too large", no crash."""
    assert 2 * (Image.MAX_IMAGE_PIXELS or 0) < 30000 * 30000
    check_refused(cli, sim, folder, "bomb.png")


def check_refused(cli: Cli, sim: Simulator, folder: Path, name: str) -> None:
    make, reason = REFUSED[name]
    (folder / name).write_bytes(make())
    code, output = run(cli, sim, folder)
    assert_cli_refused(cli, sim, name, reason, code, output)


# --- odd but usable files: converted and translated -----------------------------------------


def test_bmp_is_converted_and_translated(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A BMP (not a Gemini format) is converted to PNG and translated."""
    (folder / "scan.bmp").write_bytes(encoded(noisy(), "BMP"))
    assert_translated(cli, sim, "scan.bmp", *run(cli, sim, folder))
    assert sim.stats()["last_request"]["mime_type"] in ("image/png", "image/jpeg")


def test_tiff_is_converted_and_translated(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A TIFF is converted to PNG and translated."""
    (folder / "scan.tif").write_bytes(encoded(noisy(), "TIFF"))
    assert_translated(cli, sim, "scan.tif", *run(cli, sim, folder))


def test_cmyk_jpeg_is_converted_and_translated(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A CMYK JPEG is sent as RGB and translated."""
    (folder / "print.jpg").write_bytes(encoded(noisy("CMYK"), "JPEG"))
    out = assert_translated(cli, sim, "print.jpg", *run(cli, sim, folder))
    with Image.open(out) as image:
        assert image.mode != "CMYK"


def test_sixteen_bit_png_is_converted_and_translated(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """A 16-bit grayscale PNG is sent as 8-bit and translated."""
    (folder / "deep.png").write_bytes(sixteen_bit_png())
    assert_translated(cli, sim, "deep.png", *run(cli, sim, folder))


def test_animated_gif_sends_its_first_frame(cli: Cli, sim: Simulator, folder: Path) -> None:
    """An animated GIF: its first frame is sent (as PNG) and translated."""
    (folder / "banner.gif").write_bytes(animated("GIF"))
    assert_translated(cli, sim, "banner.gif", *run(cli, sim, folder))
    assert sim.stats()["last_request"]["mime_type"] == "image/png"


def test_animated_webp_sends_its_first_frame(cli: Cli, sim: Simulator, folder: Path) -> None:
    """An animated WebP: its first frame is sent (as PNG) and translated."""
    (folder / "banner.webp").write_bytes(animated("WEBP"))
    assert_translated(cli, sim, "banner.webp", *run(cli, sim, folder))


# --- files the file system will not give us -------------------------------------------------


def test_unreadable_file_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A file without read permission: INVALID_TYPE "permission denied", the rest completes."""
    locked = folder / "locked.png"
    shutil.copy(SAMPLES / "tea-label.png", locked)
    locked.chmod(0)
    preexec = as_ordinary_user()
    assert_permissions_apply(locked, "rb")
    args = ["process", str(folder), "--to", "es", "--base-url", sim.base_url]
    proc = Proc(args, env=child_env(**KEY_ENV), cwd=cli.tmp_path, preexec_fn=preexec)
    code = proc.wait(timeout=60)
    assert "Traceback" not in proc.text()
    assert_cli_refused(
        cli, sim, "locked.png", "cannot be read: permission denied", code, proc.text()
    )


def test_unreadable_folder_is_recorded_and_the_rest_completes(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """A sub-folder that cannot be listed: INVALID_TYPE "permission denied" naming it."""
    private = folder / "private"
    private.mkdir()
    shutil.copy(SAMPLES / "tea-label.png", private / "inside.png")
    private.chmod(0)
    preexec = as_ordinary_user()
    try:
        args = ["process", str(folder), "--to", "es", "--base-url", sim.base_url]
        proc = Proc(args, env=child_env(**KEY_ENV), cwd=cli.tmp_path, preexec_fn=preexec)
        code = proc.wait(timeout=60)
    finally:
        private.chmod(0o755)
    assert_cli_refused(cli, sim, "private", "permission denied", code, proc.text())


def test_broken_symlink_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """A symbolic link to nothing: INVALID_TYPE "broken symbolic link", the rest completes."""
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    code, output = run(cli, sim, folder)
    assert_cli_refused(cli, sim, "dangling.png", "broken symbolic link", code, output)


def test_symlink_loop_file_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """Two links pointing at each other: INVALID_TYPE "symbolic link loop", the rest completes."""
    (folder / "ping.png").symlink_to(folder / "pong.png")
    (folder / "pong.png").symlink_to(folder / "ping.png")
    code, output = run(cli, sim, folder)
    assert_cli_refused(cli, sim, "ping.png", "symbolic link loop", code, output)
    assert_cli_refused(cli, sim, "pong.png", "symbolic link loop", code, output)


def test_symlinked_folder_loop_is_refused_not_walked_forever(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """A folder link back to its parent: recorded as a loop, walked once, the rest completes."""
    (folder / "sub").mkdir()
    (folder / "sub" / "back").symlink_to(folder, target_is_directory=True)
    code, output = run(cli, sim, folder)
    assert_cli_refused(cli, sim, "back", "symbolic link loop", code, output)


# --- names ---------------------------------------------------------------------------------


def test_names_with_spaces_and_unicode_are_translated(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """`menu du café 東京 ✓.png`: translated to `menu du café 東京 ✓.es.v1.png`."""
    name = "menu du café 東京 ✓.png"
    shutil.copy(SAMPLES / "tea-label.png", folder / name)
    out = assert_translated(cli, sim, name, *run(cli, sim, folder))
    assert out.name == "menu du café 東京 ✓.es.v1.png"


NON_UTF8 = b"caf\xe9 men\xfc.png"  # Latin-1 bytes: not a UTF-8 name


def test_non_utf8_file_name_is_translated_and_resumed_without_resending(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """A non-UTF-8 file name is translated; the next run skips it instead of resending it."""
    shutil.copy(SAMPLES / "tea-label.png", os.fsencode(folder) + b"/" + NON_UTF8)
    code, output = run(cli, sim, folder, "--json")
    assert code == 0, output
    rows = cli.rows("SELECT status, source_path FROM generations ORDER BY source_path")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert rows[0]["source_path"].endswith("/caf\\xe9 men\\xfc.png")  # readable text
    out = os.fsencode(cli.tmp_path / "imagelingo-out")
    assert sorted(os.listdir(out)) == [b"caf\xe9 men\xfc.es.v1.png", b"good.es.v1.png"]
    assert opens_as_image(Path(os.fsdecode(out + b"/caf\xe9 men\xfc.es.v1.png")))

    code, output = run(cli, sim, folder, "--json")
    assert code == 0, output
    assert sim.stats()["requests"] == 2, output  # nothing sent again
    assert output.count('"reason": "completed"') == 2


def test_non_utf8_file_name_failure_is_retried_from_the_same_file(
    cli: Cli, folder: Path, tmp_path: Path
) -> None:
    """retry-failed finds a failed non-UTF-8-named file again and translates it."""
    source = os.fsencode(folder) + b"/" + NON_UTF8
    shutil.copy(SAMPLES / "tea-label.png", source)
    rules = [{"image": str(SAMPLES / "tea-label.png"), "responses": ["overloaded"]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as simulator:
        code, output = run(cli, simulator, folder, "--json")
        assert code == 1, output
        result = cli("retry-failed", "--json", env=KEY_ENV)
        assert result.exit_code == 0, result.output
        assert simulator.stats()["requests"] == 3
    assert {r["status"] for r in cli.rows("SELECT status FROM generations")} == {"completed"}
    out = os.fsencode(cli.tmp_path / "imagelingo-out")
    assert b"caf\xe9 men\xfc.es.v1.png" in os.listdir(out)


def test_non_utf8_file_name_is_shown_on_a_utf8_terminal_without_crashing(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """Plain output on a strict UTF-8 stdout shows a non-UTF-8 name instead of crashing."""
    shutil.copy(SAMPLES / "tea-label.png", os.fsencode(folder) + b"/" + NON_UTF8)
    result = cli("process", str(folder), "--to", "es", "--base-url", sim.base_url, env=KEY_ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    assert "Succeeded" in result.output and "men" in result.output


def test_two_files_with_identical_content_both_get_an_output_from_one_request(
    cli: Cli, folder: Path
) -> None:
    """Two files, one content: both get an output; the variation is sent once, one attempt."""
    shutil.copy(folder / GOOD, folder / "copy.png")
    with Simulator("ok", latency=0.2) as slow:  # both are in flight together
        code, output = run(cli, slow, folder)
        sent = slow.stats()["by_key"]
    assert code == 0, output
    out = cli.tmp_path / "imagelingo-out"
    assert opens_as_image(out / "good.es.v1.png") and opens_as_image(out / "copy.es.v1.png")
    rows = cli.rows("SELECT status, attempt_count, credits_charged FROM generations")
    assert [(r["status"], r["credits_charged"]) for r in rows] == [("completed", 1)]
    assert list(sent.values()) == [1], sent
    assert rows[0]["attempt_count"] == 1


# --- files that change under a run ----------------------------------------------------------


def library_run(cli: Cli, sim: Simulator, folder: Path, between: Callable[[], None]) -> ev.Summary:
    """`plan_process` (discovery), then `between()`, then `run_process` (hash, check, send)."""
    request = ProcessRequest(
        paths=[folder],
        variations=1,
        languages=(resolve_language("es"),),
        model="gemini-2.5-flash-image",
        out_dir=cli.tmp_path / "out",
        policy=RetryPolicy(),
        concurrency=2,
        connection=Connection(api_key=TEST_KEY, base_url=sim.base_url),
    )
    store = open_store(cli.db_path)
    jobs = plan_process(request, store)
    assert len(jobs.jobs) == 2
    between()
    events: list[ev.Event] = []
    try:

        async def main() -> ev.Summary:
            return await run_process(
                request, jobs, store, clock=MonotonicClock(), emit=events.append
            )

        return anyio.run(main)
    finally:
        store.close()


def test_file_deleted_after_discovery_is_refused(cli: Cli, sim: Simulator, folder: Path) -> None:
    """Found, then deleted before it is read: INVALID_TYPE "no longer exists", the rest completes."""
    shutil.copy(SAMPLES / "tea-label.png", folder / "gone.png")
    summary = library_run(cli, sim, folder, (folder / "gone.png").unlink)
    assert (summary.completed, summary.failed) == (1, 1)
    assert_refused(cli, sim, "gone.png", "no longer exists")


def test_file_changed_after_discovery_is_sent_as_it_is_now(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """A file replaced after discovery is hashed, recorded and sent as it is now (read once)."""
    target = folder / "changing.png"
    shutil.copy(SAMPLES / "tea-label.png", target)
    summary = library_run(cli, sim, folder, lambda: shutil.copy(SAMPLES / "cafe-menu.jpg", target))
    assert (summary.completed, summary.failed) == (2, 0)
    row = row_for(cli, "changing.png")
    now = hashlib.sha256(target.read_bytes()).hexdigest()
    assert row["image_sha256"] == now and row["status"] == "completed"
    assert f"{now}:1" in sim.stats()["by_key"]


def test_file_turned_to_garbage_after_discovery_is_refused(
    cli: Cli, sim: Simulator, folder: Path
) -> None:
    """Found, then overwritten with garbage before it is read: INVALID_TYPE, the rest completes."""
    target = folder / "spoiled.png"
    shutil.copy(SAMPLES / "tea-label.png", target)
    summary = library_run(cli, sim, folder, lambda: target.write_bytes(b"\x89PNG\r\n\x1a\nxx"))
    assert summary.failed == 1
    assert_refused(cli, sim, "spoiled.png", "truncated or corrupt")


@pytest.fixture
def failed_once(cli: Cli, folder: Path, tmp_path: Path) -> Iterator[Simulator]:
    """A run where victim.png failed with a 503 (transient), ready for retry-failed."""
    shutil.copy(SAMPLES / "tea-label.png", folder / "victim.png")
    rules = [{"image": str(folder / "victim.png"), "responses": ["overloaded"]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as simulator:
        code, output = run(cli, simulator, folder)
        assert code == 1 and row_for(cli, "victim.png")["error_code"] == "SERVER_ERROR", output
        simulator.reset_stats()
        yield simulator


def test_retry_after_the_source_changed_is_refused(
    cli: Cli, folder: Path, failed_once: Simulator
) -> None:
    """retry-failed after the source changed: INVALID_TYPE "changed", nothing sent."""
    shutil.copy(SAMPLES / "cafe-menu.jpg", folder / "victim.png")
    result = cli("retry-failed", env=KEY_ENV)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    row = row_for(cli, "victim.png")
    assert (row["status"], row["error_code"]) == ("failed", "INVALID_TYPE")
    assert "'victim.png' changed since it was found" in row["error_message"]
    assert failed_once.stats()["requests"] == 0


def test_retry_after_the_source_was_deleted_is_refused(
    cli: Cli, folder: Path, failed_once: Simulator
) -> None:
    """retry-failed on a variation whose file is gone: INVALID_TYPE "no longer exists"."""
    (folder / "victim.png").unlink()
    result = cli("retry-failed", env=KEY_ENV)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    row = row_for(cli, "victim.png")
    assert (row["status"], row["error_code"]) == ("failed", "INVALID_TYPE")
    assert "'victim.png' no longer exists" in row["error_message"]
    assert failed_once.stats()["requests"] == 0
