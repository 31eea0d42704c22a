"""A message's attachments (images, documents) in the chat database (schema v5).

``attachments`` describes each one (its message, its place among the message's
attachments, kind, name, type, size, an image's pixels, a document's text) and names
its file by the SHA-256 of its bytes; ``blobs`` holds each distinct file once. A
trigger drops a blob when no attachment names it any more, so deleting a message or
purging a chat deletes its images with it.

Functions over a connection, for ``MessageStore`` and ``ChatStore`` to call inside
their own transactions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from engine.history.cipher import Database
from engine.types import AttachmentPart, DocumentPart, ImagePart

_COLS = "message_id, kind, sha256, name, mime, size, width, height, text"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kind_of(part: AttachmentPart) -> str:
    return "image" if isinstance(part, ImagePart) else "document"


def _part(row: Sequence[object]) -> AttachmentPart:
    _, kind, sha, name, mime, size, width, height, text = row
    if kind == "image":
        return ImagePart(
            sha256=str(sha), name=str(name), mime=str(mime), size=int(str(size)),
            width=int(str(width)), height=int(str(height)),
        )  # fmt: skip
    return DocumentPart(sha256=str(sha), name=str(name), mime=str(mime), size=int(str(size)),
                        text=str(text))  # fmt: skip


def insert(db: Database, msg_id: int, parts: Sequence[AttachmentPart]) -> None:
    """Attach ``parts`` to message ``msg_id``, in this order, after any it has.

    A part brings its bytes (``data``), whose hash must be its ``sha256``; or none,
    when the database already holds that file (an edited question keeping its
    images). Raises ``ValueError`` otherwise: a caller's bug, before anything is
    written by this call (the caller's transaction rolls back the rest).
    """
    for part in parts:
        if part.data:
            if sha256_of(part.data) != part.sha256:
                raise ValueError(f"attachment {part.name!r}: its bytes do not match its sha256")
        elif not has_blob(db, part.sha256):
            raise ValueError(f"attachment {part.name!r} has no bytes and none are stored")
    start = db.execute(
        "SELECT coalesce(max(position) + 1, 0) FROM attachments WHERE message_id = ?", (msg_id,)
    ).fetchone()[0]
    for n, part in enumerate(parts, start=start):
        if part.data:
            db.execute(
                "INSERT OR IGNORE INTO blobs (sha256, data) VALUES (?, ?)",
                (part.sha256, part.data),
            )
        width, height = (part.width, part.height) if isinstance(part, ImagePart) else (0, 0)
        text = part.text if isinstance(part, DocumentPart) else ""
        size = part.size or len(part.data)
        db.execute(
            f"INSERT INTO attachments (position, {_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (n, msg_id, kind_of(part), part.sha256, part.name, part.mime, size, width, height,
             text),
        )  # fmt: skip


def has_blob(db: Database, sha256: str) -> bool:
    return db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)).fetchone() is not None


def of_conversation(db: Database, conv_id: int) -> dict[int, tuple[AttachmentPart, ...]]:
    """Every message's attachments in a conversation, without their bytes, by message id."""
    rows = db.execute(
        f"SELECT {', '.join('a.' + c for c in _COLS.split(', '))} FROM attachments AS a"
        " JOIN messages AS m ON m.id = a.message_id WHERE m.conversation_id = ?"
        " ORDER BY a.message_id, a.position",
        (conv_id,),
    ).fetchall()
    return _grouped(rows)


def of_messages(db: Database, ids: Iterable[int]) -> dict[int, tuple[AttachmentPart, ...]]:
    wanted = list(ids)
    if not wanted:
        return {}
    marks = ", ".join("?" * len(wanted))
    rows = db.execute(
        f"SELECT {_COLS} FROM attachments WHERE message_id IN ({marks})"
        " ORDER BY message_id, position",
        wanted,
    ).fetchall()
    return _grouped(rows)


def _grouped(rows: Iterable[Sequence[object]]) -> dict[int, tuple[AttachmentPart, ...]]:
    out: dict[int, list[AttachmentPart]] = {}
    for row in rows:
        out.setdefault(int(str(row[0])), []).append(_part(row))
    return {k: tuple(v) for k, v in out.items()}


def data_of(db: Database, sha256: str) -> bytes | None:
    row = db.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
    return None if row is None else bytes(row[0])


def data_many(db: Database, hashes: Iterable[str]) -> Mapping[str, bytes]:
    return {sha: data for sha in set(hashes) if (data := data_of(db, sha)) is not None}
