"""The simulator's "translation": the input image, visibly marked with language and variation.

`decode_image` opens what the client sent (Pillow must fully decode it, as the real API must);
`mark_image` returns an image of the same width and height with a semi-opaque band across the
bottom 18 % reading e.g. ``ES · Spanish · variation 2``, tinted by variation so outputs can be
told apart at a glance, as PNG or JPEG (the format the model answers in). `Rendering` makes
one request's images on demand: the final one, and a half-size unmarked draft standing for a
thinking model's interim render. Only Pillow's bundled font is used, never a system font.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

__all__ = ["Rendering", "UndecodableImage", "decode_image", "label_for", "mark_image"]

# One tint per variation (cycled): blue, purple, green, orange, pink, cyan, amber, indigo.
_TINTS: tuple[tuple[int, int, int], ...] = (
    (37, 99, 235),
    (147, 51, 234),
    (5, 150, 105),
    (234, 88, 12),
    (219, 39, 119),
    (8, 145, 178),
    (202, 138, 4),
    (79, 70, 229),
)
_BAND_SHARE = 0.18
_HEIF_BRANDS = (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1", b"ftypmsf1", b"ftypheif")


class UndecodableImage(ValueError):
    """The bytes are not an image Pillow can decode."""


def decode_image(data: bytes, mime_type: str) -> Image.Image:
    """Fully decode `data`. HEIC/HEIF that Pillow cannot read (no plugin) becomes a blank canvas."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return opened.copy()
    except Exception as exc:  # Pillow raises many types for corrupt data
        if mime_type in ("image/heic", "image/heif") and data[4:12] in _HEIF_BRANDS:
            return Image.new("RGB", (1024, 1024), (200, 200, 200))
        raise UndecodableImage(str(exc) or type(exc).__name__) from exc


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def _font(label: str, band_height: int, width: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    size = max(1, int(band_height * 0.4))
    while True:
        font = ImageFont.load_default(size=size)
        if size <= 6 or font.getlength(label) <= width * 0.94:
            return font
        size = max(6, int(size * 0.85))


def label_for(language_tag: str | None, language_name: str | None, variation: int) -> str:
    """The band's text: ``ES · Spanish · variation 2``."""
    pieces = [p for p in ((language_tag or "").upper(), language_name or "") if p]
    if not pieces:
        pieces = ["TRANSLATED"]
    return " · ".join([*pieces, f"variation {variation}"])


def mark_image(
    image: Image.Image,
    *,
    language_tag: str | None,
    language_name: str | None,
    variation: int,
    mime_type: str = "image/png",
) -> bytes:
    """`image` (same size) with the band drawn, encoded as `mime_type` (PNG keeps transparency)."""
    mode = "RGBA" if _has_alpha(image) and mime_type == "image/png" else "RGB"
    out = image.copy() if image.mode == mode else image.convert(mode)
    width, height = out.size
    band = max(1, round(height * _BAND_SHARE))
    top = height - band
    tint = _TINTS[(max(1, variation) - 1) % len(_TINTS)]
    draw = ImageDraw.Draw(out, "RGBA")  # "RGBA" drawing blends semi-opaque fills
    draw.rectangle((0, top, width, height), fill=(tint[0] // 4, tint[1] // 4, tint[2] // 4, 205))
    stripe = max(1, band // 10)
    draw.rectangle((0, top, width, top + stripe - 1), fill=(*tint, 255))
    label = label_for(language_tag, language_name, variation)
    font = _font(label, band, width)
    centre = (width / 2, top + stripe + (band - stripe) / 2)
    draw.text(centre, label, font=font, fill=(255, 255, 255, 255), anchor="mm")
    return _encode(out, mime_type)


def _encode(image: Image.Image, mime_type: str) -> bytes:
    buffer = io.BytesIO()
    if mime_type == "image/jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=90)
    else:
        image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class Rendering:
    """One request's translated image, encoded on demand in the format an answer needs."""

    image: Image.Image
    language_tag: str | None
    language_name: str | None
    variation: int

    def final(self, mime_type: str) -> bytes:
        return mark_image(
            self.image,
            language_tag=self.language_tag,
            language_name=self.language_name,
            variation=self.variation,
            mime_type=mime_type,
        )

    def draft(self, mime_type: str) -> bytes:
        """The input at half size, unmarked: what an interim render is to the final one."""
        width, height = self.image.size
        half = self.image.resize((max(1, width // 2), max(1, height // 2)))
        return _encode(half if half.mode in ("RGB", "RGBA") else half.convert("RGB"), mime_type)
