"""images.py and outputs.py: discovery, sniffing, preparation, output paths, atomic writes."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from PIL import Image, ImageFile, features

from imagelingo_cli import images, outputs
from imagelingo_cli.errors import ErrorCode, TranslationError
from imagelingo_cli.images import (
    MAX_SEND_BYTES,
    MAX_SIDE,
    SUPPORTED_MIME_TYPES,
    BrokenImage,
    DiscoveryProblem,
    SourceImage,
    discover,
    prepare_image,
    sniff_mime,
    verify_image,
)
from imagelingo_cli.outputs import output_path, remove_stale_temp_files, write_atomic

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
SAMPLE_MIMES = {
    "cafe-menu.jpg": "image/jpeg",
    "shop-sign.png": "image/png",
    "concert-poster.webp": "image/webp",
    "tea-label.png": "image/png",
    "station-notice.jpg": "image/jpeg",
}


# --- helpers -------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def small_png(color: str = "teal", size: tuple[int, int] = (40, 30)) -> bytes:
    return encode(Image.new("RGB", size, color), "PNG")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def heic_bytes(
    width: int, height: int, mdat: bytes = b"\x00" * 64, brand: bytes = b"heic"
) -> bytes:
    """A minimal ISO-BMFF HEIF: ftyp, meta/iprp/ipco/ispe with the size, then mdat."""
    ftyp = box(b"ftyp", brand + b"\x00\x00\x00\x00" + b"mif1" + brand)
    ispe = box(b"ispe", b"\x00\x00\x00\x00" + struct.pack(">II", width, height))
    meta = box(b"meta", b"\x00\x00\x00\x00" + box(b"iprp", box(b"ipco", ispe)))
    return ftyp + meta + box(b"mdat", mdat)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def items(found: Iterable[SourceImage | DiscoveryProblem]) -> list[SourceImage | DiscoveryProblem]:
    return list(found)


def relatives(found: Iterable[SourceImage | DiscoveryProblem]) -> list[str]:
    return [str(item.relative) for item in found if isinstance(item, SourceImage)]


def problems(found: Iterable[SourceImage | DiscoveryProblem]) -> list[DiscoveryProblem]:
    return [item for item in found if isinstance(item, DiscoveryProblem)]


def invalid(path: Path, expected_sha256: str | None = None) -> str:
    """prepare_image must fail with INVALID_TYPE; return the message."""
    with pytest.raises(TranslationError) as caught:
        prepare_image(path, expected_sha256)
    assert caught.value.code is ErrorCode.INVALID_TYPE
    assert not caught.value.transient
    return caught.value.message


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- discover ------------------------------------------------------------------------------


def test_discover_recurses_folders_in_sorted_order(tmp_path: Path) -> None:
    """Folders are walked recursively, entries sorted by name, files and subfolders interleaved."""
    for name in ["b.png", "a.jpg", "sub/z.webp", "sub/deeper/c.png", "c.png", "sub/a.gif"]:
        write(tmp_path / name, b"")
    found = items(discover([tmp_path]))
    assert relatives(found) == [
        "a.jpg",
        "b.png",
        "c.png",
        "sub/a.gif",
        "sub/deeper/c.png",
        "sub/z.webp",
    ]
    first = found[0]
    assert isinstance(first, SourceImage)
    assert first.path == tmp_path / "a.jpg"
    assert first.path.is_absolute()


def test_discover_order_is_deterministic(tmp_path: Path) -> None:
    """Two walks of the same tree give the same list."""
    for name in ["q.png", "m/n.png", "a/b/c.png", "Z.png"]:
        write(tmp_path / name, b"")
    assert items(discover([tmp_path])) == items(discover([tmp_path]))


def test_discover_skips_hidden_files_and_folders(tmp_path: Path) -> None:
    """Names starting with '.' are skipped, and so is everything inside a hidden folder."""
    write(tmp_path / "shown.png", b"")
    write(tmp_path / ".hidden.png", b"")
    write(tmp_path / ".cache" / "inside.png", b"")
    assert relatives(discover([tmp_path])) == ["shown.png"]


def test_discover_skips_non_image_extensions_in_folders(tmp_path: Path) -> None:
    """In folders, files with other extensions that do not sniff as images are left out."""
    write(tmp_path / "notes.txt", b"shopping list")
    write(tmp_path / "data.json", b"{}")
    write(tmp_path / "photo.JPEG", b"")
    write(tmp_path / "scan.TiF", b"")
    assert relatives(discover([tmp_path])) == ["photo.JPEG", "scan.TiF"]


def test_discover_includes_folder_file_whose_bytes_sniff_as_image(tmp_path: Path) -> None:
    """A file without an image extension is still found when its head bytes are an image."""
    write(tmp_path / "download", small_png())
    write(tmp_path / "photo.bin", encode(Image.new("RGB", (8, 8)), "JPEG"))
    assert relatives(discover([tmp_path])) == ["download", "photo.bin"]


def test_discover_always_includes_named_file(tmp_path: Path) -> None:
    """A file named as an argument is a candidate whatever its extension; relative is its name."""
    notes = write(tmp_path / "deep" / "notes.txt", b"not an image")
    assert items(discover([notes])) == [SourceImage(notes, PurePosixPath("notes.txt"))]


def test_discover_keeps_argument_order(tmp_path: Path) -> None:
    """Arguments are walked in the order given; each folder's files are relative to it."""
    one = write(tmp_path / "one" / "x.png", b"")
    write(tmp_path / "two" / "y.png", b"")
    found = items(discover([tmp_path / "two", one]))
    assert [(str(i.relative), i.path) for i in found if isinstance(i, SourceImage)] == [
        ("y.png", tmp_path / "two" / "y.png"),
        ("x.png", one),
    ]


