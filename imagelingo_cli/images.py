"""Input images: finding them, recognising them, and making each one sendable or refusing it.

    discover(paths, exclude) -> SourceImage | DiscoveryProblem, streamed, sorted, no content read
    sniff_mime(head)         -> MIME type from the magic bytes (never from the file name)
    prepare_image(path)      -> PreparedImage, or TranslationError(INVALID_TYPE) naming the file
    verify_image(data)       -> the MIME type of a complete, decodable image, or BrokenImage

A file is read once, hashed (its key), checked from the header before anything is decoded
(decompression bombs), fully decoded by Pillow (truncation, bad CRCs), and sent byte for byte
unless it needs fixing: formats Gemini does not take become PNG, CMYK JPEG becomes RGB,
16-bit PNG becomes 8-bit, animations keep their first frame, oversize images are downscaled.
Output paths and atomic writes live in `outputs.py`.
"""

from __future__ import annotations

import errno
import io
import math
import os
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, features

from .digest import sha256
from .errors import ErrorCode, TranslationError
from .pathtext import encode_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MAX_SEND_BYTES",
    "MAX_SIDE",
    "SNIFF_BYTES",
    "SUPPORTED_MIME_TYPES",
    "BrokenImage",
    "DiscoveryProblem",
    "PreparedImage",
    "SourceImage",
    "discover",
    "prepare_image",
    "sniff_mime",
    "verify_image",
]

SUPPORTED_MIME_TYPES: frozenset[str] = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
)
MAX_PIXELS: int = 50_000_000
MAX_SEND_BYTES: int = 15 * 1024 * 1024
MAX_SIDE: int = 4096
MAX_FILE_BYTES: int = 512 * 1024 * 1024  # larger files are refused before being read
SNIFF_BYTES: int = 64  # enough head bytes for every signature sniff_mime knows
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".heic", ".heif"} | {".gif", ".bmp", ".tif", ".tiff"}
)

_JPEG_QUALITY = 90
_CMYK_JPEG_QUALITY = 92


@dataclass(frozen=True)
class SourceImage:
    """An input file: where it is, and where it sits below the folder it was found in."""

    path: Path
    relative: PurePosixPath


