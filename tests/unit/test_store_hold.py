"""The store's two pauses (issue 17): ``hold_writes`` while a conversion copies the
file (reads go on, every write is refused with the sentence, SQLite's query_only
backs it), and ``lock`` ("Lock now": the file closed, the key forgotten). Real SQLite,
plain and encrypted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.history import cipher
from engine.history.store import ChatStore

KEY = bytes(range(32))


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_held_writes_are_refused_with_the_sentence_and_reads_go_on(
    tmp_path: Path, key: bytes | None
) -> None:
    store = ChatStore(tmp_path / "h.sqlite3", key=key)
    conv = store.create_conversation("Pelicans").id
    store.add_message(conv, "user", "pelicans fly low")
    store.hold_writes("Encrypting your chats: nothing can be saved until it is done.")
    assert Path(f"{store.path}-wal").stat().st_size == 0  # all in the file for the copy
    with pytest.raises(StoreError, match="nothing can be saved"):
        store.add_message(conv, "user", "lost?")
    with pytest.raises(StoreError, match="nothing can be saved"):
        store.rename_conversation(conv, "Other")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # SQLite's own refusal
        store._db.execute("INSERT INTO conversations (title) VALUES ('x')")
    assert [h.snippet for h in store.search("pelicans")] and store.messages(conv)
    store.close()
    store.reopen(key)
    assert store.writes_held is None
    store.add_message(conv, "assistant", "Saved again.")
    assert len(store.messages(conv)) == 2
    store.close()


def test_a_locked_store_has_no_connection_and_no_key_until_reopened(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "h.sqlite3", key=KEY)
    conv = store.create_conversation("Otters").id
    store.add_message(conv, "user", "otters hold hands")
    store.lock("Your chats are locked: unlock them to read or write them.")
    assert store.locked and not store.encrypted and cipher.key_for(store.path) is None
    with pytest.raises(StoreError, match="locked"):
        store.search("otters")
    with pytest.raises(StoreError, match="locked"):
        store.add_message(conv, "user", "while locked")
    store.close()  # closing a locked store is fine (quit while locked)
    store.reopen(KEY)
    assert not store.locked and store.search("otters")
    store.close()
