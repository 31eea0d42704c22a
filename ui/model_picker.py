"""The chat's model, at hand: a button in the chat's toolbar that names the model the
next message goes to and opens a menu of the models on this computer and on each
connection's server (``ModelPicker``), and a strip above the composer when an opened
chat last used another model (``ChatModelNotice``: "This chat last used big-model on
box… [Use big-model] [Keep]").

Both only render and ask; app/chat_models.py decides what is listed and what a choice
does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QToolButton,
    QWidget,
)

__all__ = ["ChatModelNotice", "ModelPicker", "PickerEntry"]


@dataclass(frozen=True, slots=True)
class PickerEntry:
    """One line of the menu: a model to pick (or, ``enabled`` False, a sentence)."""

    source: str  # a catalog family, the person's own files, or a connection
    choice: str  # a quantization, a file's path, a server's model id
    name: str  # as the menu shows it
    group: str  # the menu's section: "On this computer", "On box (127.0.0.1:8000)"
    enabled: bool = True
    note: str = ""  # a tooltip: where it runs, or why it cannot be picked now


class ModelPicker(QToolButton):
    picked = Signal(str, str)  # source, choice
    opening = Signal()  # the menu is about to show: the servers' lists can be asked again
    manage_requested = Signal()  # "Models and connections…"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chat_model_picker")
        self.setAccessibleName("Model for this chat")
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.setText("Model")
        self.menu_ = QMenu(self)
        self.menu_.setObjectName("chat_model_menu")
        self.menu_.aboutToShow.connect(self.opening)
        self.setMenu(self.menu_)
        self._entries: list[PickerEntry] = []
        self.set_entries([], None, "Model")

    def sizeHint(self) -> QSize:
        # Room for the menu's arrow, which Fusion draws over the end of the text.
        hint = super().sizeHint()
        return QSize(hint.width() + 16, hint.height())

    @property
    def entries(self) -> list[PickerEntry]:
        return list(self._entries)

    def set_entries(
        self,
        entries: Sequence[PickerEntry],
        current: tuple[str, str] | None,
        text: str,
        *,
        tip: str = "",
    ) -> None:
        """The models to offer, grouped as given; ``current`` (source, choice) is ticked;
        ``text`` names the model the next message goes to, on the button."""
        self._entries = list(entries)
        self.setText(text)
        self.setToolTip(tip or "The model this chat's next message goes to. Click to change it.")
        menu = self.menu_
        menu.clear()
        choices = QActionGroup(menu)  # one model at a time: shown as radio buttons
        choices.setExclusive(True)
        group = None
        for entry in entries:
            if entry.group != group:
                group = entry.group
                menu.addSection(group)
            action = QAction(entry.name, menu)
            action.setEnabled(entry.enabled)
            action.setToolTip(entry.note)
            if entry.enabled:
                action.setCheckable(True)
                choices.addAction(action)
                action.setChecked((entry.source, entry.choice) == current)
                action.triggered.connect(
                    lambda _checked=False, e=entry: self.picked.emit(e.source, e.choice)
                )
            menu.addAction(action)
        menu.setToolTipsVisible(True)
        menu.addSeparator()
        manage = menu.addAction("Models and connections…")
        manage.triggered.connect(self.manage_requested)


class ChatModelNotice(QFrame):
    """A chat opened that last used another model than the one in use now."""

    switch_clicked = Signal()
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chat_model_notice")
        self.setAccessibleName("This chat's model")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel("")
        self.label.setObjectName("chat_model_notice_text")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.switch_button = QPushButton("Use it")
        self.switch_button.setObjectName("chat_model_notice_switch")
        self.switch_button.clicked.connect(self.switch_clicked)
        self.keep_button = QPushButton("Keep")
        self.keep_button.setObjectName("chat_model_notice_keep")
        self.keep_button.setAccessibleName("Keep the model in use")
        self.keep_button.clicked.connect(self._on_keep)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.switch_button)
        layout.addWidget(self.keep_button)
        self.hide()

    def show_offer(self, text: str, action: str = "") -> None:
        """``text``, and a button ``action`` that switches (none: nothing to switch to)."""
        self.label.setText(text)
        self.switch_button.setVisible(bool(action))
        self.switch_button.setText(action)
        self.keep_button.setText("Keep" if action else "Close")
        self.show()

    def clear(self) -> None:
        self.label.setText("")
        self.hide()

    def text(self) -> str:
        return self.label.text()

    @Slot()
    def _on_keep(self) -> None:
        self.hide()
        self.dismissed.emit()
