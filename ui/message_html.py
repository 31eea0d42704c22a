"""The HTML of the pieces around a message's text: its status note, its thinking
fold, the links under it (``MessageAction``) and the "no longer read" divider.

Plain functions of the message and the muted colour, so ``ui.chat_view`` caches
what they return with the message.
"""

from __future__ import annotations

import html
from enum import StrEnum
from pathlib import PurePath

from engine.history.types import CONTINUABLE, MessageStatus, StoredMessage


def model_label(model: str) -> str:
    """A reply's model (``StoredMessage.model``: a file's path, or a server's
    ``…/models/NAME``) as its header names it when nothing better is known: the
    file's stem, or the remote model's name."""
    if "://" in model:
        return model.rsplit("/models/", 1)[-1] if "/models/" in model else model
    return PurePath(model).stem if model else ""


ACTION_SCHEME = "hearth-action"


class MessageAction(StrEnum):
    """The links under a message (``hearth-action:<action>/<message id>``)."""

    COPY = "copy"
    EDIT = "edit"
    REGENERATE = "regenerate"
    CONTINUE = "continue"
    DELETE = "delete"
    PREV = "prev"
    NEXT = "next"
    TOGGLE_THINKING = "toggle-thinking"
    EARLIER = "earlier"


STATUS_NOTES = {
    MessageStatus.STOPPED: "Stopped.",
    MessageStatus.LENGTH: "Cut off at the reply length limit.",
    MessageStatus.CONTEXT: "Cut off: the conversation filled the model's context window.",
    MessageStatus.FAILED: "This reply failed part-way; the text above is what was written.",
    MessageStatus.INTERRUPTED: "Hearth closed while this reply was being written.",
}


def thinking_html(muted: str, msg_id: int, thinking: str, thinking_ms: int, expanded: bool) -> str:
    seconds = f" for {thinking_ms / 1000:.0f} s" if thinking_ms >= 1000 else ""
    arrow = "▾" if expanded else "▸"
    link = (
        f'<p style="color:{muted}"><a href="{ACTION_SCHEME}:toggle-thinking/{msg_id}" '
        f'style="color:{muted}; text-decoration:none">{arrow} Thought{seconds}</a></p>'
    )
    if not expanded:
        return link
    body = html.escape(thinking).replace("\n", "<br>")
    return link + f'<p style="color:{muted}; margin-left:12px"><i>{body}</i></p>'


def context_divider_html(muted: str) -> str:
    return (
        f'<hr><p align="center" style="color:{muted}; font-size:small">'
        "<i>The model no longer sees the messages above.</i></p>"
    )


def note_html(muted: str, note: str) -> str:
    return f'<p style="color:{muted}"><i>{html.escape(note)}</i></p>'


def actions_html(muted: str, msg: StoredMessage, is_last: bool) -> str:
    """Copy · Edit/Regenerate · Continue · Delete · ‹ 2/3 › under a message."""

    def link(action: MessageAction, text: str, tip: str) -> str:
        return (
            f'<a href="{ACTION_SCHEME}:{action.value}/{msg.id}" title="{tip}" '
            f'style="text-decoration:none">{text}</a>'
        )

    links = [link(MessageAction.COPY, "Copy", "Copy this message")]
    if msg.role == "user":
        links.append(link(MessageAction.EDIT, "Edit", "Change this message and get a new reply"))
    elif msg.role == "assistant":
        links.append(link(MessageAction.REGENERATE, "Regenerate", "Write this reply again"))
        if is_last and msg.status is MessageStatus.CONTEXT:
            # No room to write on: Continue asks which older messages the model
            # may stop reading, or to start a new chat (ui/context_dialog.py).
            tip = "Continue this reply: Hearth first asks how to make room for it"
            links.append(link(MessageAction.CONTINUE, "Continue…", tip))
        elif is_last and msg.status in CONTINUABLE:
            links.append(link(MessageAction.CONTINUE, "Continue", "Continue this reply"))
    links.append(link(MessageAction.DELETE, "Delete", "Delete this message"))
    if msg.variant_count > 1:
        prev = link(MessageAction.PREV, "‹", "Previous version") if msg.variant_index > 0 else "‹"
        nxt = (
            link(MessageAction.NEXT, "›", "Next version")
            if msg.variant_index < msg.variant_count - 1
            else "›"
        )
        links.append(f"{prev} {msg.variant_index + 1}/{msg.variant_count} {nxt}")
    return f'<p style="font-size:small; color:{muted}">{" · ".join(links)}</p>'
