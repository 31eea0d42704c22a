"""The icon files in resources/icons are what packaging/make_icons.py makes from the SVGs."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from types import ModuleType

import pytest
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage, QImageReader
from pytestqt.qtbot import QtBot

from engine.models.catalog import resources_dir

ICONS = resources_dir() / "icons"


def _load_make_icons() -> ModuleType:
    # By path: the folder is not a package, and `packaging` is also a PyPI library.
    path = Path(__file__).resolve().parents[2] / "packaging" / "make_icons.py"
    spec = importlib.util.spec_from_file_location("hearth_make_icons", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_icons = _load_make_icons()
ICNS_TYPES, ICO_SIZES, PNG_SIZES = make_icons.ICNS_TYPES, make_icons.ICO_SIZES, make_icons.PNG_SIZES


def mean_difference(a: QImage, b: QImage) -> float:
    """Mean absolute difference per channel (0-255) of two same-size images."""
    assert (a.width(), a.height()) == (b.width(), b.height())
    a = a.convertToFormat(QImage.Format.Format_RGBA8888)
    b = b.convertToFormat(QImage.Format.Format_RGBA8888)
    pa, pb = bytes(a.constBits()), bytes(b.constBits())  # type: ignore[call-overload]
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


@pytest.fixture(scope="module")
def fresh(qapp: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("icons")
    make_icons.make_icons(out)
    return out


@pytest.mark.parametrize("size", PNG_SIZES)
def test_committed_pngs_match_the_svg_source(qtbot: QtBot, fresh: Path, size: int) -> None:
    committed = QImage(str(ICONS / f"hearth-{size}.png"))
    assert not committed.isNull(), f"hearth-{size}.png is missing: run packaging/make_icons.py"
    rendered = QImage(str(fresh / f"hearth-{size}.png"))
    # A small tolerance: another Qt version may antialias edges a little differently.
    assert mean_difference(committed, rendered) < 2.0, "run packaging/make_icons.py"


def test_ico_holds_every_windows_size(qtbot: QtBot) -> None:
    data = (ICONS / "hearth.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind, count) == (0, 1, len(ICO_SIZES))
    sizes = []
    for i in range(count):
        width, _h, _c, _r, _planes, bits, length, offset = struct.unpack_from(
            "<BBBBHHII", data, 6 + 16 * i
        )
        sizes.append(width or 256)
        assert bits == 32 and data[offset : offset + 8] == b"\x89PNG\r\n\x1a\n"
        assert offset + length <= len(data)
    assert sizes == list(ICO_SIZES)
    # ...and Qt's own ICO reader (as Windows Explorer would) decodes every entry.
    reader = QImageReader(str(ICONS / "hearth.ico"))
    decoded = []
    for _ in range(reader.imageCount()):
        decoded.append(reader.read().width())
        reader.jumpToNextImage()
    assert sorted(decoded) == sorted(ICO_SIZES)


def test_icns_holds_every_macos_size(qtbot: QtBot) -> None:
    data = (ICONS / "hearth.icns").read_bytes()
    assert data[:4] == b"icns" and struct.unpack_from(">I", data, 4)[0] == len(data)
    offset, kinds = 8, []
    while offset < len(data):
        kind, length = data[offset : offset + 4], struct.unpack_from(">I", data, offset + 4)[0]
        png = data[offset + 8 : offset + length]
        image = QImage()
        assert image.loadFromData(png, "PNG"), kind  # type: ignore[call-overload]
        kinds.append((kind, image.width()))
        offset += length
    assert kinds == list(ICNS_TYPES)
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    # ...and Qt's own ICNS reader (Apple's format as Qt implements it) finds them all.
    reader = QImageReader(buffer, b"icns")  # type: ignore[call-overload]
    decoded = set()
    for _ in range(reader.imageCount()):
        decoded.add(reader.read().width())
        reader.jumpToNextImage()
    assert decoded == {size for _kind, size in ICNS_TYPES}
