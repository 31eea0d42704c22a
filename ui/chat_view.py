"""The conversation, rendered into one QTextDocument.

Streaming is append-only: text waiting to be shown collects in a buffer and a
30 Hz timer inserts it at the end of the document, so per-token work in the GUI
does not grow with the reply or the chat. The view scrolls along only while
the person is already at the bottom.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QFont, QPalette, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

from engine.types import MessageStatus, Role, StoredMessage

REPAINT_INTERVAL_MS = 33

_STATUS_NOTES = {
    MessageStatus.STOPPED: "Stopped.",
    MessageStatus.LENGTH: "Cut off at the reply length limit.",
    MessageStatus.FAILED: "This reply failed part-way; the text above is what was written.",
    MessageStatus.INTERRUPTED: "Hearth closed while this reply was being written.",
}


class ChatView(QTextBrowser):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chat_view")
        self.setAccessibleName("Conversation")
        self.setOpenLinks(False)  # links open only on an explicit click, handled elsewhere
        self.setOpenExternalLinks(False)
        self.document().setDocumentMargin(16)
        self.setUndoRedoEnabled(False)
        self._assistant_name = "Assistant"
        self._pending: list[str] = []
        self._streaming = False
        self._stream_text_len = 0
        self._timer = QTimer(self)
        self._timer.setInterval(REPAINT_INTERVAL_MS)
        self._timer.timeout.connect(self._flush)

    # --- whole conversations -------------------------------------------------
    def set_assistant_name(self, name: str) -> None:
        self._assistant_name = name

    def show_messages(self, messages: list[StoredMessage]) -> None:
        self._stop_stream_timer()
        self.clear()
        cursor = self._end_cursor()
        cursor.beginEditBlock()
        for msg in messages:
            self._insert_header(cursor, msg.role)
            self._insert_body(cursor, msg.content)
            note = _STATUS_NOTES.get(msg.status)
            if note:
                self._insert_note(cursor, note)
        cursor.endEditBlock()
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def add_message(self, role: Role, content: str) -> None:
        cursor = self._end_cursor()
        self._insert_header(cursor, role)
        self._insert_body(cursor, content)
        self._scroll_to_bottom()

    # --- streaming ------------------------------------------------------------
    def begin_reply(self) -> None:
        cursor = self._end_cursor()
        self._insert_header(cursor, "assistant")
        self._insert_body(cursor, "")
        self._streaming = True
        self._stream_text_len = 0
        self._pending.clear()
        self._timer.start()
        self._scroll_to_bottom()

    def append_reply(self, text: str) -> None:
        if self._streaming:
            self._pending.append(text)

    def end_reply(self, status: MessageStatus) -> None:
        self._flush()
        self._stop_stream_timer()
        note = _STATUS_NOTES.get(status)
        if note:
            at_bottom = self._at_bottom()
            self._insert_note(self._end_cursor(), note)
            if at_bottom:
                self._scroll_to_bottom()

    def streamed_text_length(self) -> int:
        """Characters of the current reply already on screen (tests and benchmarks)."""
        return self._stream_text_len

    def _flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        at_bottom = self._at_bottom()
        cursor = self._end_cursor()
        cursor.insertText(text, self._body_format())
        self._stream_text_len += len(text)
        if at_bottom:
            self._scroll_to_bottom()

    def _stop_stream_timer(self) -> None:
        self._timer.stop()
        self._streaming = False
        self._pending.clear()

    # --- formatting -----------------------------------------------------------
    def _end_cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _insert_header(self, cursor: QTextCursor, role: str) -> None:
        block = QTextBlockFormat()
        block.setTopMargin(14 if not self.document().isEmpty() else 0)
        block.setBottomMargin(2)
        fmt = QTextCharFormat()
        fmt.setFontWeight(QFont.Weight.Bold)
        accent = self.palette().color(QPalette.ColorRole.Highlight)
        fmt.setForeground(
            accent if role == "assistant" else self.palette().color(QPalette.ColorRole.Text)
        )
        name = {"user": "You", "assistant": self._assistant_name, "system": "System"}.get(
            role, role
        )
        if not self.document().isEmpty():
            cursor.insertBlock(block, fmt)
        else:
            cursor.setBlockFormat(block)
        cursor.insertText(name, fmt)

    def _body_format(self) -> QTextCharFormat:
        fmt = QTextCharFormat()
        fmt.setForeground(self.palette().color(QPalette.ColorRole.Text))
        return fmt

    def _insert_body(self, cursor: QTextCursor, text: str) -> None:
        cursor.insertBlock(QTextBlockFormat(), self._body_format())
        if text:
            cursor.insertText(text, self._body_format())

    def _insert_note(self, cursor: QTextCursor, note: str) -> None:
        fmt = QTextCharFormat()
        fmt.setFontItalic(True)
        muted = QColor(self.palette().color(QPalette.ColorRole.PlaceholderText))
        fmt.setForeground(muted)
        cursor.insertBlock(QTextBlockFormat(), fmt)
        cursor.insertText(note, fmt)

    def _at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def _scroll_to_bottom(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def plain_text(self) -> str:
        return self.document().toPlainText()
