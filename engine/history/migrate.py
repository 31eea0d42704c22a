"""Encrypting, decrypting and re-keying the chat database by writing a checked copy.

The store must be closed (no connection in this process or another). Steps, each
leaving the original usable if the process dies there (``kill -9``, a power cut):

1. ``<db>.converting`` (the marker, JSON) says what is being done.
2. The source is checkpointed (its write-ahead log emptied into it) and copied with
   ``VACUUM INTO`` to ``<db>.new``, encrypted with the new key (or plain).
3. The copy is checked: ``integrity_check``, the same numbers of conversations and
   messages, and a few searches that must find the same messages.
4. The marker says "swap"; ``<db>.new`` replaces ``<db>`` in one rename (atomic), which
   also unlinks the old file; its WAL and journal are removed before, while empty.
5. ``on_swapped`` runs (the key holder makes the new key the one in use), then the
   marker goes.

``recover`` reads a marker left by a process that died: before the rename the copy is
deleted and the original is as it was; after it, the conversion is done (the new file
is there) and only ``on_swapped`` and the marker's removal remain. Either way the
caller gets a sentence saying what happened.

What removal does not do: the old file's blocks are freed, not overwritten; an SSD's
wear levelling, a file-system snapshot or a backup made before may still hold them
(the README says so).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.errors import StoreError
from engine.history import cipher
from engine.history.search import search


class Cancelled(Exception):
    """The conversion was stopped before the swap (``cancelled`` said so): the
    original is in place and the copy and the marker are gone."""


class Op(StrEnum):
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    REKEY = "rekey"


# The moments a test kills the process at (``pause``): after each one's work is done.
STEPS = ("marked", "copied", "verified", "swapped", "keys-saved")

_DOING = {
    Op.ENCRYPT: "Encrypting your chat history",
    Op.DECRYPT: "Decrypting your chat history",
    Op.REKEY: "Changing the key of your chat history",
}


def marker_path(db: Path) -> Path:
    return db.with_name(db.name + ".converting")


def copy_path(db: Path) -> Path:
    return db.with_name(db.name + ".new")


@dataclass(frozen=True)
class Converted:
    op: Op
    conversations: int
    messages: int
    seconds: float


@dataclass(frozen=True)
class Recovered:
    """A conversion that a dead process left: ``swapped`` says which file is in use."""

    op: Op
    swapped: bool
    extra: dict[str, Any]
    notice: str


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # Windows cannot open a folder to sync it; renames are journaled
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_marker(db: Path, content: dict[str, Any]) -> None:
    marker = marker_path(db)
    part = marker.with_name(marker.name + ".part")
    with part.open("w", encoding="utf-8") as f:
        json.dump(content, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, marker)
    _fsync_dir(db.parent)


def read_marker(db: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(marker_path(db).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"op": "?", "step": "copy"}  # cut while written: the copy had not begun
    return value if isinstance(value, dict) else {"op": "?", "step": "copy"}


def _remove_copy(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{copy_path(db)}{suffix}").unlink(missing_ok=True)


def _sample_words(conn: cipher.Connection) -> list[str]:
    """A few words of the newest finished messages: searches the copy must answer alike."""
    rows = conn.execute(
        "SELECT content FROM messages WHERE status != 'streaming' ORDER BY id DESC LIMIT 40"
    ).fetchall()
    words: list[str] = []
    for (content,) in rows:
        for word in re.findall(r"\w{4,}", str(content))[:2]:
            if word not in words:
                words.append(word)
    return words[:6]


def _summary(conn: cipher.Connection, words: list[str]) -> tuple[int, int, list[list[int]]]:
    convs = int(conn.execute("SELECT count(*) FROM conversations").fetchone()[0])
    msgs = int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    hits = [[h.message_id for h in search(conn, w, 50)] for w in words]
    return convs, msgs, hits


def convert(
    db: Path,
    op: Op,
    *,
    old_key: bytes | None,
    new_key: bytes | None,
    extra: dict[str, Any] | None = None,
    on_swapped: Callable[[], None] = lambda: None,
    progress: Callable[[float], None] = lambda fraction: None,
    pause: Callable[[str], None] = lambda step: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Converted:
    """Write ``db`` again under ``new_key`` (None: plain), check it and swap it in.

    ``extra`` is kept in the marker for ``recover``'s caller (the key holder's ids).
    ``progress`` gets 0..1 while copying (by the copy's size), on this thread.
    Raises ``StoreError`` leaving the original in place if anything fails before the
    swap; the marker is then removed (nothing to recover). ``cancelled`` is asked while
    copying and checking (a quit): True raises ``Cancelled`` the same way. From the swap
    on, the conversion finishes (it is a moment).
    """

    def stop_if_cancelled() -> None:
        if cancelled():
            raise Cancelled

    started = time.monotonic()
    if read_marker(db) is not None:
        raise StoreError(
            f"An earlier change to the encryption of {db} did not finish. "
            "Restart Hearth so it can finish or undo it, then try again."
        )
    if not db.is_file():
        raise StoreError(f"There is no chat history at {db} to convert.")
    copy = copy_path(db)
    _remove_copy(db)
    _write_marker(db, {"op": op.value, "step": "copy", "extra": extra or {}})
    pause("marked")
    try:
        source = cipher.connect(db, old_key)
        try:
            try:
                source.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as e:
                raise cipher.key_error(db) from e
            source.execute("PRAGMA busy_timeout = 5000")
            # Everything in the file itself, none in its log: the copy reads one file,
            # and the file the rename unlinks holds no chat the copy lacks.
            source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            words = _sample_words(source)
            before = _summary(source, words)
            total = max(
                1,
                int(source.execute("PRAGMA page_count").fetchone()[0])
                * int(source.execute("PRAGMA page_size").fetchone()[0]),
            )

            def copied_so_far() -> bool:
                with contextlib.suppress(OSError):
                    progress(min(copy.stat().st_size / total, 1.0))
                return cancelled()  # True interrupts the copy

            stop_if_cancelled()
            source.set_progress_handler(copied_so_far, 20_000)
            try:
                source.execute("VACUUM INTO ?", (cipher.target_uri(copy, new_key),))
            except sqlite3.OperationalError:
                stop_if_cancelled()  # interrupted by the handler: a cancel, not a failure
                raise
            source.set_progress_handler(None, 0)
        finally:
            source.close()
        progress(1.0)
        pause("copied")
        stop_if_cancelled()
        check = cipher.connect(copy, new_key)
        try:
            check.set_progress_handler(cancelled, 20_000)
            try:
                problems = [r[0] for r in check.execute("PRAGMA integrity_check").fetchall()]
                after = _summary(check, words)
            except sqlite3.OperationalError:
                stop_if_cancelled()
                raise
        finally:
            check.close()
        if problems != ["ok"] or after != before:
            raise StoreError(
                f"The {op.value}ed copy of your chats did not check out, so Hearth kept the "
                "history as it was. Check that the disk has free space and try again.",
                detail=f"{problems[:3]}; {before[:2]} vs {after[:2]}",
            )
        pause("verified")
        stop_if_cancelled()
        for suffix in ("-wal", "-journal", "-shm"):
            leftover = Path(f"{db}{suffix}")
            if leftover.exists() and leftover.stat().st_size > 0 and suffix != "-shm":
                raise StoreError(
                    f"Another program is using the chat history at {db}, so Hearth kept it "
                    "as it was. Close the other program (or the other Hearth) and try again."
                )
            leftover.unlink(missing_ok=True)
        _write_marker(db, {"op": op.value, "step": "swap", "extra": extra or {}})
    except BaseException:
        _remove_copy(db)
        marker_path(db).unlink(missing_ok=True)
        raise
    with copy.open("rb+") as f:
        os.fsync(f.fileno())
    os.replace(copy, db)  # the one moment the history changes: atomic
    _fsync_dir(db.parent)
    pause("swapped")
    on_swapped()
    pause("keys-saved")
    marker_path(db).unlink(missing_ok=True)
    return Converted(op, before[0], before[1], time.monotonic() - started)


def recover(db: Path) -> Recovered | None:
    """Finish or undo a conversion a dead process left; None if there was none.

    The caller completes the key holder's side (``swapped``: the new key is in use;
    otherwise the old one still is) and then calls ``finish``.
    """
    marker = read_marker(db)
    if marker is None:
        return None
    try:
        op = Op(str(marker.get("op")))
    except ValueError:
        op = Op.ENCRYPT
    extra = marker.get("extra") if isinstance(marker.get("extra"), dict) else {}
    doing = _DOING[op]
    # The rename moves the copy onto the history: a copy still there was not swapped in.
    swapped = marker.get("step") == "swap" and not copy_path(db).exists()
    if swapped:
        notice = (
            f"{doing} was interrupted just after the new file was in place; Hearth "
            "finished it. Your chats are all there."
        )
    else:
        _remove_copy(db)
        notice = (
            f"{doing} was interrupted (Hearth was closed or the computer stopped), so "
            "nothing changed: your chats are as they were. Try again from Settings → "
            "Privacy & storage when you are ready."
        )
    return Recovered(op, swapped, dict(extra or {}), notice)


def finish(db: Path) -> None:
    """The key holder is done with a ``recover``: forget the conversion."""
    marker_path(db).unlink(missing_ok=True)
