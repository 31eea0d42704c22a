"""The question before a tool runs: which server, which tool, the exact arguments
(formatted, read-only, selectable), and four answers — Allow once, Allow in this
chat, Always allow, Never. Closing it (Esc) refuses this call only.

Not modal to the application: the reply's Stop stays usable, and Stop closes the
question (the controller calls ``close_unanswered``).
"""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.tools.permissions import Answer
from engine.types import ToolCallPart
from ui.theme import mute

__all__ = ["ToolPermissionDialog"]

BUTTONS = (
    (Answer.ONCE, "Allow once"),
    (Answer.CHAT, "Allow in this chat"),
    (Answer.ALWAYS, "Always allow"),
    (Answer.NEVER, "Never"),
)


class ToolPermissionDialog(QDialog):
    answered = Signal(object)  # Answer

    def __init__(
        self, call: ToolCallPart, server: str, description: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("tool_permission")
        self.setWindowTitle("Allow this tool to run?")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self._done = False
        where = f"the tool server <b>{_esc(server)}</b>" if server else "Hearth (built in)"
        title = QLabel(f"The model wants to run <b>{_esc(call.name)}</b> from {where}.", self)
        title.setTextFormat(Qt.TextFormat.RichText)
        title.setWordWrap(True)
        about = QLabel(description.strip() or "No description.", self)
        about.setTextFormat(Qt.TextFormat.PlainText)  # a server's words: never rich text
        about.setWordWrap(True)
        mute(about)
        args = QPlainTextEdit(self)
        args.setObjectName("tool_arguments")
        args.setReadOnly(True)
        args.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        args.setPlainText(json.dumps(call.plain_arguments(), ensure_ascii=False, indent=2))
        args.setAccessibleName("Arguments")
        args.setMaximumHeight(180)
        hint = QLabel(
            "Nothing runs until you answer. Allow in this chat: its next calls of this tool "
            "run without asking. Always and Never are kept (Settings → Tools).",
            self,
        )
        hint.setWordWrap(True)
        mute(hint)
        row = QHBoxLayout()
        self.buttons: dict[Answer, QPushButton] = {}
        for answer, text in BUTTONS:
            button = QPushButton(text, self)
            button.setAutoDefault(False)
            button.clicked.connect(lambda _=False, a=answer: self._answer(a))
            row.addWidget(button)
            self.buttons[answer] = button
        self.buttons[Answer.ONCE].setDefault(True)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(about)
        layout.addWidget(QLabel("Arguments:", self))
        layout.addWidget(args)
        layout.addWidget(hint)
        layout.addLayout(row)
        self.resize(520, self.sizeHint().height())

    def _answer(self, answer: Answer) -> None:
        if not self._done:
            self._done = True
            self.answered.emit(answer)
        super().done(QDialog.DialogCode.Rejected)

    def reject(self) -> None:  # Esc, and the window's close button (QDialog's closeEvent)
        self._answer(Answer.DENY)

    def close_unanswered(self) -> None:
        """The reply ended (Stop, an error): the question goes away, refused."""
        self._answer(Answer.DENY)


def _esc(text: str) -> str:
    import html

    return html.escape(text)
