"""The question asked when a conversation has outgrown the model's context window.

Nothing is dropped before the person chooses: the model can stop seeing the
oldest turns (they stay in the chat, marked, and in search and exports), the
conversation can go on in a new chat, or nothing happens at all.

The box is opened with ``open()`` (window-modal, no nested event loop): engine
events keep arriving while it is up, and the answer comes back through a
callback that must check whether it still applies.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from PySide6.QtWidgets import QMessageBox, QWidget

DROP_TEXT = "Drop the oldest turns (the system prompt stays)"
NEW_CHAT_TEXT = "Start a new chat"


class ContextChoice(Enum):
    DROP = "drop"
    NEW_CHAT = "new_chat"
    CANCEL = "cancel"


def open_context_question(
    parent: QWidget | None,
    *,
    used: int,
    n_ctx: int,
    dropped: int,
    on_choice: Callable[[ContextChoice], None],
) -> QMessageBox:
    """Ask what to do about a conversation of ``used`` tokens that leaves the next
    reply no room in ``n_ctx``; ``dropped``: messages the model would stop seeing.
    ``on_choice`` gets the answer once the box closes (Cancel if it is closed)."""
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

    def finished(_result: int) -> None:
        clicked = box.clickedButton()
        box.deleteLater()
        if clicked is drop:
            on_choice(ContextChoice.DROP)
        elif clicked is new_chat:
            on_choice(ContextChoice.NEW_CHAT)
        else:
            on_choice(ContextChoice.CANCEL)

    box.finished.connect(finished)
    box.open()
    return box
