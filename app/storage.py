"""Opening the chat database, shared by the window and the CLI (no Qt here)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from engine.errors import StoreError
from engine.store import ChatStore

log = logging.getLogger(__name__)

TITLE_CHARS = 48


def open_store(db_path: Path) -> tuple[ChatStore, str | None]:
    """Open the chat database. A corrupt one is moved aside with a timestamp
    (never deleted) and a fresh one started; the second value says so."""
    try:
        return ChatStore(db_path), None
    except StoreError as exc:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
        log.error("chat database unreadable (%s); moving it to %s", exc, aside)
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(db_path) + suffix)
            if src.exists():
                src.replace(Path(str(aside) + suffix))
        notice = (
            f"Your chat database could not be read ({exc.message}) It was moved to {aside} "
            "and a new, empty one was started. Nothing was deleted."
        )
        return ChatStore(db_path), notice


def title_from(text: str) -> str:
    """A chat title from the first message: its first words, cut at a word."""
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line or "New chat"
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut + "…"
