"""Messages as a tree: each points at the message before it (``parent_id``).

Messages with the same parent are versions of one turn (a regenerated reply,
an edited question). The chosen version of each turn makes the *active path*:
what ``messages()`` returns, what the person sees and the model is sent.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import cast, get_args

from engine.history import attachments as _attachments
from engine.history.db import StoreDatabase
from engine.history.parts import parts_from_json, parts_to_json
from engine.history.tree import Row, activate, active_path, children_of, subtree
from engine.history.types import Conversation, MessageStatus, StoredMessage
from engine.types import AttachmentPart, Part, Role

DEFAULT_TITLE = "New chat"
_ROLES: frozenset[str] = frozenset(get_args(Role))
# id, parent_id, chosen first: the tree helpers read those three by position.
_MSG_COLS = (
    "id, parent_id, chosen, conversation_id, role, content, status, created_at,"
    " thinking, thinking_ms, model, parts"
)
ImportItem = tuple[Conversation, Sequence[StoredMessage], Mapping[str, object]]


def _described(parts: Sequence[AttachmentPart]) -> tuple[AttachmentPart, ...]:
    """The parts without their bytes, as a stored message describes them."""
    return tuple(dataclasses.replace(p, data=b"") if p.data else p for p in parts)


def _message(
    row: Row,
    siblings: Sequence[Row],
    active: Row | None,
    attached: Mapping[int, tuple[AttachmentPart, ...]],
) -> StoredMessage:
    mid, parent, _, cid, role, content, status, created, thinking, thinking_ms, model, parts = row
    return StoredMessage(
        mid,
        cid,
        cast(Role, role),
        content,
        MessageStatus(status),
        created,
        thinking,
        thinking_ms,
        parent,
        siblings.index(row),
        len(siblings),
        row is active,
        model,
        attached.get(mid, ()),
        parts_from_json(parts),
    )


class MessageStore(StoreDatabase):
    """The message half of ChatStore."""

    def _structure(self, conv_id: int) -> list[Row]:
        # Covered by the messages_tree index: no message text is read.
        return self._db.execute(
            "SELECT id, parent_id, chosen FROM messages WHERE conversation_id = ?",
            (conv_id,),
        ).fetchall()

    def _tree_rows(self, conv_id: int) -> list[Row]:
        return self._rows(
            f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? ORDER BY id", (conv_id,)
        )

    def _insert(
        self,
        conv_id: int,
        parent: int | None,
        chosen: int,
        role: str,
        content: str,
        status: MessageStatus,
        created: float,
        thinking: str,
        thinking_ms: int,
        model: str = "",
        parts: str = "",
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO messages (conversation_id, parent_id, chosen, role, content, status,"
            " created_at, thinking, thinking_ms, model, parts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                conv_id, parent, chosen, role, content, status.value, created, thinking,
                thinking_ms, model, parts,
            ),
        )  # fmt: skip
        return cast(int, cur.lastrowid)

    def _touch(self, conv_id: int, now: float) -> None:
        updated = self._db.execute(
            "UPDATE conversations SET updated_at = ? WHERE id = ? AND deleted_at IS NULL",
            (now, conv_id),
        ).rowcount
        if updated == 0:
            raise KeyError(f"no conversation with id {conv_id}")

    def add_message(
        self,
        conv_id: int,
        role: Role,
        content: str,
        status: MessageStatus = MessageStatus.COMPLETE,
        *,
        thinking: str = "",
        thinking_ms: int = 0,
        model: str = "",
        attachments: Sequence[AttachmentPart] = (),
    ) -> StoredMessage:
        """Append a message to the end of the active path; the conversation is updated now.
        ``model``: which model writes it (a reply), as ``ModelInfo.path``.
        ``attachments`` (images, documents) are stored with it, in one transaction; each
        brings its bytes unless the store holds them already (see attachments.insert).

        Raises ``KeyError`` if there is no such conversation (a caller's bug).
        """
        if role not in _ROLES:
            raise ValueError(f"role must be one of {sorted(_ROLES)}, not {role!r}")
        status = MessageStatus(status)
        now = self._clock()
        with self._writing():
            self._touch(conv_id, now)
            path = active_path(children_of(self._structure(conv_id)))
            parent = path[-1][0] if path else None
            mid = self._insert(
                conv_id, parent, 0, role, content, status, now, thinking, thinking_ms, model
            )
            _attachments.insert(self._db, mid, attachments)
        return StoredMessage(
            mid, conv_id, role, content, status, now, thinking, thinking_ms, parent, model=model,
            attachments=_described(attachments),
        )  # fmt: skip

    def add_variant(
        self,
        msg_id: int,
        content: str,
        status: MessageStatus = MessageStatus.COMPLETE,
        *,
        thinking: str = "",
        thinking_ms: int = 0,
        model: str = "",
        attachments: Sequence[AttachmentPart] = (),
    ) -> StoredMessage:
        """A new version of a message: same place, same role; it becomes the one shown.
        ``attachments``: the new version's own (an edit that keeps the images passes
        the old version's, which share their stored bytes).

        Regenerate = ``add_variant(reply.id, "", MessageStatus.STREAMING)``; edit =
        ``add_variant(question.id, new_text)``. The earlier version keeps its branch
        (the messages that followed it); the new one starts with none.
        Raises ``KeyError`` if there is no such message.
        """
        status = MessageStatus(status)
        now = self._clock()
        with self._writing():
            found = self._db.execute(
                "SELECT conversation_id, role, parent_id FROM messages WHERE id = ?", (msg_id,)
            ).fetchone()
            if found is None:
                raise KeyError(f"no message with id {msg_id}")
            conv_id, role, parent = found
            self._touch(conv_id, now)
            rows = self._structure(conv_id)
            children = children_of(rows)
            if parent is not None:  # the new version must be on the active path
                self._apply(activate(children, {r[0]: r for r in rows}, parent))
            siblings = children[parent]
            chosen = max(r[2] for r in siblings) + 1
            mid = self._insert(
                conv_id, parent, chosen, role, content, status, now, thinking, thinking_ms,
                model,
            )  # fmt: skip
            _attachments.insert(self._db, mid, attachments)
        return StoredMessage(
            mid, conv_id, role, content, status, now, thinking, thinking_ms, parent,
            len(siblings), len(siblings) + 1, model=model, attachments=_described(attachments),
        )  # fmt: skip

    def select_variant(self, msg_id: int) -> None:
        """Show this version of its turn (and the versions that lead to it).

        Raises ``KeyError`` if there is no such message.
        """
        with self._writing():
            found = self._db.execute(
                "SELECT conversation_id FROM messages WHERE id = ?", (msg_id,)
            ).fetchone()
            if found is None:
                raise KeyError(f"no message with id {msg_id}")
            rows = self._structure(found[0])
            self._apply(activate(children_of(rows), {r[0]: r for r in rows}, msg_id))

    def _apply(self, chosen: Sequence[tuple[int, int]]) -> None:
        self._db.executemany(
            "UPDATE messages SET chosen = ? WHERE id = ?", [(c, mid) for mid, c in chosen]
        )

    def update_message(
        self,
        msg_id: int,
        content: str,
        status: MessageStatus | None = None,
        *,
        thinking: str | None = None,
        thinking_ms: int | None = None,
        parts: Sequence[Part] | None = None,
    ) -> None:
        """Replace a message's text (and status, thinking, thinking time, parts if given),
        in place.

        A missing message is ignored: its conversation may have been deleted
        while the reply was still streaming.
        """
        sets, params = ["content = ?"], list[object]([content])
        for column, value in (
            ("status", None if status is None else MessageStatus(status).value),
            ("thinking", thinking),
            ("thinking_ms", thinking_ms),
            ("parts", None if parts is None else parts_to_json(parts)),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        with self._writing():
            self._db.execute(
                f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*params, msg_id)
            )

    def delete_message(self, msg_id: int) -> list[int]:
        """Delete one message; returns the ids removed (none if there was no such message).

        If the message is one of several versions, what followed it goes too (it
        belonged to that version) and another version is shown. Otherwise the
        messages after it stay and now follow the message before it.
        """
        with self._writing():
            found = self._db.execute(
                "SELECT conversation_id, parent_id FROM messages WHERE id = ?", (msg_id,)
            ).fetchone()
            if found is None:
                return []
            conv_id, parent = found
            children = children_of(self._structure(conv_id))
            if len(children[parent]) > 1:
                doomed = subtree(children, msg_id)
            else:
                self._db.execute(
                    "UPDATE messages SET parent_id = ? WHERE conversation_id = ? AND parent_id = ?",
                    (parent, conv_id, msg_id),
                )
                doomed = [msg_id]
            self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in doomed])
        return doomed

    def messages(self, conv_id: int) -> list[StoredMessage]:
        """The conversation's active path, oldest first: what the person sees and the
        model is sent."""
        children = children_of(self._tree_rows(conv_id))
        path = active_path(children)
        attached = self._attached(conv_id)
        return [_message(row, children[row[1]], row, attached) for row in path]

    def _attached(self, conv_id: int) -> dict[int, tuple[AttachmentPart, ...]]:
        try:
            return _attachments.of_conversation(self._db, conv_id)
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._failure("read", e) from e

    def all_messages(self, conv_id: int) -> list[StoredMessage]:
        """Every message of the conversation, every version, oldest first."""
        children = children_of(self._tree_rows(conv_id))
        attached = self._attached(conv_id)
        out: list[StoredMessage] = []
        for siblings in children.values():
            active = max(siblings, key=lambda r: (r[2], r[0]))
            out.extend(_message(row, siblings, active, attached) for row in siblings)
        out.sort(key=lambda m: m.id)
        return out

    def message(self, msg_id: int) -> StoredMessage | None:
        return next((m for m in self.variants(msg_id) if m.id == msg_id), None)

    def variants(self, msg_id: int) -> list[StoredMessage]:
        """The versions of a message's turn (itself included), oldest first; [] if missing."""
        found = self._rows(
            "SELECT conversation_id, parent_id FROM messages WHERE id = ?", (msg_id,)
        )
        if not found:
            return []
        siblings = self._rows(
            f"SELECT {_MSG_COLS} FROM messages WHERE conversation_id = ? AND parent_id IS ?"
            " ORDER BY id",
            found[0],
        )
        active = max(siblings, key=lambda r: (r[2], r[0]))
        attached = _attachments.of_messages(self._db, (r[0] for r in siblings))
        return [_message(row, siblings, active, attached) for row in siblings]

    def import_conversations(self, items: Sequence[ImportItem]) -> list[int]:
        """Add whole conversations (all or none), keeping their times; the new ids.

        Each message's ``id`` and ``parent_id`` are keys local to the item (a parent
        comes before its children); ``active`` marks the version shown. A reply
        still marked STREAMING is stored as INTERRUPTED. Its ``attachments`` bring
        their bytes (``data``).
        """
        new_ids = []
        with self._writing():
            for conv, messages, settings in items:
                cur = self._db.execute(
                    "INSERT INTO conversations (title, created_at, updated_at, pinned,"
                    " title_is_auto, settings) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        conv.title.strip() or DEFAULT_TITLE,
                        conv.created_at,
                        conv.updated_at,
                        int(conv.pinned),
                        int(conv.title_is_auto),
                        json.dumps(dict(settings), sort_keys=True, ensure_ascii=False),
                    ),
                )
                conv_id = cast(int, cur.lastrowid)
                keys: dict[int, int] = {}
                for m in messages:
                    if m.role not in _ROLES:
                        raise ValueError(f"role must be one of {sorted(_ROLES)}, not {m.role!r}")
                    status = MessageStatus(m.status)
                    if status is MessageStatus.STREAMING:
                        status = MessageStatus.INTERRUPTED
                    parent = None if m.parent_id is None else keys[m.parent_id]
                    keys[m.id] = self._insert(
                        conv_id, parent, int(m.active), m.role, m.content, status,
                        m.created_at, m.thinking, m.thinking_ms, m.model, parts_to_json(m.parts),
                    )  # fmt: skip
                    _attachments.insert(self._db, keys[m.id], m.attachments)
                new_ids.append(conv_id)
        return new_ids
