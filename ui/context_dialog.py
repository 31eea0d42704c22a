"""The question asked when a conversation has outgrown the model's context window.

Nothing is dropped before the person chooses: the model can stop seeing the
oldest turns (they stay in the chat, marked, and in search and exports), the
conversation can go on in a new chat, or nothing happens at all.
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtWidgets import QMessageBox, QWidget

DROP_TEXT = "Drop the oldest turns (the system prompt stays)"
NEW_CHAT_TEXT = "Start a new chat"


class ContextChoice(Enum):
    DROP = "drop"
    NEW_CHAT = "new_chat"
    CANCEL = "cancel"


def ask_context_choice(
    parent: QWidget | None, *, used: int, n_ctx: int, dropped: int
) -> ContextChoice:
    """Ask what to do about a conversation of ``used`` tokens that leaves the next
    reply no room in ``n_ctx``; ``dropped``: messages the model would stop seeing."""
    box = QMessageBox(parent)
    box.setObjectName("context_full")
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("The conversation is too long")
    box.setText("This conversation no longer leaves the model room for a reply.")
    messages = "message" if dropped == 1 else f"{dropped} messages"
    box.setInformativeText(
        f"It takes {used:,} of the {n_ctx:,} tokens the model can read at once. "
        f"The model can stop reading the oldest {messages}: they stay in this chat "
        "(marked), in search and in exports. Or you can go on in a new chat."
    )
    drop = box.addButton(DROP_TEXT, QMessageBox.ButtonRole.AcceptRole)
    drop.setObjectName("context_drop_button")
    new_chat = box.addButton(NEW_CHAT_TEXT, QMessageBox.ButtonRole.ActionRole)
    new_chat.setObjectName("context_new_chat_button")
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(drop)
    box.setEscapeButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    box.deleteLater()
    if clicked is drop:
        return ContextChoice.DROP
    if clicked is new_chat:
        return ContextChoice.NEW_CHAT
    return ContextChoice.CANCEL