@dataclass(frozen=True)
class DiscoveryProblem:
    """Something found while walking that cannot become an image (reported, never raised)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class PreparedImage:
    """The bytes to send for one input file, and what was done to them."""

    data: bytes = field(repr=False)
    mime_type: str
    sha256: str
    width: int
    height: int
    note: str | None = None


# --- discovery -----------------------------------------------------------------------------

_Identity = tuple[int, int]  # (st_dev, st_ino)


def discover(
    paths: Sequence[Path], exclude: Sequence[Path] = (), skipped: Counter[str] | None = None
) -> Iterator[SourceImage | DiscoveryProblem]:
    """Every candidate image under `paths`, in a stable order, without reading any content
    beyond a few head bytes. Raises FileNotFoundError now (not while iterating) for an
    argument that does not exist at all; everything else is reported as a DiscoveryProblem.
    What folders hold that is left out is counted in `skipped`, by reason ("not an image",
    "hidden", "output folder", "not a regular file")."""
    roots = []
    for given in paths:
        absolute = Path(os.path.abspath(given))
        if not os.path.lexists(absolute):
            raise FileNotFoundError(errno.ENOENT, "No such file or folder", str(given))
        roots.append(absolute)
    excluded: set[_Identity] = set()
    for folder in exclude:
        try:
            info = os.stat(folder)
        except OSError:
            continue
        excluded.add((info.st_dev, info.st_ino))
    return _discover(roots, frozenset(excluded), Counter() if skipped is None else skipped)


def _discover(
    roots: list[Path], excluded: frozenset[_Identity], skipped: Counter[str]
) -> Iterator[SourceImage | DiscoveryProblem]:
    for root in roots:
        try:
            info = os.stat(root)
        except OSError as exc:
            yield DiscoveryProblem(root, _os_reason(exc, os.path.islink(root)))
            continue
        if stat.S_ISDIR(info.st_mode):
            identity = (info.st_dev, info.st_ino)
            if identity in excluded:
                skipped["output folder"] += 1
            else:
                walk = _Walk(os.path.realpath(root), {identity}, excluded, skipped)
                yield from walk.folder(root, PurePosixPath(), frozenset({identity}))
        elif stat.S_ISREG(info.st_mode):
            yield SourceImage(root, PurePosixPath(root.name))
        else:
            yield DiscoveryProblem(root, "not a regular file or folder")


@dataclass
class _Walk:
    """One argument folder's walk. Symlinked folders are followed, except a link back to an
    ancestor (a loop, reported), a link to a folder this walk reaches anyway under its real
    name (skipped, so nothing is found twice), and a second link to the same folder."""

    root_real: str
    visited: set[_Identity]
    excluded: frozenset[_Identity]
    skipped: Counter[str]

    def folder(
        self, folder: Path, relative: PurePosixPath, ancestors: frozenset[_Identity]
    ) -> Iterator[SourceImage | DiscoveryProblem]:
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            yield DiscoveryProblem(folder, _os_reason(exc, False))
            return
        for entry in entries:
            if entry.name.startswith("."):
                self.skipped["hidden"] += 1
                continue
            path = folder / entry.name
            is_link = False
            try:
                is_link = entry.is_symlink()
                info = entry.stat()  # follows symbolic links
            except OSError as exc:
                yield DiscoveryProblem(path, _os_reason(exc, is_link))
                continue
            if stat.S_ISDIR(info.st_mode):
                identity = (info.st_dev, info.st_ino)
                if identity in self.excluded:
                    self.skipped["output folder"] += 1
                    continue
                if identity in ancestors:
                    yield DiscoveryProblem(path, "symbolic link loop" if is_link else "folder loop")
                    continue
                if identity in self.visited or (is_link and self._walked_anyway(path)):
                    continue
                self.visited.add(identity)
                yield from self.folder(path, relative / entry.name, ancestors | {identity})
            elif not stat.S_ISREG(info.st_mode):  # FIFOs, sockets, devices: never images
                self.skipped["not a regular file"] += 1
            elif _is_candidate(path):
                yield SourceImage(path, relative / entry.name)
            else:
                self.skipped["not an image"] += 1

    def _walked_anyway(self, link: Path) -> bool:
        """Whether the link's target lies inside this walk's root, outside hidden folders."""
        target = os.path.realpath(link)
        try:
            inside = os.path.commonpath([self.root_real, target]) == self.root_real
        except ValueError:  # different drives
            return False
        parts = PurePosixPath(os.path.relpath(target, self.root_real)).parts if inside else ()
        return inside and not any(part.startswith(".") for part in parts)


def _is_candidate(path: Path) -> bool:
    """In folders: an image extension, or (for any other name) head bytes that sniff as one."""
    if os.path.splitext(path.name)[1].lower() in IMAGE_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return False
    return sniff_mime(head) is not None


def _os_reason(exc: OSError, is_link: bool) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "broken symbolic link" if is_link else "disappeared while being listed"
    if exc.errno in (errno.EACCES, errno.EPERM) or isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


# --- sniffing ------------------------------------------------------------------------------

_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def sniff_mime(head: bytes) -> str | None:
    """The image MIME type the magic bytes announce, or None. Never looks at a file name."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "image/bmp"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    return None


def _sniff_ftyp(head: bytes) -> str | None:
    box_end = min(max(int.from_bytes(head[:4], "big"), 16), len(head))
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    if major in _AVIF_BRANDS:
        return "image/avif"
    if major in _HEIC_BRANDS:
        return "image/heic"
    if major in _HEIF_BRANDS:
        if compatible & _AVIF_BRANDS:
            return "image/avif"
        return "image/heic" if compatible & _HEIC_BRANDS else "image/heif"
    if compatible & _AVIF_BRANDS:
        return "image/avif"
    if compatible & _HEIC_BRANDS:
        return "image/heic"
    if compatible & _HEIF_BRANDS:
        return "image/heif"
    return None


_LABELS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WebP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/avif": "AVIF",
    "image/heic": "HEIC",
    "image/heif": "HEIF",
}
_PILLOW_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/avif": "AVIF",
}
# Formats sniff_mime does not take, named so the user learns what the file is.
_OTHER_SIGNATURES = (
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "is JPEG 2000, which Gemini does not accept"),
    (b"\xff\x4f\xff\x51", "is JPEG 2000, which Gemini does not accept"),
    (b"\xff\x0a", "is JPEG XL, which Gemini does not accept"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "is JPEG XL, which Gemini does not accept"),
    (b"8BPS", "is a Photoshop document, which Gemini does not accept"),
    (b"\x00\x00\x01\x00", "is a Windows icon, which Gemini does not accept"),
    (b"%PDF", "is not an image: it looks like a PDF document"),
    (b"PK\x03\x04", "is not an image: it looks like a ZIP archive"),
)


