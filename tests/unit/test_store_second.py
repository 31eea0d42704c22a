"""A second connection to an open store (export, import and a move's copy run on
threads of their own): it does none of the opening work, and a move is a copy then
a switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.history.store import ChatStore, MessageStatus
from tests.unit.cipher_modes import both_ciphers

pytestmark = both_ciphers


def test_a_second_connection_leaves_a_streaming_reply_alone(tmp_path: Path) -> None:
    with ChatStore(tmp_path / "chats.sqlite3") as store:
        conv = store.create_conversation("Streaming")
        user = store.add_message(conv.id, "user", "Hi")
        reply = store.add_message(conv.id, "assistant", "Hel", status=MessageStatus.STREAMING)
        with ChatStore.second(store.path, read_only=True) as reader, reader.snapshot():
            assert [m.id for m in reader.messages(conv.id)] == [user.id, reply.id]
        assert store.message(reply.id).status is MessageStatus.STREAMING  # type: ignore[union-attr]
        with ChatStore.second(store.path) as writer:
            writer.rename_conversation(conv.id, "Renamed elsewhere")
        assert store.conversation(conv.id).title == "Renamed elsewhere"  # type: ignore[union-attr]


def test_a_second_connection_needs_the_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="chat history"):
        ChatStore.second(tmp_path / "none.sqlite3")
    assert not (tmp_path / "none.sqlite3").exists()  # not made, empty


def test_copy_then_switch_moves_the_store(tmp_path: Path) -> None:
    old, new = tmp_path / "a" / "chats.sqlite3", tmp_path / "b" / "chats.sqlite3"
    with ChatStore(old) as store:
        conv = store.create_conversation("Kept")
        before = store.commits
        with ChatStore.second(old, read_only=True) as source:
            source.copy_to(new)
            with pytest.raises(StoreError, match="already exists"):
                source.copy_to(new)
        assert store.commits == before  # the copy wrote nothing through the store
        store.switch_to(new)
        assert store.path == new and not old.exists()
        assert store.conversation(conv.id) is not None
        store.move_to(old)  # both halves at once
        assert store.path == old and not new.exists()
        assert [c.title for c in store.list_conversations()] == ["Kept"]
