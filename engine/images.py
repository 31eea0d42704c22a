"""Image files a person attaches (issue 13): checked, described, decoded, made small.

Pillow reads them (PNG, JPEG, WebP, GIF's first frame, BMP, and HEIC where the
installed Pillow can). Every way a file can be wrong (not an image, empty, cut
short, enormous) becomes an ``ImageError`` with a sentence that names the file and
says what to do; nothing here crashes on bad bytes. A leaf: Pillow and the engine's
types only, so the window, the command line and the engine share one set of rules.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import KnownError
from engine.types import ImagePart

if TYPE_CHECKING:  # Pillow is imported when an image is read, not at start-up
    from PIL.Image import Image as PilImage

__all__ = [
    "MAX_BYTES",
    "MAX_PIXELS",
    "ImageError",
    "image_part",
    "read_image_file",
    "rgb_pixels",
    "thumbnail_png",
]

MAX_BYTES = 50 << 20  # larger files are photos of another kind (scans, RAW): refused
# Decoding 64 megapixels takes ~200 MB; a 100-megapixel panorama is refused with a
# sentence rather than stalling the app. The model sees ~0.4 megapixels anyway.
MAX_PIXELS = 64_000_000
_MIMES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # phone JPEGs with a depth map: the first frame is the photo
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "DIB": "image/bmp",
    "HEIF": "image/heic",
    "AVIF": "image/avif",
    "TIFF": "image/tiff",
}
SUPPORTED = "PNG, JPEG, WebP, GIF or BMP"


class ImageError(KnownError):
    """A file that cannot be shown to a model, with why and what to do."""


def _label(name: str) -> str:
    return f"“{name}”" if name else "The pasted image"


def image_part(data: bytes, name: str = "") -> ImagePart:
    """Check ``data`` and describe it as an attachment (its bytes included, unchanged:
    the original is kept; only what the model reads is made smaller).

    Raises ``ImageError`` for an empty, oversized, unknown, damaged or truncated file.
    """
    label = _label(name)
    if not data:
        raise ImageError(f"{label} is empty (0 bytes), so there is nothing to show the model.")
    if len(data) > MAX_BYTES:
        raise ImageError(
            f"{label} is {len(data) >> 20} MB; Hearth takes images up to {MAX_BYTES >> 20} MB. "
            "Save a smaller copy (a screenshot, or export it at a lower resolution) and "
            "attach that."
        )
    img = _open(data, label)
    fmt = img.format or ""
    if fmt not in _MIMES:
        raise ImageError(
            f"{label} is a {fmt or 'kind of'} image Hearth cannot read. "
            f"Save it as {SUPPORTED} and attach it again."
        )
    width, height = img.size
    _check_pixels(width, height, label)
    _decode(img, label)  # a cut-off or damaged file fails here, not at the model
    return ImagePart(
        sha256=hashlib.sha256(data).hexdigest(),
        name=name,
        mime=_MIMES[fmt],
        size=len(data),
        width=width,
        height=height,
        data=data,
    )


def read_image_file(path: Path) -> ImagePart:
    """An image file, checked (``ImageError`` with a sentence naming it)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:  # said before reading 2 GB of a video by mistake
            raise ImageError(
                f"“{path.name}” is {size >> 20} MB; Hearth takes images up to "
                f"{MAX_BYTES >> 20} MB. Save a smaller copy and attach that."
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(
            f"Hearth could not read “{path.name}” ({exc.strerror or exc}). Check that the "
            "file is still there and that you may open it.",
            detail=repr(exc),
        ) from exc
    return image_part(data, path.name)


def _open(data: bytes, label: str) -> PilImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # MAX_PIXELS is checked by us, with a sentence; Pillow's own bomb check
            # would warn (or raise) first with a developer's message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(
            f"{label} is not an image Hearth can read. Attach a {SUPPORTED} file.",
            detail=repr(e),
        ) from e


def _check_pixels(width: int, height: int, label: str) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{label} has no pixels ({width}×{height}).")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{label} is {width}×{height} ({width * height / 1e6:.0f} megapixels); Hearth "
            f"reads images up to {MAX_PIXELS // 1_000_000} megapixels. Save a smaller copy "
            "and attach that."
        )


def _decode(img: PilImage, label: str) -> PilImage:
    """The first frame, loaded and in RGB (transparency over white)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.seek(0)
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(back, rgba).convert("RGB")
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ImageError(
            f"{label} is damaged or cut short (only part of the file is there). Open it in "
            "an image viewer and save it again, or attach another copy.",
            detail=repr(e),
        ) from e


def rgb_pixels(data: bytes, max_pixels: int, name: str = "") -> tuple[int, int, bytes]:
    """The image's first frame as packed RGB bytes, scaled down (never up) to at most
    ``max_pixels`` pixels with its aspect ratio kept: (width, height, bytes)."""
    label = _label(name)
    img = _open(data, label)
    from PIL import Image

    _check_pixels(*img.size, label)
    if img.format == "JPEG" and max_pixels > 0:
        # Decode at 1/2, 1/4 or 1/8 scale when that still leaves enough pixels: a
        # 12-megapixel photo loads in a fraction of the time and memory.
        w, h = img.size
        scale = (max_pixels / (w * h)) ** 0.5
        if scale < 0.5:
            img.draft("RGB", (max(1, int(w * scale * 2)), max(1, int(h * scale * 2))))
    rgb = _decode(img, label)
    w, h = rgb.size
    if max_pixels > 0 and w * h > max_pixels:
        scale = (max_pixels / (w * h)) ** 0.5
        rgb = rgb.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BICUBIC)
    return rgb.width, rgb.height, rgb.tobytes()


def thumbnail_png(data: bytes, size: int, name: str = "") -> bytes:
    """A PNG at most ``size`` pixels on its longer side (for thumbnails)."""
    from PIL import Image

    img = _open(data, _label(name))
    _check_pixels(*img.size, _label(name))
    if img.format == "JPEG":
        img.draft("RGB", (size * 2, size * 2))
    rgb = _decode(img, _label(name))
    rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, "PNG")
    return out.getvalue()