def _describe_non_image(data: bytes) -> str:
    for signature, reason in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return reason
    head = data[:1024]
    lowered = head.lower()
    if b"<svg" in lowered or (lowered.lstrip().startswith(b"<?xml") and b"svg" in lowered):
        return "is SVG, which Gemini does not accept"
    if _looks_like_text(head):
        return "is not an image: it looks like text"
    return f"is not an image: unrecognised content (starts with 0x{data[:8].hex()})"


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    text = head.decode("utf-8", errors="ignore")
    if len(text.encode("utf-8")) < len(head) - 3:  # more than a cut-off final character dropped
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text)


# --- preparation ---------------------------------------------------------------------------


def prepare_image(path: Path, expected_sha256: str | None = None) -> PreparedImage:
    """Read, hash, validate and (only if needed) convert one image. Blocking.

    Raises TranslationError(INVALID_TYPE) naming the file for anything that makes it
    unsendable: gone, unreadable, empty, not an image, corrupt, too large, changed.
    """
    name = _display_name(path)
    data = _read(path, name)
    digest = sha256(data)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise _invalid(name, "changed since it was found (content differs)")
    if not data:
        raise _invalid(name, "is empty (0 bytes)")
    mime = sniff_mime(data[:SNIFF_BYTES])
    if mime is None:
        raise _invalid(name, _describe_non_image(data))
    if mime in ("image/heic", "image/heif"):
        return _prepare_heif(data, mime, digest, name)
    if mime == "image/avif" and not features.check("avif"):
        raise _invalid(name, "is AVIF, which Gemini does not accept (convert it to PNG or JPEG)")
    return _prepare_raster(data, mime, digest, name)


def _invalid(name: str, reason: str) -> TranslationError:
    return TranslationError(ErrorCode.INVALID_TYPE, f"{name} {reason}")


def _display_name(path: Path) -> str:
    """The file name, quoted, printable and UTF-8-safe (undecodable bytes shown as \\xNN)."""
    return "'" + encode_path(path.name or str(path)) + "'"


def _read(path: Path, name: str) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: a FIFO must not hang the worker
        with open(fd, "rb", closefd=True) as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise _invalid(name, "is a folder, not a file")
            if not stat.S_ISREG(info.st_mode):
                raise _invalid(name, "is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise _invalid(
                    name, f"is too large to read ({_mb(info.st_size)}, over {_mb(MAX_FILE_BYTES)})"
                )
            return handle.read()
    except FileNotFoundError:
        raise _invalid(name, "no longer exists") from None
    except PermissionError:
        raise _invalid(name, "cannot be read: permission denied") from None
    except IsADirectoryError:
        raise _invalid(name, "is a folder, not a file") from None
    except OSError as exc:
        raise _invalid(name, f"cannot be read: {exc.strerror or exc}") from None


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _too_many_pixels(width: int, height: int) -> str:
    return (
        f"is too large to decode safely: {width}×{height} pixels, "
        f"over the {MAX_PIXELS:,}-pixel limit"
    )


def _prepare_heif(data: bytes, mime: str, digest: str, name: str) -> PreparedImage:
    """HEIC/HEIF cannot be decoded here: check the box structure and size, send as is."""
    label = _LABELS[mime]
    width, height = _heif_size(data, name, label)
    if width * height > MAX_PIXELS:
        raise _invalid(name, _too_many_pixels(width, height))
    if len(data) > MAX_SEND_BYTES:
        raise _invalid(
            name,
            f"is a {_mb(len(data))} {label} image, over the {_mb(MAX_SEND_BYTES)} that is sent, "
            f"and {label} cannot be downscaled here (convert it to JPEG first)",
        )
    return PreparedImage(data, mime, digest, width, height, None)


