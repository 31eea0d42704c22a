"""The images waiting to be sent with the next message (issue 13): a row of
thumbnails above the composer, each removable before sending, and the attach button.

Widgets only: the app decides what a file is (``engine.images``) and hands over a
PNG thumbnail per image; the tray shows them in order and says which the person
removed. Hidden while empty.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QBuffer, QIODevice, QMimeData, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

THUMB = 64  # pixels: big enough to tell screenshots apart, small enough for a row of six


class _Tile(QWidget):
    remove_clicked = Signal(str)

    def __init__(self, key: str, name: str, png: bytes, tip: str) -> None:
        super().__init__()
        self.key = key
        self.setObjectName("attachment_tile")
        picture = QLabel()
        picture.setObjectName("attachment_thumbnail")
        image = QImage.fromData(png)
        picture.setPixmap(
            QPixmap.fromImage(image).scaled(
                THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )  # fmt: skip
        picture.setFixedSize(THUMB, THUMB)
        picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        picture.setToolTip(tip)
        picture.setAccessibleName(f"Attached image {name}")
        remove = QToolButton()
        remove.setObjectName("attachment_remove")
        remove.setText("×")
        remove.setAutoRaise(True)
        remove.setToolTip(f"Remove {name}")
        remove.setAccessibleName(f"Remove {name}")
        remove.clicked.connect(lambda: self.remove_clicked.emit(self.key))
        self.remove_button = remove
        caption = QLabel(_short(name))
        caption.setObjectName("attachment_name")
        caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        caption.setMaximumWidth(THUMB + 24)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.setSpacing(0)
        top.addWidget(picture)
        top.addWidget(remove, 0, Qt.AlignmentFlag.AlignTop)
        column = QVBoxLayout(self)
        column.setContentsMargins(2, 2, 2, 2)
        column.setSpacing(1)
        column.addLayout(top)
        column.addWidget(caption)


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


class AttachmentTray(QWidget):
    """Thumbnails of the images to send. ``removed(key)`` when one is taken out."""

    removed = Signal(str)
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachment_tray")
        self.setAccessibleName("Images to send")
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.setSpacing(6)
        self._row.addStretch(1)
        self._tiles: dict[str, _Tile] = {}
        self.setVisible(False)

    def add(self, key: str, name: str, png: bytes, tip: str) -> None:
        """Show one more image (a key already shown is not shown twice)."""
        if key in self._tiles:
            return
        tile = _Tile(key, name, png, tip)
        tile.remove_clicked.connect(self._remove)
        self._tiles[key] = tile
        self._row.insertWidget(self._row.count() - 1, tile)
        self.setVisible(True)
        self.changed.emit()

    def keys(self) -> list[str]:
        return list(self._tiles)

    def tile(self, key: str) -> _Tile:
        return self._tiles[key]

    def clear(self) -> None:
        for key in list(self._tiles):
            self._drop(key)
        self.changed.emit()

    def _remove(self, key: str) -> None:
        self._drop(key)
        self.removed.emit(key)
        self.changed.emit()

    def _drop(self, key: str) -> None:
        tile = self._tiles.pop(key, None)
        if tile is not None:
            tile.setParent(None)
            tile.deleteLater()
        self.setVisible(bool(self._tiles))


IMAGE_PATTERNS = "*.png *.jpg *.jpeg *.webp *.gif *.bmp *.heic *.heif"


def media_of(source: QMimeData) -> tuple[list[str], list[bytes]]:
    """What a paste or a drop brings besides text: local files, and image data (as
    PNG, e.g. a screenshot copied to the clipboard). ([], []) for plain text."""
    if source.hasUrls():
        paths = [url.toLocalFile() for url in source.urls() if url.isLocalFile()]
        if paths:
            return paths, []
    if source.hasImage():
        image = source.imageData()
        if isinstance(image, QImage) and not image.isNull():
            buffer = QBuffer()
            buffer.open(QIODevice.OpenModeFlag.WriteOnly)
            image.save(buffer, "PNG")  # type: ignore[call-overload]  # (the stub is wrong)
            return [], [bytes(buffer.data().data())]
    return [], []


def brings_media(source: QMimeData) -> bool:
    """Cheap: whether a drag may bring files or an image (``media_of`` on drop)."""
    return source.hasImage() or any(url.isLocalFile() for url in source.urls())


IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".heic", ".heif", ".tif", ".tiff", ".avif"}
)


def route_files(
    paths: list[str],
    images: list[bytes],
    to_images: Callable[[list[str], list[bytes]], object],
    to_documents: Callable[[list[str]], object],
) -> None:
    """Images (by their file name, and image data) to the model's eyes; every other
    file to the documents (ui.attachment_bar)."""
    seen = [p for p in paths if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    read = [p for p in paths if p not in seen]
    if seen or images:
        to_images(seen, images)
    if read:
        to_documents(read)