def test_discover_reports_broken_symlink(tmp_path: Path) -> None:
    """A dangling symbolic link is a DiscoveryProblem, not an exception."""
    write(tmp_path / "ok.png", b"")
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    found = items(discover([tmp_path]))
    assert relatives(found) == ["ok.png"]
    assert problems(found) == [DiscoveryProblem(tmp_path / "gone.png", "broken symbolic link")]


def test_discover_reports_symlink_loop_once(tmp_path: Path) -> None:
    """A symlinked folder pointing back up the tree is reported once and not followed."""
    write(tmp_path / "top" / "a.png", b"")
    write(tmp_path / "top" / "sub" / "b.png", b"")
    (tmp_path / "top" / "sub" / "up").symlink_to(tmp_path / "top", target_is_directory=True)
    found = items(discover([tmp_path / "top"]))
    assert relatives(found) == ["a.png", "sub/b.png"]
    assert len(problems(discover([tmp_path]))) == 1  # also when the loop is below the argument
    assert problems(found) == [
        DiscoveryProblem(tmp_path / "top" / "sub" / "up", "symbolic link loop")
    ]


def test_discover_reports_self_referencing_symlink(tmp_path: Path) -> None:
    """A link that points at itself (ELOOP) is reported as a loop."""
    (tmp_path / "self.png").symlink_to(tmp_path / "self.png")
    assert problems(discover([tmp_path])) == [
        DiscoveryProblem(tmp_path / "self.png", "symbolic link loop")
    ]


def test_discover_follows_symlinked_files_and_folders(tmp_path: Path) -> None:
    """Links to files and to folders outside the tree are followed, keeping the link's name."""
    outside = tmp_path / "outside"
    write(outside / "album" / "p.png", b"")
    real = write(outside / "real.jpg", b"")
    root = tmp_path / "in"
    root.mkdir()
    (root / "linked-album").symlink_to(outside / "album", target_is_directory=True)
    (root / "linked.jpg").symlink_to(real)
    found = items(discover([root]))
    assert relatives(found) == ["linked-album/p.png", "linked.jpg"]
    assert found[1] == SourceImage(root / "linked.jpg", PurePosixPath("linked.jpg"))


def test_discover_does_not_walk_a_folder_twice_through_a_link(tmp_path: Path) -> None:
    """A link to a folder inside the same tree is skipped: its images come once, real names."""
    write(tmp_path / "photos" / "2024" / "a.png", b"")
    (tmp_path / "photos" / "latest").symlink_to(tmp_path / "photos" / "2024")
    (tmp_path / "photos" / "again").symlink_to(tmp_path / "photos" / "2024")
    found = items(discover([tmp_path / "photos"]))
    assert found == [
        SourceImage(tmp_path / "photos" / "2024" / "a.png", PurePosixPath("2024/a.png"))
    ]