def _heif_size(data: bytes, name: str, label: str) -> tuple[int, int]:
    """The largest `ispe` (image spatial extent) in meta/iprp/ipco; every top-level box must
    fit in the file (a cut-off `mdat` means a truncated file)."""
    sizes: list[tuple[int, int]] = []

    def boxes(start: int, end: int, depth: int) -> None:
        offset = start
        while offset + 8 <= end:
            size = int.from_bytes(data[offset : offset + 4], "big")
            kind = data[offset + 4 : offset + 8]
            header = 8
            if size == 1:
                size = int.from_bytes(data[offset + 8 : offset + 16], "big")
                header = 16
            elif size == 0:
                size = end - offset
            if size < header or offset + size > end:
                where = "runs past the end of the file" if size >= header else "has a bad size"
                raise _invalid(name, f"is truncated or corrupt: {label} box {kind!r} {where}")
            body = offset + header
            if kind == b"meta" and depth < 4:
                boxes(body + 4, offset + size, depth + 1)  # full box: version + flags first
            elif kind in (b"iprp", b"ipco") and depth < 4:
                boxes(body, offset + size, depth + 1)
            elif kind == b"ispe" and size >= header + 12:
                width = int.from_bytes(data[body + 4 : body + 8], "big")
                height = int.from_bytes(data[body + 8 : body + 12], "big")
                sizes.append((width, height))
            offset += size

    boxes(0, len(data), 0)
    if not sizes:
        raise _invalid(name, f"is truncated or corrupt: no image size in the {label} header")
    width, height = max(sizes, key=lambda wh: wh[0] * wh[1])
    if width < 1 or height < 1:
        raise _invalid(name, f"is truncated or corrupt: {label} image size {width}×{height}")
    return width, height


def _open(data: bytes, pillow_format: str) -> Image.Image:
    """Read only the header with the plugin for the sniffed format. Calls the plugin's
    factory directly, as Image.open would, but without Image.open's process-wide
    MAX_IMAGE_PIXELS check and its warning: our own limit is checked by the caller."""
    Image.init()
    factory, _accept = Image.OPEN[pillow_format]
    return factory(io.BytesIO(data), "")


class BrokenImage(ValueError):
    """Bytes that are not a whole image Pillow can decode; the message says what they are
    ("is truncated or corrupt: …"), to follow the name of whatever held them."""


def verify_image(data: bytes) -> str:
    """The MIME type of `data`, sniffed from its bytes, once Pillow has checked all of it:
    a PNG chunk by chunk against its CRCs up to its end chunk (what a cut or a damaged byte
    breaks; decoding the pixels too would cost fifty times as much), anything else fully
    decoded. Raises BrokenImage otherwise. Blocking: call it from a worker thread."""
    if not data:
        raise BrokenImage("is empty (0 bytes)")
    mime = sniff_mime(data[:SNIFF_BYTES])
    if mime is None:
        raise BrokenImage(f"is not an image (it starts 0x{data[:8].hex()})")
    if mime not in _PILLOW_FORMATS:
        raise BrokenImage(f"is {_LABELS[mime]}, which cannot be decoded here")
    if mime == "image/png":
        _check_png(data)
    else:
        _decode(data, _PILLOW_FORMATS[mime])
    return mime


def _check_png(data: bytes) -> None:
    try:
        image = _open(data, "PNG")
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise BrokenImage(_too_many_pixels(width, height))
        image.verify()  # every chunk's CRC, IDAT included, and the IEND chunk
    except BrokenImage:
        raise
    except Exception as exc:  # any Pillow failure on these bytes means bad data
        raise BrokenImage(f"is truncated or corrupt: {_reason(exc)}") from None


