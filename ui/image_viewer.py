"""An attached image, larger (issue 13): opened by clicking its thumbnail in the chat."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QResizeEvent, QShortcut
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget


class ImageViewer(QDialog):
    """The image scaled to fit the dialog (never above its own size); Esc closes."""

    def __init__(self, png: bytes, title: str, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("image_viewer")
        self.setWindowTitle(title)
        self._pixmap = QPixmap.fromImage(QImage.fromData(png))
        self.picture = QLabel()
        self.picture.setObjectName("image_viewer_picture")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(64, 64)
        self.picture.setAccessibleName(title)
        note = QLabel(caption)
        note.setObjectName("image_viewer_caption")
        note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(note)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.close)
        size = self._pixmap.size()
        self.resize(min(size.width() + 40, 1100), min(size.height() + 70, 800))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._pixmap.isNull():
            return
        area = self.picture.size()
        shown = self._pixmap
        if shown.width() > area.width() or shown.height() > area.height():
            shown = shown.scaled(
                area, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )  # fmt: skip
        self.picture.setPixmap(shown)