def test_discover_follows_link_into_hidden_folder(tmp_path: Path) -> None:
    """A visible link to a hidden folder of the tree is followed (it is walked nowhere else)."""
    write(tmp_path / ".archive" / "old.png", b"")
    (tmp_path / "archive").symlink_to(tmp_path / ".archive")
    assert relatives(discover([tmp_path])) == ["archive/old.png"]


def test_discover_reports_unreadable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder that cannot be listed is reported as 'permission denied'; the walk goes on."""
    write(tmp_path / "a.png", b"")
    locked = tmp_path / "locked"
    write(locked / "secret.png", b"")
    write(tmp_path / "z.png", b"")
    locked.chmod(0o000)
    try:
        if os.access(locked, os.R_OK):  # root ignores modes: refuse the listing another way
            real_scandir = os.scandir

            def scandir(path: Any) -> Any:
                if Path(path) == locked:
                    raise PermissionError(13, "Permission denied", str(path))
                return real_scandir(path)

            monkeypatch.setattr(os, "scandir", scandir)
        found = items(discover([tmp_path]))
    finally:
        locked.chmod(0o755)
    assert relatives(found) == ["a.png", "z.png"]
    assert problems(found) == [DiscoveryProblem(locked, "permission denied")]


def test_discover_handles_spaces_and_unicode_names(tmp_path: Path) -> None:
    """Names with spaces and non-ASCII characters are kept exactly in `relative`."""
    write(tmp_path / "Café menus" / "carte du jour ☕.png", b"")
    write(tmp_path / "日本語" / "看板.jpg", b"")
    assert relatives(discover([tmp_path])) == ["Café menus/carte du jour ☕.png", "日本語/看板.jpg"]


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux allows non-UTF-8 file names")
def test_discover_handles_non_utf8_names(tmp_path: Path) -> None:
    """A name that is not valid UTF-8 is found, kept as-is (surrogateescape), and prepared."""
    raw_dir = os.path.join(os.fsencode(tmp_path), b"d\xe9j\xe0")
    os.mkdir(raw_dir)
    raw_file = os.path.join(raw_dir, b"caf\xe9.png")
    with open(raw_file, "wb") as handle:
        handle.write(small_png())
    found = items(discover([tmp_path]))
    assert len(found) == 1
    item = found[0]
    assert isinstance(item, SourceImage)
    assert os.fsencode(item.path) == raw_file
    assert os.fsencode(str(item.relative)) == b"d\xe9j\xe0/caf\xe9.png"
    assert prepare_image(item.path).mime_type == "image/png"
    (item.path.parent / "empty.png").write_bytes(b"")
    message = invalid(item.path.parent / "empty.png")
    message.encode("utf-8")  # messages stay printable and storable
    write(item.path.parent / "x.png", b"")
    os.rename(os.path.join(raw_dir, b"x.png"), os.path.join(raw_dir, b"\xff.png"))
    assert invalid(Path(os.fsdecode(os.path.join(raw_dir, b"\xff.png")))) == (
        "'\\xff.png' is empty (0 bytes)"
    )


def test_discover_skips_excluded_output_folder(tmp_path: Path) -> None:
    """An excluded folder inside the input (the output folder) is not walked."""
    write(tmp_path / "in.png", b"")
    write(tmp_path / "imagelingo-out" / "in.en.v1.png", b"")
    found = discover([tmp_path], exclude=[tmp_path / "imagelingo-out"])
    assert relatives(found) == ["in.png"]


def test_discover_raises_for_missing_argument_at_call_time(tmp_path: Path) -> None:
    """A path that does not exist raises FileNotFoundError before anything is yielded."""
    write(tmp_path / "a.png", b"")
    with pytest.raises(FileNotFoundError):
        discover([tmp_path, tmp_path / "nope"])


def test_discover_reports_named_special_file(tmp_path: Path) -> None:
    """A named FIFO is reported (never opened); FIFOs inside folders are skipped silently."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert items(discover([fifo])) == [DiscoveryProblem(fifo, "not a regular file or folder")]
    assert items(discover([tmp_path])) == []


