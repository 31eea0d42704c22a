"""Attached image files checked and decoded by Pillow (engine/images.py): every
supported format is read, every bad file gets a sentence naming it. Real files,
written by Pillow here."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine.images import MAX_PIXELS, ImageError, image_part, rgb_pixels, thumbnail_png


def encoded(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **kw: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 200 if mode in ("L", "1", "P") else (250, 10, 10)).save(out, fmt, **kw)
    return out.getvalue()


def noisy_jpeg() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((200, 200), 60).convert("RGB").save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"),
     ("GIF", "image/gif"), ("BMP", "image/bmp")],
)  # fmt: skip
def test_each_supported_format_is_described(fmt: str, mime: str) -> None:
    data = encoded(fmt)
    part = image_part(data, f"pic.{fmt.lower()}")
    assert (part.mime, part.width, part.height, part.size) == (mime, 64, 48, len(data))
    assert part.data == data  # the original is kept, unchanged
    assert len(part.sha256) == 64


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    width, height, rgb = rgb_pixels(out.getvalue(), 10_000)
    assert (width, height) == (8, 8)
    assert rgb[:3][0] > 200 and rgb[:3][2] < 50  # red, the first frame


def test_transparency_is_shown_over_white() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(out, "PNG")
    assert rgb_pixels(out.getvalue(), 100)[2][:3] == b"\xff\xff\xff"


def test_a_large_image_is_scaled_down_for_the_model_keeping_its_shape() -> None:
    width, height, rgb = rgb_pixels(encoded("JPEG", (4000, 3000)), 400_000)
    assert width * height <= 400_000 and abs(width / height - 4 / 3) < 0.02
    assert len(rgb) == width * height * 3
    thumb = Image.open(io.BytesIO(thumbnail_png(encoded("PNG", (400, 100)), 96)))
    assert thumb.size == (96, 24)


@pytest.mark.parametrize(
    ("data", "name", "says"),
    [
        (b"", "empty.png", "“empty.png” is empty"),
        (b"%PDF-1.4 hello", "notes.pdf", "“notes.pdf” is not an image Hearth can read"),
        (encoded("PNG", (300, 300))[:200], "cut.png", "“cut.png” is damaged or cut short"),
        (noisy_jpeg()[: len(noisy_jpeg()) // 2], "cut.jpg", "damaged or cut short"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "", "The pasted image is not an image"),
        (encoded("TIFF"), "scan.tiff", None),  # read, though not offered in the dialog
    ],
)
def test_bad_files_get_a_sentence(data: bytes, name: str, says: str | None) -> None:
    if says is None:
        assert image_part(data, name).mime == "image/tiff"
        return
    with pytest.raises(ImageError) as caught:
        image_part(data, name)
    assert says in caught.value.message
    assert caught.value.message.endswith(".")


def test_an_enormous_image_is_refused_before_it_is_decoded() -> None:
    side = int(MAX_PIXELS**0.5) + 100  # ~65 megapixels, a 1-bit PNG of a few kB
    data = encoded("PNG", (side, side), mode="1")
    with pytest.raises(ImageError, match=r"megapixels\); Hearth reads images up to 64"):
        image_part(data, "panorama.png")
