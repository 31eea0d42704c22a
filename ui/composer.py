"""The message box: Enter sends, Shift+Enter starts a new line."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from ui.attachment_tray import brings_media, media_of, route_files

MIN_LINES, MAX_LINES = 2, 8


class Composer(QPlainTextEdit):
    submitted = Signal()
    edit_last_requested = Signal()  # Up in an empty composer
    edit_cancelled = Signal()  # Esc while editing (the window's Esc action emits it)
    files_pasted = Signal(list)  # local files pasted or dropped here (attachments)
    # Images pasted or dropped (files, or image data as PNG): the app attaches them,
    # or says why not (issue 13).
    media_received = Signal(list, list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.setAccessibleName("Message")
        self.setPlaceholderText("Message Hearth…  (Enter to send, Shift+Enter for a new line)")
        self.setTabChangesFocus(True)
        self.document().setDocumentMargin(8)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.document().documentLayout().documentSizeChanged.connect(self._fit_height)
        self._fit_height()

    def _fit_height(self, *_args: object) -> None:
        """Grow with the text from two lines up to eight, then scroll."""
        lines = max(MIN_LINES, min(MAX_LINES, int(self.document().size().height())))
        margins = self.contentsMargins().top() + self.contentsMargins().bottom()
        doc_margin = 2 * int(self.document().documentMargin())
        self.setFixedHeight(lines * self.fontMetrics().lineSpacing() + margins + doc_margin + 2)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Up and not self.toPlainText():
            self.edit_last_requested.emit()
            return
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = event.modifiers()
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
                return
            if not mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
                self.submitted.emit()
                return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return brings_media(source) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        """A file copied in a file manager and pasted (or dropped) here is attached, not
        typed as its path."""
        paths, images = media_of(source)
        if paths or images:  # images to see, other files to read
            route_files(paths, images, self.media_received.emit, self.files_pasted.emit)
            return
        super().insertFromMimeData(source)

    def text(self) -> str:
        return self.toPlainText()