# --- sniff_mime ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00", "image/bmp"),
        (b"II*\x00\x08\x00\x00\x00", "image/tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x14ftypmif1\x00\x00\x00\x00mif1", "image/heif"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "image/avif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", "image/avif"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", None),
        (b"BM is not enough", None),
        (b"hello, world", None),
        (b"", None),
    ],
)
def test_sniff_mime_reads_magic_bytes(head: bytes, mime: str | None) -> None:
    """Each signature maps to its MIME type; other bytes (an MP4, text, nothing) give None."""
    assert sniff_mime(head) == mime


# --- prepare_image: files that go as they are ---------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLE_MIMES))
def test_sample_images_are_sent_unchanged(name: str) -> None:
    """Every bundled sample passes validation and is sent byte for byte with its real type."""
    path = SAMPLES / name
    data = path.read_bytes()
    assert len(data) < 300 * 1024
    prepared = prepare_image(path)
    assert prepared.data == data
    assert prepared.mime_type == SAMPLE_MIMES[name]
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    assert prepared.note is None
    with Image.open(path) as image:
        assert (prepared.width, prepared.height) == image.size
        assert 600 <= image.width <= 1000


def test_type_comes_from_bytes_not_extension(tmp_path: Path) -> None:
    """A JPEG named .png is recognised as image/jpeg and sent unchanged."""
    data = encode(Image.new("RGB", (30, 20), "navy"), "JPEG")
    prepared = prepare_image(write(tmp_path / "liar.png", data))
    assert (prepared.mime_type, prepared.data) == ("image/jpeg", data)


def test_expected_sha256_that_matches_is_accepted(tmp_path: Path) -> None:
    """Passing the hash the file still has changes nothing."""
    data = small_png()
    digest = hashlib.sha256(data).hexdigest()
    assert prepare_image(write(tmp_path / "a.png", data), digest).sha256 == digest


def test_heic_is_sent_as_is_with_header_size(tmp_path: Path) -> None:
    """HEIC cannot be decoded here: the header is checked and the bytes go unchanged."""
    data = heic_bytes(4032, 3024)
    prepared = prepare_image(write(tmp_path / "IMG_0001.HEIC", data))
    assert (prepared.mime_type, prepared.data) == ("image/heic", data)
    assert (prepared.width, prepared.height, prepared.note) == (4032, 3024, None)


def test_all_prepared_types_are_supported_by_gemini() -> None:
    """The sendable set is exactly what Gemini takes."""
    assert set(SUPPORTED_MIME_TYPES) == {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
    }


# --- prepare_image: refusals ---------------------------------------------------------------


def test_zero_byte_file_is_invalid(tmp_path: Path) -> None:
    """An empty file is refused, naming it."""
    assert invalid(write(tmp_path / "menu.png", b"")) == "'menu.png' is empty (0 bytes)"


def test_text_file_named_png_is_invalid(tmp_path: Path) -> None:
    """Text with an image extension is recognised as text."""
    path = write(tmp_path / "menu.png", "Café: 2,20 €\nThé: 3,80 €\n".encode())
    assert invalid(path) == "'menu.png' is not an image: it looks like text"