def _decode(data: bytes, pillow_format: str) -> Image.Image:
    """The first frame, fully decoded after a header-only size check (decompression bombs)."""
    try:
        image = _open(data, pillow_format)
    except Exception as exc:  # any Pillow failure on these bytes means bad data
        raise BrokenImage(f"is truncated or corrupt: {_reason(exc)}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise BrokenImage(_too_many_pixels(width, height))
    try:
        _open(data, pillow_format).verify()  # PNG: every chunk's CRC, IDAT included
        image.load()  # the whole first frame; LOAD_TRUNCATED_IMAGES stays False
    except Image.DecompressionBombError as exc:
        raise BrokenImage(f"is too large to decode safely: {exc}") from None
    except Exception as exc:
        raise BrokenImage(f"is truncated or corrupt: {_reason(exc)}") from None
    return image


def _prepare_raster(data: bytes, mime: str, digest: str, name: str) -> PreparedImage:
    label = _LABELS[mime]
    try:
        image = _decode(data, _PILLOW_FORMATS[mime])
    except BrokenImage as exc:
        raise _invalid(name, str(exc)) from None
    width, height = image.size

    notes: list[str] = []
    frames = getattr(image, "n_frames", 1)
    animated = bool(getattr(image, "is_animated", False)) and frames > 1
    target: Image.Image = image  # for animations: the first frame, loaded above
    encode_as: str | None = None  # None: the original bytes may go as they are
    quality = _JPEG_QUALITY
    if mime in ("image/gif", "image/bmp", "image/tiff", "image/avif"):
        if animated:
            many = "multi-page TIFF: first page only" if mime == "image/tiff" else None
            notes.append(many or f"animated {label}: first frame only")
        notes.append(f"converted from {label} to PNG")
        encode_as = "PNG"
    elif mime == "image/webp" and animated:
        notes.append("animated WebP: first frame only, sent as PNG")
        encode_as = "PNG"
    elif mime == "image/jpeg" and image.mode == "CMYK":
        notes.append("CMYK converted to RGB")
        target = image.convert("RGB")
        target.info.pop("icc_profile", None)  # a CMYK profile does not describe RGB pixels
        encode_as, quality = "JPEG", _CMYK_JPEG_QUALITY
    elif mime == "image/png" and (data[24:25] == b"\x10" or image.mode.startswith("I")):
        notes.append("16-bit PNG converted to 8-bit")
        encode_as = "PNG"

    too_wide = max(width, height) > MAX_SIDE
    if encode_as is None and not too_wide and len(data) <= MAX_SEND_BYTES:
        return PreparedImage(data, mime, digest, width, height, None)

    target = _normalise(target)
    if encode_as is None:  # re-encoded only because of its size
        encode_as = "PNG" if _has_alpha(target) else "JPEG"
    try:
        encoded, sent_as, (new_w, new_h) = _encode_within_limits(target, encode_as, quality)
    except Exception as exc:
        raise _invalid(name, f"could not be converted: {_reason(exc)}") from None
    if (new_w, new_h) != (width, height):
        notes.append(f"downscaled from {width}×{height} to {new_w}×{new_h}")
    elif not notes:
        notes.append(f"re-encoded as {sent_as} to fit under {_mb(MAX_SEND_BYTES)}")
    elif sent_as != encode_as:
        notes.append(f"sent as {sent_as} to fit under {_mb(MAX_SEND_BYTES)}")
    sent_mime = "image/png" if sent_as == "PNG" else "image/jpeg"
    return PreparedImage(encoded, sent_mime, digest, new_w, new_h, "; ".join(notes))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _normalise(image: Image.Image) -> Image.Image:
    """A mode PNG and JPEG writers and LANCZOS resizing all handle, 8 bits per channel."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        wide = image if mode == "I" else image.convert("I")
        return wide.point(lambda value: value * (1 / 257)).convert("L")
    if mode == "F":
        return image.convert("L")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if _has_alpha(image) else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    return image.convert("RGBA" if _has_alpha(image) else "RGB")


def _encode_within_limits(
    image: Image.Image, preferred: str, quality: int
) -> tuple[bytes, str, tuple[int, int]]:
    """Encode, downscaling (LANCZOS) to MAX_SIDE and then until the bytes fit MAX_SEND_BYTES;
    an opaque image whose PNG is too big is tried as JPEG before it is shrunk further."""
    width, height = image.size
    scale = min(1.0, MAX_SIDE / max(width, height))
    encode_as = preferred
    while True:
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        frame = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
        encoded = _encode(frame, encode_as, quality)
        if len(encoded) <= MAX_SEND_BYTES:
            return encoded, encode_as, size
        if encode_as == "PNG" and not _has_alpha(image):
            encode_as = "JPEG"
            continue
        if size == (1, 1):
            raise ValueError("the image does not fit the send limit at any size")
        scale *= min(0.9, math.sqrt(MAX_SEND_BYTES / len(encoded)))


def _encode(image: Image.Image, pillow_format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if pillow_format == "JPEG":
        frame = image if image.mode in ("L", "RGB") else image.convert("RGB")
        icc = image.info.get("icc_profile") if image.mode in ("L", "RGB") else None
        frame.save(buffer, "JPEG", quality=quality, icc_profile=icc)
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()
