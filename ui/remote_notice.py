"""The line above the composer that says where a chat's messages go when the model
in use is on a server: "Messages in this chat go to gpu-box (http://gpu-box:8000/v1)".
Shown every time such a model is in use, never for a model on this computer."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QWidget

__all__ = ["DestinationLine"]


class DestinationLine(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("destination_line")
        self.setAccessibleName("Where this chat's messages go")
        self.label = QLabel("")
        self.label.setObjectName("destination_text")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 2)
        layout.addWidget(self.label, 1)
        self.hide()

    def show_destination(
        self, name: str, base_url: str, *, model: str, ready: bool, warning: str = ""
    ) -> None:
        """``name``'s server at ``base_url`` gets the messages (``ready``: its model is
        in use now; else it is being connected to). ``warning``: plain http:// text."""
        text = (
            f"Messages in this chat go to {name} ({base_url}), model {model}."
            if ready
            else f"Connecting to {name} ({base_url}); messages in this chat will go there."
        )
        if warning:
            text += " Not encrypted (http://)."
        self.label.setText("⇄ " + text)
        self.setToolTip(warning or "Chats on a model on this computer stay on this computer.")
        self.setProperty("warn", bool(warning))
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()

    def clear(self) -> None:
        self.label.setText("")
        self.hide()

    def text(self) -> str:
        return self.label.text()