def test_unrecognised_binary_is_invalid(tmp_path: Path) -> None:
    """Unknown binary content is refused with its first bytes in hex."""
    path = write(tmp_path / "blob.jpg", b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\xfe")
    assert invalid(path) == (
        "'blob.jpg' is not an image: unrecognised content (starts with 0x0001020304050607)"
    )


def test_known_non_image_formats_are_named(tmp_path: Path) -> None:
    """PDF and SVG files are refused with what they are."""
    pdf = write(tmp_path / "flyer.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    svg = write(tmp_path / "logo.png", b'<?xml version="1.0"?>\n<svg xmlns="x"></svg>')
    assert invalid(pdf) == "'flyer.png' is not an image: it looks like a PDF document"
    assert invalid(svg) == "'logo.png' is SVG, which Gemini does not accept"


def test_truncated_png_is_invalid(tmp_path: Path) -> None:
    """A PNG cut in the middle of its pixel data is refused as truncated or corrupt."""
    data = (SAMPLES / "shop-sign.png").read_bytes()
    message = invalid(write(tmp_path / "sign.png", data[: len(data) // 2]))
    assert message.startswith("'sign.png' is truncated or corrupt: ")


def test_png_missing_its_end_is_invalid(tmp_path: Path) -> None:
    """A PNG missing only its last bytes (IEND) is still caught."""
    data = (SAMPLES / "shop-sign.png").read_bytes()
    message = invalid(write(tmp_path / "sign.png", data[:-12]))
    assert message.startswith("'sign.png' is truncated or corrupt: ")


def test_truncated_jpeg_is_invalid(tmp_path: Path) -> None:
    """A JPEG cut short is refused with Pillow's reason."""
    data = (SAMPLES / "cafe-menu.jpg").read_bytes()
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    message = invalid(write(tmp_path / "menu.jpg", data[: len(data) * 2 // 3]))
    assert message.startswith("'menu.jpg' is truncated or corrupt: image file is truncated")


def test_png_with_wrong_crc_is_invalid(tmp_path: Path) -> None:
    """One flipped bit inside IDAT (the CRC no longer matches) is caught."""
    data = bytearray((SAMPLES / "shop-sign.png").read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 4 + 100] ^= 0x01
    message = invalid(write(tmp_path / "sign.png", bytes(data)))
    assert (
        message
        == "'sign.png' is truncated or corrupt: broken PNG file (bad header checksum in b'IDAT')"
    )


def test_png_with_wrong_header_crc_is_invalid(tmp_path: Path) -> None:
    """A wrong CRC on IHDR is caught when the header is read."""
    data = bytearray(small_png())
    data[29] ^= 0xFF  # first byte of IHDR's CRC
    assert invalid(write(tmp_path / "a.png", bytes(data))).startswith(
        "'a.png' is truncated or corrupt: "
    )


def test_decompression_bomb_fails_fast_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PNG whose valid IHDR claims 20000×20000 is refused from the header alone."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )

    def no_decoding(self: Any) -> Any:
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert invalid(write(tmp_path / "bomb.png", data)) == (
        "'bomb.png' is too large to decode safely: 20000×20000 pixels, "
        "over the 50,000,000-pixel limit"
    )


def test_bomb_below_pillows_own_limit_is_still_refused(tmp_path: Path) -> None:
    """9000×9000 (81 MP) is under Pillow's default limit but over ours, with no warning."""
    header = struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")
    assert "9000×9000 pixels" in invalid(write(tmp_path / "big.png", data))


def test_heic_bomb_is_refused(tmp_path: Path) -> None:
    """A HEIC header announcing too many pixels is refused."""
    path = write(tmp_path / "huge.heic", heic_bytes(10000, 10000))
    assert invalid(path) == (
        "'huge.heic' is too large to decode safely: 10000×10000 pixels, "
        "over the 50,000,000-pixel limit"
    )


def test_truncated_heic_is_invalid(tmp_path: Path) -> None:
    """A HEIC whose mdat box runs past the end of the file is refused as truncated."""
    data = heic_bytes(800, 600, mdat=b"\x01" * 500)[:-100]
    assert invalid(write(tmp_path / "cut.heic", data)) == (
        "'cut.heic' is truncated or corrupt: HEIC box b'mdat' runs past the end of the file"
    )


def test_heic_without_size_is_invalid(tmp_path: Path) -> None:
    """A HEIF with no ispe box has no readable size and is refused."""
    data = box(b"ftyp", b"mif1\x00\x00\x00\x00mif1") + box(b"mdat", b"\x00" * 16)
    assert invalid(write(tmp_path / "x.heif", data)) == (
        "'x.heif' is truncated or corrupt: no image size in the HEIF header"
    )


def test_avif_is_refused_when_pillow_cannot_convert_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AVIF (not accepted by Gemini) is refused when this Pillow has no AVIF codec."""
    monkeypatch.setattr(features, "check", lambda feature: False)
    data = box(b"ftyp", b"avif\x00\x00\x00\x00avifmif1miaf") + box(b"mdat", b"\x00" * 8)
    assert invalid(write(tmp_path / "pic.avif", data)) == (
        "'pic.avif' is AVIF, which Gemini does not accept (convert it to PNG or JPEG)"
    )


def test_other_image_formats_are_named(tmp_path: Path) -> None:
    """A Photoshop file is refused as a format Gemini does not take."""
    path = write(tmp_path / "layout.png", b"8BPS\x00\x01" + b"\x00" * 40)
    assert invalid(path) == "'layout.png' is a Photoshop document, which Gemini does not accept"


def test_changed_file_is_invalid(tmp_path: Path) -> None:
    """A file whose content no longer matches the expected sha256 is refused."""
    path = write(tmp_path / "menu.png", small_png("red"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(small_png("blue"))
    assert invalid(path, digest) == "'menu.png' changed since it was found (content differs)"


def test_deleted_file_is_invalid(tmp_path: Path) -> None:
    """A file that vanished between discovery and preparation is refused, not raised as OSError."""
    path = write(tmp_path / "menu.png", small_png())
    path.unlink()
    assert invalid(path) == "'menu.png' no longer exists"


def test_unreadable_file_is_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be opened for reading is refused as 'permission denied'."""
    path = write(tmp_path / "menu.png", small_png())
    path.chmod(0o000)
    try:
        if os.access(path, os.R_OK):  # root reads anything: refuse the open another way
            real_open = os.open

            def deny(target: Any, *args: Any, **kwargs: Any) -> int:
                if Path(target) == path:
                    raise PermissionError(13, "Permission denied", str(target))
                return real_open(target, *args, **kwargs)

            monkeypatch.setattr(os, "open", deny)
        message = invalid(path)
    finally:
        path.chmod(0o644)
    assert message == "'menu.png' cannot be read: permission denied"


def test_folder_path_is_invalid(tmp_path: Path) -> None:
    """A folder where a file was expected is refused with INVALID_TYPE, not an OSError."""
    folder = tmp_path / "menu.png"
    folder.mkdir()
    assert invalid(folder) == "'menu.png' is a folder, not a file"


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    """A named pipe is refused at once instead of blocking the worker on read."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert invalid(fifo) == "'pipe.png' is not a regular file"


# --- prepare_image: conversions ------------------------------------------------------------


def test_bmp_is_converted_to_png(tmp_path: Path) -> None:
    """BMP (not taken by Gemini) becomes PNG with the same pixels."""
    source = Image.open(SAMPLES / "shop-sign.png").convert("RGB")
    prepared = prepare_image(write(tmp_path / "sign.bmp", encode(source, "BMP")))
    assert (prepared.mime_type, prepared.note) == ("image/png", "converted from BMP to PNG")
    result = opened(prepared.data)
    assert (result.format, result.size) == ("PNG", source.size)
    assert result.convert("RGB").tobytes() == source.tobytes()


def test_tiff_is_converted_to_png(tmp_path: Path) -> None:
    """TIFF becomes PNG; the hash is of the original TIFF bytes."""
    data = encode(Image.new("RGB", (120, 80), "orange"), "TIFF")
    prepared = prepare_image(write(tmp_path / "scan.tiff", data))
    assert (prepared.mime_type, prepared.note) == ("image/png", "converted from TIFF to PNG")
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    assert opened(prepared.data).getpixel((5, 5)) == (255, 165, 0)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    """A CMYK JPEG is re-encoded as an RGB JPEG."""
    cmyk = Image.new("RGB", (100, 60), (200, 30, 40)).convert("CMYK")
    prepared = prepare_image(write(tmp_path / "print.jpg", encode(cmyk, "JPEG")))
    assert (prepared.mime_type, prepared.note) == ("image/jpeg", "CMYK converted to RGB")
    result = opened(prepared.data)
    assert result.mode == "RGB"
    red, green, blue = result.getpixel((50, 30))  # type: ignore[misc]
    assert red > 150 and green < 80 and blue < 90


def test_16_bit_png_is_converted_to_8_bit(tmp_path: Path) -> None:
    """A 16-bit greyscale PNG becomes 8-bit with its range scaled, not clipped."""
    wide = Image.new("I;16", (256, 4))
    wide.putdata([x * 257 for x in range(256)] * 4)
    prepared = prepare_image(write(tmp_path / "scan.png", encode(wide, "PNG")))
    assert (prepared.mime_type, prepared.note) == ("image/png", "16-bit PNG converted to 8-bit")
    assert prepared.data[24] == 8  # IHDR bit depth
    result = opened(prepared.data)
    assert result.mode == "L"
    assert [result.getpixel((x, 0)) for x in (0, 128, 255)] == [0, 128, 255]


def test_animated_gif_keeps_first_frame(tmp_path: Path) -> None:
    """An animated GIF is sent as a PNG of its first frame, and the note says so."""
    frames = [Image.new("RGB", (60, 40), color) for color in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    prepared = prepare_image(write(tmp_path / "anim.gif", data))
    assert prepared.mime_type == "image/png"
    assert prepared.note == "animated GIF: first frame only; converted from GIF to PNG"
    assert opened(prepared.data).convert("RGB").getpixel((10, 10)) == (255, 0, 0)


def test_animated_webp_keeps_first_frame(tmp_path: Path) -> None:
    """An animated WebP is sent as a PNG of its first frame."""
    frames = [Image.new("RGB", (60, 40), color) for color in ("red", "lime", "blue")]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    prepared = prepare_image(write(tmp_path / "anim.webp", data))
    assert (prepared.mime_type, prepared.note) == (
        "image/png",
        "animated WebP: first frame only, sent as PNG",
    )
    assert opened(prepared.data).convert("RGB").getpixel((10, 10)) == (255, 0, 0)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_is_converted_to_png(tmp_path: Path) -> None:
    """AVIF (not taken by Gemini) becomes PNG when Pillow can decode it."""
    data = encode(Image.new("RGB", (64, 48), "purple"), "AVIF")
    prepared = prepare_image(write(tmp_path / "pic.avif", data))
    assert (prepared.mime_type, prepared.note) == ("image/png", "converted from AVIF to PNG")
    assert (prepared.width, prepared.height) == (64, 48)


def test_oversize_image_is_downscaled(tmp_path: Path) -> None:
    """A 5000×300 opaque image is downscaled with its aspect ratio and sent as JPEG."""
    path = write(tmp_path / "banner.png", encode(Image.new("RGB", (5000, 300), "gold"), "PNG"))
    prepared = prepare_image(path)
    assert prepared.mime_type == "image/jpeg"
    assert (prepared.width, prepared.height) == (MAX_SIDE, 245)
    assert prepared.note == "downscaled from 5000×300 to 4096×245"
    assert opened(prepared.data).size == (4096, 245)


def test_oversize_image_with_alpha_stays_png(tmp_path: Path) -> None:
    """A too-wide image with transparency is downscaled and kept as PNG."""
    image = Image.new("RGBA", (300, 5000), (0, 128, 0, 100))
    prepared = prepare_image(write(tmp_path / "tall.png", encode(image, "PNG")))
    assert (prepared.mime_type, prepared.width, prepared.height) == ("image/png", 245, 4096)
    assert opened(prepared.data).mode == "RGBA"


def test_too_many_bytes_is_reencoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file over MAX_SEND_BYTES (lowered here) is re-encoded until it fits."""
    noisy = Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3))
    data = encode(noisy, "PNG")
    monkeypatch.setattr(images, "MAX_SEND_BYTES", len(data) // 2)
    prepared = prepare_image(write(tmp_path / "noise.png", data))
    assert prepared.mime_type == "image/jpeg"
    assert len(prepared.data) <= len(data) // 2
    assert prepared.note is not None
    assert MAX_SEND_BYTES == 15 * 1024 * 1024


# --- output_path ---------------------------------------------------------------------------


def test_output_path_layout(tmp_path: Path) -> None:
    """The output mirrors the relative folder: <stem>.<lang>.v<N>.<ext>."""
    got = output_path(tmp_path, PurePosixPath("menus/Café carte.jpeg"), "en", 2, "image/png")
    assert got == tmp_path / "menus" / "Café carte.en.v2.png"


@pytest.mark.parametrize(
    ("mime", "ext"),
    [
        ("image/png", "png"),
        ("image/jpeg", "jpg"),
        ("image/webp", "webp"),
        ("image/heic", "heic"),
        ("image/heif", "heif"),
        ("IMAGE/PNG; charset=x", "png"),
        ("application/octet-stream", "bin"),
    ],
)
def test_output_path_extension_follows_mime(tmp_path: Path, mime: str, ext: str) -> None:
    """The extension comes from the MIME type the model returned."""
    assert output_path(tmp_path, PurePosixPath("a.png"), "de", 1, mime).name == f"a.de.v1.{ext}"


@pytest.mark.parametrize(
    "relative", ["../escape.png", "a/../../b.png", "/etc/passwd", "", ".", "a/.."]
)
def test_output_path_rejects_escaping_relative(tmp_path: Path, relative: str) -> None:
    """`..`, absolute and empty relative paths raise ValueError instead of escaping out_dir."""
    with pytest.raises(ValueError):
        output_path(tmp_path, PurePosixPath(relative), "en", 1, "image/png")


def test_output_path_rejects_unsafe_language(tmp_path: Path) -> None:
    """A language containing a path separator cannot steer the file elsewhere."""
    with pytest.raises(ValueError):
        output_path(tmp_path, PurePosixPath("a.png"), "../../en", 1, "image/png")


# --- write_atomic and stale temp files -----------------------------------------------------


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(outputs.TEMP_SUFFIX)]


def test_write_atomic_writes_content_and_leaves_no_temp(tmp_path: Path) -> None:
    """Parents are created, the content lands, the old file is replaced, no temp remains."""
    target = tmp_path / "out" / "sub" / "a.en.v1.png"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert temp_files(tmp_path) == []
    assert target.stat().st_mode & 0o777 == 0o644 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_atomic_removes_temp_on_failure(tmp_path: Path) -> None:
    """When the final rename fails (target is a folder), the temp file is removed."""
    target = tmp_path / "a.en.v1.png"
    target.mkdir()
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert temp_files(tmp_path) == []
    assert target.is_dir()


def test_write_atomic_fails_when_parent_is_a_file(tmp_path: Path) -> None:
    """A parent that is a file raises OSError and leaves nothing behind."""
    (tmp_path / "blocker").write_bytes(b"x")
    with pytest.raises(OSError):
        write_atomic(tmp_path / "blocker" / "a.png", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_write_atomic_keeps_old_file_when_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If fsync fails mid-write, the previous output is untouched and the temp is removed."""
    target = tmp_path / "a.png"
    write_atomic(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_remove_stale_temp_files(tmp_path: Path) -> None:
    """Only our leftover `.{name}.{hex}.tmp` files are deleted, at any depth; count returned."""
    write(tmp_path / ".a.en.v1.png.0123456789abcdef.tmp", b"x")
    write(tmp_path / "deep" / "er" / ".b.png.fedcba9876543210.tmp", b"x")
    keep = [
        write(tmp_path / "a.en.v1.png", b"x"),
        write(tmp_path / "notes.tmp", b"x"),
        write(tmp_path / ".other.tmp", b"x"),
        write(tmp_path / ".c.png.NOTHEX0123456789.tmp", b"x"),
    ]
    assert remove_stale_temp_files(tmp_path) == 2
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(keep)
    assert remove_stale_temp_files(tmp_path / "missing") == 0


# --- checking a returned image -----------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda d: d[: len(d) // 2], "is truncated or corrupt: "),
        (lambda d: d[:-12], "is truncated or corrupt: truncated PNG file"),
        (
            lambda d: d[: len(d) // 2] + bytes([d[len(d) // 2] ^ 0xFF]) + d[len(d) // 2 + 1 :],
            "is truncated or corrupt: broken PNG file (bad header checksum in b'IDAT')",
        ),
        (lambda d: b"\x89PNG\r\n\x1a\n", "is truncated or corrupt: "),
        (lambda d: d[:1], "is not an image (it starts 0x89)"),
    ],
    ids=["cut in half", "no end chunk", "a damaged byte", "signature only", "one byte"],
)
def test_a_returned_png_is_checked_chunk_by_chunk(damage: Any, words: str) -> None:
    """A returned PNG is accepted only whole: a cut, a missing end chunk or one damaged byte
    of pixel data (its CRC) is refused, without decoding the pixels."""
    data = encode(Image.effect_noise((300, 200), 60).convert("RGB"), "PNG")
    assert verify_image(data) == "image/png"
    with pytest.raises(BrokenImage) as refused:
        verify_image(damage(data))
    assert str(refused.value).startswith(words)


def test_a_returned_jpeg_is_decoded_whole_and_a_huge_png_is_refused_by_its_header() -> None:
    data = encode(Image.effect_noise((300, 200), 60).convert("RGB"), "JPEG")
    assert verify_image(data) == "image/jpeg"
    with pytest.raises(BrokenImage, match="is truncated or corrupt: image file is truncated"):
        verify_image(data[: len(data) // 2])
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    huge = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")
    with pytest.raises(BrokenImage, match="pixels"):
        verify_image(huge)
