"""Where translated images go, and how they get there without ever leaving half a file.

    output_path(out_dir, relative, language, variation, mime_type)
        -> out_dir/<relative folder>/<stem>.<language>.v<variation>.<ext>, never outside out_dir
    write_atomic(path, data)        temp file in the same folder, fsync, os.replace
    holds(path, sha256)             whether the file at `path` is exactly the output with that digest
    remove_stale_temp_files(out_dir) -> count of `.<name>.<hex>.tmp` files left by a crash

Re-exported by `imagelingo_cli.images`, so callers may import these from either module.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path, PurePath, PurePosixPath

from imagelingo_cli.digest import file_sha256

__all__ = [
    "TEMP_SUFFIX",
    "extension_for",
    "holds",
    "mime_type_of",
    "output_path",
    "remove_stale_temp_files",
    "write_atomic",
]

TEMP_SUFFIX = ".tmp"
_TOKEN_HEX = 16  # characters of randomness in a temp name
# `.{name}.{16 hex}.tmp`: only files named like ours are ever removed.
_TEMP_NAME = re.compile(rf"^\..+\.[0-9a-f]{{{_TOKEN_HEX}}}{re.escape(TEMP_SUFFIX)}$")

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heif": "heif",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tif",
    "image/avif": "avif",
}
_SAFE_SUBTYPE = re.compile(r"^[a-z0-9]{1,16}$")
_SAFE_LANGUAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,34}$")


def extension_for(mime_type: str) -> str:
    """The file extension (no dot) for a MIME type: image/jpeg -> "jpg", unknown -> "bin"."""
    mime = mime_type.split(";", 1)[0].strip().lower()
    if mime in _EXTENSIONS:
        return _EXTENSIONS[mime]
    kind, _, subtype = mime.partition("/")
    if kind == "image" and _SAFE_SUBTYPE.match(subtype):
        return subtype
    return "bin"


def mime_type_of(path: PurePath) -> str:
    """The MIME type an output's extension stands for (the inverse of `extension_for`)."""
    suffix = path.suffix.lower().lstrip(".")
    for mime, extension in _EXTENSIONS.items():
        if extension == suffix:
            return mime
    return f"image/{suffix}"


def output_path(
    out_dir: Path, relative: PurePosixPath, language: str, variation: int, mime_type: str
) -> Path:
    """`out_dir/<relative.parent>/<stem>.<language>.v<variation>.<ext>`; ValueError if it would
    land outside `out_dir` (absolute or `..` parts, empty name, odd language or variation)."""
    if relative.is_absolute() or relative.anchor:
        raise ValueError(f"relative path must not be absolute: {str(relative)!r}")
    parts = relative.parts
    if not parts or any(part in ("", ".", "..") or "\x00" in part for part in parts):
        raise ValueError(f"relative path must name a file inside the folder: {str(relative)!r}")
    if "\\" in str(relative) and os.sep == "\\":
        raise ValueError(f"relative path must use '/' separators: {str(relative)!r}")
    if not _SAFE_LANGUAGE.match(language):
        raise ValueError(f"language must be a plain tag like 'en' or 'pt-BR': {language!r}")
    if isinstance(variation, bool) or not isinstance(variation, int) or variation < 1:
        raise ValueError(f"variation must be a positive integer: {variation!r}")
    name = f"{relative.stem}.{language}.v{variation}.{extension_for(mime_type)}"
    target = out_dir.joinpath(*parts[:-1], name)
    root = os.path.abspath(out_dir)
    resolved = os.path.abspath(target)
    if os.path.commonpath([root, resolved]) != root or resolved == root:
        raise ValueError(f"output path {resolved!r} escapes the output folder {root!r}")
    return target


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` so a reader sees the old file or the whole new one, never a part.

    The temp file `.{name}.{random}.tmp` lives in the same folder (same file system, so
    `os.replace` is atomic); it is fsynced before the rename and removed if anything fails.
    The folder is not fsynced (it would double the cost of a write): after a power loss the
    rename may be missing, never half a file, and a completed variation whose output is
    missing is translated again by the next run.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{secrets.token_hex(_TOKEN_HEX // 2)}{TEMP_SUFFIX}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temp, flags, mode)  # the umask applies, as for any new file
    try:
        with open(fd, "wb", closefd=True) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def holds(path: Path, sha256: str) -> bool:
    """Whether `path` is a regular file whose bytes have this SHA-256 (hex): an output written
    by a run that died before recording it, found whole. `write_atomic` never leaves a part
    of a file at its path, so anything else there is another file."""
    try:
        return path.is_file() and file_sha256(path) == sha256
    except OSError:
        return False


def remove_stale_temp_files(out_dir: Path) -> int:
    """Delete the `.{name}.{hex}.tmp` files a crashed run left under `out_dir`; return how many.

    Only call it when no other run is writing into `out_dir`: a live temp file looks the same.
    """
    removed = 0
    if not out_dir.is_dir():
        return 0
    for folder, _dirs, files in os.walk(out_dir):
        for name in files:
            if not _TEMP_NAME.match(name):
                continue
            candidate = os.path.join(folder, name)
            if not os.path.isfile(candidate) or os.path.islink(candidate):
                continue
            try:
                os.unlink(candidate)
            except FileNotFoundError:
                continue
            removed += 1
    return removed
