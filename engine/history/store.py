"""The chat store: conversations and their messages in one SQLite file.

``ChatStore`` is built in layers: ``db`` (the file, migrations,
transactions, errors), ``messages`` (the message tree: versions,
edits, the active path), and here conversations and search.
A reply is saved while it streams by ``recorder.ReplyRecorder``, so a crash
loses at most about a second of it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from engine.history import attachments as _attachments
from engine.history import search as _search
from engine.history.db import DELETED_KEEP_S, SCHEMA_VERSION, StoreCorruptError, damage_marker
from engine.history.doc_index import DocumentStore
from engine.history.doc_search import with_document_hits
from engine.history.messages import DEFAULT_TITLE, MessageStore
from engine.history.tool_search import with_tool_hits
from engine.history.types import Conversation, MessageStatus, SearchHit, StoredMessage
from engine.types import AttachmentPart

__all__ = [
    "DEFAULT_TITLE",
    "DELETED_KEEP_S",
    "SCHEMA_VERSION",
    "ChatStore",
    "Conversation",
    "MessageStatus",
    "SearchHit",
    "StoreCorruptError",
    "StoredMessage",
    "damage_marker",
]

_CONV_COLS = "id, title, created_at, updated_at, pinned, title_is_auto, deleted_at"
_A = TypeVar("_A", bound=AttachmentPart)


def _conversation(row: Any) -> Conversation:
    cid, title, created, updated, pinned, auto, deleted = row
    return Conversation(cid, title, created, updated, bool(pinned), bool(auto), deleted)


class ChatStore(MessageStore, DocumentStore):
    """Conversations, messages and attached documents in the SQLite file at ``path``."""

    # -- conversations -------------------------------------------------------------

    def create_conversation(
        self, title: str = DEFAULT_TITLE, *, title_is_auto: bool | None = None
    ) -> Conversation:
        """A new, empty conversation.

        ``title_is_auto`` (default: only for the placeholder title) lets
        ``set_auto_title`` replace the title later; a rename clears it.
        """
        title = title.strip() or DEFAULT_TITLE
        auto = title == DEFAULT_TITLE if title_is_auto is None else title_is_auto
        now = self._clock()
        with self._writing():
            cur = self._db.execute(
                "INSERT INTO conversations (title, created_at, updated_at, title_is_auto)"
                " VALUES (?, ?, ?, ?)",
                (title, now, now, auto),
            )
        return Conversation(cast(int, cur.lastrowid), title, now, now, False, auto)

    def conversation(self, conv_id: int, *, include_deleted: bool = False) -> Conversation | None:
        """The conversation, or None if there is none (or it is deleted)."""
        rows = self._rows(f"SELECT {_CONV_COLS} FROM conversations WHERE id = ?", (conv_id,))
        if not rows or (rows[0][6] is not None and not include_deleted):
            return None
        return _conversation(rows[0])

    def list_conversations(
        self, limit: int | None = None, offset: int = 0, *, deleted: bool = False
    ) -> list[Conversation]:
        """Pinned first, then the most recently updated first; a page of them if asked.

        ``deleted=True`` lists deleted ones that can still be undone, latest first.
        """
        where, order = "deleted_at IS NULL", "pinned DESC, updated_at DESC, id DESC"
        if deleted:
            where, order = "deleted_at IS NOT NULL", "deleted_at DESC, id DESC"
        rows = self._rows(
            f"SELECT {_CONV_COLS} FROM conversations WHERE {where} ORDER BY {order}"
            " LIMIT ? OFFSET ?",
            (-1 if limit is None else limit, offset),
        )
        return [_conversation(row) for row in rows]

    def count_conversations(self, *, deleted: bool = False) -> int:
        null = "NOT NULL" if deleted else "NULL"
        return int(
            self._rows(f"SELECT count(*) FROM conversations WHERE deleted_at IS {null}")[0][0]
        )

    def rename_conversation(self, conv_id: int, title: str) -> None:
        """The person's title: no automatic title replaces it afterwards."""
        with self._writing():
            self._db.execute(
                "UPDATE conversations SET title = ?, title_is_auto = 0 WHERE id = ?",
                (title.strip() or DEFAULT_TITLE, conv_id),
            )

    def set_auto_title(self, conv_id: int, title: str) -> bool:
        """Set a title made by Hearth, unless the person has named the conversation.

        Returns whether the title changed.
        """
        title = title.strip()
        if not title:
            return False
        with self._writing():
            cur = self._db.execute(
                "UPDATE conversations SET title = ? WHERE id = ? AND title_is_auto = 1",
                (title, conv_id),
            )
        return cur.rowcount > 0

    def set_pinned(self, conv_id: int, pinned: bool) -> None:
        with self._writing():
            self._db.execute(
                "UPDATE conversations SET pinned = ? WHERE id = ?", (int(pinned), conv_id)
            )

    def delete_conversation(self, conv_id: int) -> None:
        """Delete the conversation; ``undo_delete`` brings it back until it is purged.

        A missing id is ignored. Its messages stay on disk (and out of search and
        lists) until ``purge_deleted`` or a later open purges them.
        """
        with self._writing():
            self._db.execute(
                "UPDATE conversations SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (self._clock(), conv_id),
            )

    def undo_delete(self, conv_id: int) -> Conversation | None:
        """Bring back a deleted conversation; None if it is gone for good."""
        with self._writing():
            self._db.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ?", (conv_id,))
        return self.conversation(conv_id)

    def purge_deleted(self, older_than_s: float = 0.0) -> int:
        """Remove for good the conversations deleted at least ``older_than_s`` ago."""
        with self._writing():
            cur = self._db.execute(
                "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?",
                (self._clock() - older_than_s,),
            )
        return cur.rowcount

    def delete_all_conversations(self) -> int:
        """Delete every conversation for good and compact the file, so the deleted text
        does not linger in free pages (Settings asks first). Returns how many."""
        self._db.execute("PRAGMA secure_delete = ON")  # many builds default to it; not all
        with self._writing():
            cur = self._db.execute("DELETE FROM conversations")
        try:
            # The search indexes keep a deleted message's words until their segments
            # merge; merge them now, so that not even single words stay on disk.
            for index in ("messages_fts", "messages_cjk"):
                self._db.execute(f"INSERT INTO {index}({index}) VALUES ('optimize')")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the old pages leave the disk
        except sqlite3.DatabaseError as e:
            raise self._failure("compact", e) from e
        return cur.rowcount

    def conversation_settings(self, conv_id: int) -> dict[str, Any]:
        """Per-chat settings (e.g. thinking on/off, sampling overrides); {} if none."""
        rows = self._rows("SELECT settings FROM conversations WHERE id = ?", (conv_id,))
        try:
            value = json.loads(rows[0][0]) if rows else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def set_conversation_settings(self, conv_id: int, settings: Mapping[str, object]) -> None:
        """Replace the per-chat settings (JSON-serializable values only)."""
        text = json.dumps(dict(settings), sort_keys=True, ensure_ascii=False)
        with self._writing():
            self._db.execute("UPDATE conversations SET settings = ? WHERE id = ?", (text, conv_id))

    # -- attachments -----------------------------------------------------------------

    def attachment_data(self, sha256: str) -> bytes | None:
        """An attachment's original bytes; None if no message holds that file (any more)."""
        try:
            return _attachments.data_of(self._db, sha256)
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._failure("read", e) from e

    def with_data(self, parts: tuple[_A, ...]) -> tuple[_A, ...]:
        """``parts`` with their bytes read from the store (a part whose file is gone
        is left without: the caller tells the person)."""
        out = []
        for part in parts:
            data = part.data or self.attachment_data(part.sha256)
            out.append(dataclasses.replace(part, data=data) if data else part)
        return tuple(out)

    # -- search, import, upkeep ----------------------------------------------------

    def index_pending(self, limit: int = 500) -> int:
        """Bring up to ``limit`` of the messages queued for the CJK search index into
        it, newest first, 500 at most per transaction (~50 µs a message of 300
        characters); returns how many are still queued (``limit=0``: only count).

        Search is complete without it (a CJK query reads what is still queued);
        this keeps such queries fast after a migration or an import queued many.
        """
        try:
            return _search.index_pending_cjk(self._db, max(limit, 0))
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._failure("update the search index of", e) from e

    def search(self, query: str, limit: int = 50, *, ranked: bool = False) -> list[SearchHit]:
        """Messages (answer text, not thinking) of live conversations matching every
        word of ``query``, the last word as a prefix; newest first, or by bm25 if
        ``ranked``. Any text is safe: it is never read as FTS5 syntax."""
        try:
            hits = _search.search(self._db, query, limit, ranked=ranked)
            # (words inside attached documents, issue 14: the chunks' own index)
            hits = with_document_hits(self._db, query, hits, limit)
            # (tool calls' and results' text, issue 16: an index of its own)
            return with_tool_hits(self._db, query, hits, limit, ranked=ranked)
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._failure("search", e) from e
