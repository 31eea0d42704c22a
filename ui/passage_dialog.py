"""A cited passage, opened from a reply: which document, where in it, and the text."""

from __future__ import annotations

import html

from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["PassageDialog"]


class PassageDialog(QDialog):
    """Passage ``number`` of a reply: its document, page or lines, section and text.
    "Open document" is offered when the original file can be shown (it is stored)."""

    def __init__(
        self,
        number: int,
        document: str,
        location: str,
        heading: str,
        text: str,
        *,
        can_open: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("passage_dialog")
        where = f"{document}, {location}" if location else document
        self.setWindowTitle(f"[{number}] {where}")
        title = QLabel(f"<b>[{number}] {html.escape(document)}</b>")
        place = QLabel(" — ".join(p for p in (location, heading) if p))
        place.setForegroundRole(QPalette.ColorRole.PlaceholderText)  # muted
        place.setWordWrap(True)
        body = QPlainTextEdit(text)
        body.setReadOnly(True)
        body.setObjectName("passage_text")
        body.setAccessibleName("Passage")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(text))
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button = QPushButton("Open document")
        self.open_button.setToolTip(f"Open {document} in the app your system uses for it")
        buttons.addButton(self.open_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button.setVisible(can_open)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(place)
        layout.addWidget(body, 1)
        layout.addWidget(buttons)
        self.resize(560, 380)
