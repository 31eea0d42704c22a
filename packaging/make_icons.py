"""Render Hearth's icon from its SVG source into every size and format the installers use.

    .venv/bin/python packaging/make_icons.py [--out DIR]

Writes into resources/icons/ (or DIR): ``hearth-<N>.png`` for each size below,
``hearth.ico`` (Windows: 16-256 px, PNG-compressed entries, Vista and later)
and ``hearth.icns`` (macOS: 16-1024 px, PNG entries, 10.7 and later). Qt's SVG
renderer draws them offscreen, so no image tool beyond PySide6 is needed. The
.ico and .icns containers are simple enough to write by hand: a header, a
directory, then the PNG files as they are.

Small sizes come from ``hearth-small.svg`` when it exists: at 16-32 px the
full drawing's fine detail turns to mush, so a simpler one is drawn for them.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
SMALL_MAX = 32  # sizes up to this use hearth-small.svg
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS element types holding PNG data, by pixel size (@2x types reuse the bigger render).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),  # 16@2x
    (b"icp6", 64),
    (b"ic12", 64),  # 32@2x
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic13", 256),  # 128@2x
    (b"ic09", 512),
    (b"ic14", 512),  # 256@2x
    (b"ic10", 1024),  # 512@2x
)


def source_for(size: int, icons: Path = ICONS) -> Path:
    small = icons / "hearth-small.svg"
    return small if size <= SMALL_MAX and small.is_file() else icons / "hearth.svg"


def render(svg: Path, size: int) -> QImage:
    """The SVG drawn into a transparent ``size`` x ``size`` image."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG file")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):  # type: ignore[call-overload]  # stubs say bytes; only str works
        raise SystemExit("Qt could not encode a PNG")
    buffer.close()
    return bytes(data.data())


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICO file whose entries are PNGs (ICONDIR, ICONDIRENTRY x n, data)."""
    sizes = [s for s in ICO_SIZES if s in pngs]
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        blob = pngs[size]
        side = 0 if size >= 256 else size  # 0 means 256 in the ICO directory
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(blob), offset)
        blobs += blob
        offset += len(blob)
    return header + entries + blobs


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """An ICNS file: 'icns' + total length, then (type, length, PNG) elements (big-endian)."""
    body = b""
    for kind, size in ICNS_TYPES:
        blob = pngs[size]
        body += kind + struct.pack(">I", 8 + len(blob)) + blob
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def make_icons(out: Path, icons: Path = ICONS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    pngs = {size: png_bytes(render(source_for(size, icons), size)) for size in PNG_SIZES}
    written = []
    for size, blob in pngs.items():
        written.append(out / f"hearth-{size}.png")
        written[-1].write_bytes(blob)
    written.append(out / "hearth.ico")
    written[-1].write_bytes(ico_bytes(pngs))
    written.append(out / "hearth.icns")
    written[-1].write_bytes(icns_bytes(pngs))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ICONS, help="where to write")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no screen needed
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    for path in make_icons(args.out):
        print(path)
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
