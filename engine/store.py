"""The chat store: conversations and their messages in one SQLite file.

Every write commits at once. With WAL and ``synchronous=NORMAL`` a committed
write survives the death of the process (kill -9, a crash); only a power cut
can lose the last few commits. A reply is saved while it streams by
``ReplyRecorder``, so a crash loses at most about a second of it.

Threading: a ``ChatStore`` holds one connection and must be used from the
thread that created it (sqlite3 enforces this with ``ProgrammingError``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast, get_args

from engine.errors import StoreError
from engine.types import Conversation, MessageStatus, Role, StoredMessage

__all__ = ["ChatStore", "Conversation", "MessageStatus", "ReplyRecorder", "StoredMessage"]

DEFAULT_TITLE = "New chat"
_ROLES: frozenset[str] = frozenset(get_args(Role))


# Schema steps; step i brings the file from user_version i to i + 1. Append only:
# a released step is never edited. AUTOINCREMENT keeps ids from being reused after
# a delete, so a stale id held by the UI or a ReplyRecorder can never hit a newer row.
_MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL
                REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX conversations_newest ON conversations(updated_at DESC, id DESC)",
        "CREATE INDEX messages_in_order ON messages(conversation_id, id)",
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)


class ChatStore:
    """Conversations and messages in the SQLite file at ``path``."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)  # we commit ourselves
        except (OSError, sqlite3.Error) as e:
            raise self._failure("open", e) from e
        try:
            self._open()
        except sqlite3.OperationalError as e:  # locked, disk full, read-only: not the file
            self._db.close()
            raise self._failure("open", e) from e
        except sqlite3.DatabaseError as e:  # not a database, or a damaged one
            self._db.close()
            raise StoreError(
                f"The chat history at {path} cannot be read ({e}); it may be damaged. "
                "Hearth left the file as it is: move it elsewhere to start with an "
                "empty history, or restore it from a backup.",
                detail=repr(e),
            ) from e
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        db = self._db
        # Read before writing anything, so a file that is not a database stays untouched.
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The chat history at {self._path} was written by a newer version of "
                f"Hearth (format {version}; this version reads up to {SCHEMA_VERSION}). "
                "Update Hearth to open it."
            )
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        for step in range(version, SCHEMA_VERSION):
            with self._transaction():
                for statement in _MIGRATIONS[step]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {step + 1}")
        # A reply still marked as streaming belongs to a process that died.
        with self._transaction():
            db.execute(
                "UPDATE messages SET status = ? WHERE status = ?",
                (MessageStatus.INTERRUPTED.value, MessageStatus.STREAMING.value),
            )

    def _failure(self, verb: str, e: BaseException) -> StoreError:
        return StoreError(
            f"Could not {verb} the chat history at {self._path} ({e}). Check that the disk "
            "has free space, that you may write to the folder, and that no other Hearth "
            "is using it.",
            detail=repr(e),
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (disk full)
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A transaction whose environment failures become a sentence for the person."""
        try:
            with self._transaction():
                yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise  # a bug in the caller, not the environment
        except sqlite3.DatabaseError as e:
            raise self._failure("save to", e) from e

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._failure("read", e) from e

    @property
    def path(self) -> Path:
        return self._path

    # -- conversations -------------------------------------------------------------

    def create_conversation(self, title: str = DEFAULT_TITLE) -> Conversation:
        title = title.strip() or DEFAULT_TITLE
        now = self._clock()
        with self._writing():
            cur = self._db.execute(
                "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                (title, now, now),
            )
        return Conversation(cast(int, cur.lastrowid), title, now, now)

    def conversation(self, conv_id: int) -> Conversation | None:
        rows = self._rows(
            "SELECT id, title, created_at, updated_at FROM conversations WHERE id = ?",
            (conv_id,),
        )
        return Conversation(*rows[0]) if rows else None

    def list_conversations(self) -> list[Conversation]:
        """All conversations, the most recently updated first."""
        rows = self._rows(
            "SELECT id, title, created_at, updated_at FROM conversations"
            " ORDER BY updated_at DESC, id DESC"
        )
        return [Conversation(*row) for row in rows]

    def rename_conversation(self, conv_id: int, title: str) -> None:
        with self._writing():
            self._db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?",
                (title.strip() or DEFAULT_TITLE, conv_id),
            )

    def delete_conversation(self, conv_id: int) -> None:
        """Delete the conversation and its messages (a missing id is ignored)."""
        with self._writing():
            self._db.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))

    # -- messages ------------------------------------------------------------------

    def add_message(
        self,
        conv_id: int,
        role: Role,
        content: str,
        status: MessageStatus = MessageStatus.COMPLETE,
    ) -> StoredMessage:
        """Append a message and mark the conversation as just updated.

        Raises ``KeyError`` if there is no such conversation (a caller's bug).
        """
        if role not in _ROLES:
            raise ValueError(f"role must be one of {sorted(_ROLES)}, not {role!r}")
        status = MessageStatus(status)
        now = self._clock()
        with self._writing():
            updated = self._db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conv_id)
            ).rowcount
            if updated == 0:
                raise KeyError(f"no conversation with id {conv_id}")
            cur = self._db.execute(
                "INSERT INTO messages (conversation_id, role, content, status, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (conv_id, role, content, status.value, now),
            )
        return StoredMessage(cast(int, cur.lastrowid), conv_id, role, content, status, now)

    def update_message(
        self, msg_id: int, content: str, status: MessageStatus | None = None
    ) -> None:
        """Replace a message's text (and status, if given).

        A missing message is ignored: its conversation may have been deleted
        while the reply was still streaming.
        """
        with self._writing():
            if status is None:
                self._db.execute("UPDATE messages SET content = ? WHERE id = ?", (content, msg_id))
            else:
                self._db.execute(
                    "UPDATE messages SET content = ?, status = ? WHERE id = ?",
                    (content, MessageStatus(status).value, msg_id),
                )

    def messages(self, conv_id: int) -> list[StoredMessage]:
        """The conversation's messages, oldest first."""
        rows = self._rows(
            "SELECT id, conversation_id, role, content, status, created_at FROM messages"
            " WHERE conversation_id = ? ORDER BY id",
            (conv_id,),
        )
        return [
            StoredMessage(mid, cid, cast(Role, role), content, MessageStatus(status), created)
            for mid, cid, role, content, status, created in rows
        ]

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        self._db.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ReplyRecorder:
    """Saves a streaming reply while it streams: at most every `interval` s and at the end,
    so a kill -9 loses at most ~1 s.

    The message must already exist (typically added empty with status STREAMING).
    Used from the store's thread. If a save fails the text stays pending here, the
    ``StoreError`` propagates, and the next flush (at the next interval) tries again.
    """

    def __init__(
        self,
        store: ChatStore,
        message_id: int,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._message_id = message_id
        self._interval = interval
        self._clock = clock
        self._text = ""  # everything appended, joined lazily
        self._pending: list[str] = []  # pieces not yet joined into _text
        self._unsaved = False  # appended since the last write
        self._last_flush = clock()
        self._finished = False

    @property
    def text(self) -> str:
        if self._pending:  # one join per read, not per piece: no O(n^2)
            self._text += "".join(self._pending)
            self._pending.clear()
        return self._text

    def append(self, text: str) -> None:
        if self._finished:
            raise RuntimeError("append() after finish()")
        if text:
            self._pending.append(text)
            self._unsaved = True
        if self._clock() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        """Write the text so far if anything was appended since the last write."""
        # Restart the interval even if the write fails, so a full disk is not
        # retried on every token.
        self._last_flush = self._clock()
        if self._unsaved:
            self._store.update_message(self._message_id, self.text)
            self._unsaved = False

    def finish(self, status: MessageStatus) -> None:
        """Write the whole text with its final status."""
        if status is MessageStatus.STREAMING:
            raise ValueError("finish() needs a final status, not STREAMING")
        self._store.update_message(self._message_id, self.text, status)
        self._unsaved = False
        self._finished = True
