"""Opening the chat database, shared by the window and the CLI: a damaged file is moved aside."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from engine.errors import StoreError
from engine.history.store import ChatStore, StoreCorruptError, damage_marker

log = logging.getLogger(__name__)


def _aside_name(db_path: Path) -> Path:
    """``<name>.corrupt-<timestamp>``, never one that exists (nothing is overwritten)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(str(aside) + s).exists() for s in ("", "-wal", "-shm")):
        n += 1
        aside = db_path.with_name(f"{db_path.name}.corrupt-{stamp}-{n}")
    return aside


def open_store(
    db_path: Path, *, key: bytes | None = None, key_verified: bool = False
) -> tuple[ChatStore, str | None]:
    """Open the chat database. A damaged one is moved aside with a timestamp
    (never deleted) and a fresh one started; the second value says so.

    Other failures (a newer Hearth's file, a full disk, a lock) raise
    ``StoreError``: the file is fine and must stay where it is. So does a ``key``
    that does not open an encrypted file (``WrongKeyError``), unless the key holder
    checked the key (``key_verified``): then the file is damaged and set aside too.
    """
    try:
        return ChatStore(db_path, key=key, key_verified=key_verified), None
    except StoreCorruptError as exc:
        aside = _aside_name(db_path)
        log.error("chat database unreadable (%s); moving it to %s", exc.detail or exc, aside)
        try:
            for suffix in ("", "-wal", "-shm"):  # the WAL may hold the newest writes
                src = Path(str(db_path) + suffix)
                if src.exists():
                    src.replace(Path(str(aside) + suffix))
        except OSError as e:
            raise StoreError(
                f"The chat history at {db_path} is damaged and could not be moved aside "
                f"({e.strerror or e}). Move it elsewhere yourself, then start Hearth again.",
                detail=repr(e),
            ) from e
        damage_marker(db_path).unlink(missing_ok=True)
        notice = (
            f"Your chat history could not be read (the file is damaged), so Hearth moved it "
            f"to {aside} and started a new, empty one; nothing was deleted, so keep that file "
            "if you want to try to recover the old chats."
        )
        return ChatStore(db_path, key=key, key_verified=key_verified), notice
