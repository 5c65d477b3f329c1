"""Thumbnails for the report: small WebP copies made with Pillow, upright (EXIF orientation
applied), written to the report's `<name>_files/` folder or embedded as data: URIs.

Made on a thread pool (Pillow releases the GIL while it decodes, resizes and encodes); a
thumbnail already in the folder for the same file, size and modification time is reused.
A file that is missing or cannot be decoded here (HEIC, say) gets a preview with a reason
instead of an image.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from imagelingo_cli.images import MAX_PIXELS
from imagelingo_cli.outputs import write_atomic

BOX = 320  # longest side, in pixels: a card shows it about 250 CSS pixels wide
QUALITY = 78
MIME = "image/webp"
SUFFIX = ".webp"

Progress = Callable[[int, int], None]  # (done, total), called on the caller's thread


@dataclass(frozen=True)
class Preview:
    """How the report shows one image file: a thumbnail, or why there is none."""

    src: str | None  # relative URL or data: URI
    width: int = 0
    height: int = 0
    problem: str | None = None


@dataclass(frozen=True)
class _Thumb:
    data: bytes | None  # None: reused from the folder
    width: int
    height: int


class Unpreviewable(Exception):
    """This file cannot be shown as a thumbnail; the message says why, for the reader."""


def make_previews(
    files: Iterable[Path],
    *,
    folder: Path | None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> dict[Path, Preview]:
    """A preview per distinct file: a thumbnail in `folder` (its URL relative to the folder's
    parent, where the report is), or embedded when `folder` is None."""
    wanted = list(dict.fromkeys(files))
    previews: dict[Path, Preview] = {}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    workers = workers or min(8, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="thumbnail") as pool:
        futures = {pool.submit(_preview, path, folder): path for path in wanted}
        for done, future in enumerate(as_completed(futures), start=1):
            previews[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(wanted))
    return previews


def _preview(path: Path, folder: Path | None) -> Preview:
    try:
        if folder is None:
            thumb = _thumbnail(path)
            assert thumb.data is not None
            src = f"data:{MIME};base64,{base64.b64encode(thumb.data).decode('ascii')}"
        else:
            target = folder / (_key(path) + SUFFIX)
            thumb = _reused(target) or _thumbnail(path)
            if thumb.data is not None:
                write_atomic(target, thumb.data)
            src = urllib.parse.quote(f"{folder.name}/{target.name}")
    except Unpreviewable as exc:
        return Preview(None, problem=str(exc))
    return Preview(src, thumb.width, thumb.height)


def _key(path: Path) -> str:
    """Names the thumbnail of this file as it is now (path, size, modification time) and as
    this version makes thumbnails."""
    try:
        info = path.stat()
    except OSError:
        return hashlib.sha256(os.fsencode(path)).hexdigest()[:24]
    stamp = f"{info.st_size}:{info.st_mtime_ns}:{BOX}:{QUALITY}".encode()
    return hashlib.sha256(os.fsencode(path) + b"\0" + stamp).hexdigest()[:24]


def _reused(target: Path) -> _Thumb | None:
    """The thumbnail made earlier for the same file, if it is there (only its header is read)."""
    try:
        with Image.open(target) as image:
            return _Thumb(None, image.width, image.height)
    except (OSError, ValueError):
        return None


def _thumbnail(path: Path) -> _Thumb:
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise Unpreviewable(f"too large to preview ({image.width}×{image.height})")
            image.draft("RGB", (BOX * 2, BOX * 2))  # JPEG: decode at a fraction of its size
            # A fast box reduction, then LANCZOS for the last step; turned upright only once
            # small (the box is square, so turning commutes with it; a full-size copy does not).
            image.thumbnail((BOX, BOX), Image.Resampling.LANCZOS, reducing_gap=1.0)
            upright = ImageOps.exif_transpose(image)
            mode = "RGBA" if upright.has_transparency_data else "RGB"
            frame = upright.convert(mode) if upright.mode != mode else upright
            buffer = io.BytesIO()
            frame.save(buffer, "WEBP", quality=QUALITY, method=0)  # method 0: 4x faster, same look
            return _Thumb(buffer.getvalue(), frame.width, frame.height)
    except Unpreviewable:
        raise
    except FileNotFoundError:
        raise Unpreviewable("file not found") from None
    except UnidentifiedImageError:
        raise Unpreviewable("no preview for this format") from None
    except Exception as exc:  # any Pillow failure on these bytes: one file, not the report
        raise Unpreviewable(f"cannot be previewed: {str(exc) or type(exc).__name__}") from None
