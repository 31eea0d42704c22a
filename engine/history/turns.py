"""The turn model: what the model reads of a chat, the same for the window and the CLI."""

from __future__ import annotations

TITLE_CHARS = 48


def title_from(text: str) -> str:
    """A chat title from the first message: its first words, cut at a word."""
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line or "New chat"
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut + "…"
