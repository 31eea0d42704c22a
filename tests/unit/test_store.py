"""The chat store against a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from engine.errors import KnownError, StoreError
from engine.store import (
    SCHEMA_VERSION,
    ChatStore,
    Conversation,
    MessageStatus,
    ReplyRecorder,
)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "chats.sqlite3"  # the parent does not exist yet


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[ChatStore]:
    s = ChatStore(db_path, clock=clock)
    yield s
    s.close()


def pragma(path: Path, name: str) -> object:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


def test_creates_the_file_with_schema_and_wal(store: ChatStore, db_path: Path) -> None:
    assert store.path == db_path
    assert db_path.is_file()
    assert pragma(db_path, "user_version") == SCHEMA_VERSION == 1
    assert pragma(db_path, "journal_mode") == "wal"
    with closing(sqlite3.connect(db_path)) as db:
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"conversations_newest", "messages_in_order"} <= indexes


def test_conversations_newest_first(store: ChatStore, clock: FakeClock) -> None:
    a = store.create_conversation("  First  ")
    clock.now += 1
    b = store.create_conversation()
    c = store.create_conversation("Same time as b")
    assert a.title == "First" and b.title == "New chat"
    assert store.list_conversations() == [c, b, a]  # ties by id, newest first

    clock.now += 1
    store.add_message(a.id, "user", "hello")  # bumps a to the top
    assert [x.id for x in store.list_conversations()] == [a.id, c.id, b.id]
    assert store.conversation(a.id) == Conversation(a.id, "First", 1000.0, 1002.0)
    assert store.conversation(9999) is None


def test_rename(store: ChatStore) -> None:
    conv = store.create_conversation("Old")
    store.rename_conversation(conv.id, "  Trip to Lyon \n")
    assert store.conversation(conv.id) == Conversation(
        conv.id, "Trip to Lyon", conv.created_at, conv.updated_at
    )
    store.rename_conversation(conv.id, "   ")
    assert store.conversation(conv.id).title == "New chat"  # type: ignore[union-attr]


def test_delete_cascades_to_messages(store: ChatStore, db_path: Path) -> None:
    keep = store.create_conversation("keep")
    gone = store.create_conversation("gone")
    store.add_message(keep.id, "user", "stays")
    store.add_message(gone.id, "user", "goes")
    store.add_message(gone.id, "assistant", "goes too")
    store.delete_conversation(gone.id)
    store.delete_conversation(gone.id)  # a missing id is fine
    assert store.list_conversations() == [store.conversation(keep.id)]
    assert store.messages(gone.id) == []
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


def test_messages_in_order_and_update(store: ChatStore, clock: FakeClock) -> None:
    conv = store.create_conversation()
    sys_msg = store.add_message(conv.id, "system", "Be brief.")
    user = store.add_message(conv.id, "user", "Hi")
    reply = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    assert reply.status is MessageStatus.STREAMING and reply.created_at == clock.now
    store.update_message(reply.id, "Hel")
    assert store.messages(conv.id)[-1].status is MessageStatus.STREAMING
    store.update_message(reply.id, "Hello!", MessageStatus.COMPLETE)
    store.update_message(123456, "no such message")  # ignored
    got = store.messages(conv.id)
    assert [m.id for m in got] == [sys_msg.id, user.id, reply.id]
    assert [(m.role, m.content, m.status) for m in got] == [
        ("system", "Be brief.", MessageStatus.COMPLETE),
        ("user", "Hi", MessageStatus.COMPLETE),
        ("assistant", "Hello!", MessageStatus.COMPLETE),
    ]


def test_caller_bugs_are_not_known_errors(store: ChatStore) -> None:
    with pytest.raises(KeyError):
        store.add_message(42, "user", "nobody home")
    conv = store.create_conversation()
    with pytest.raises(ValueError, match="role"):
        store.add_message(conv.id, "robot", "beep")  # type: ignore[arg-type]
    assert store.messages(conv.id) == []


def test_survives_close_and_reopen(db_path: Path) -> None:
    with ChatStore(db_path) as first:
        conv = first.create_conversation("Persistent")
        first.add_message(conv.id, "user", "ünïcödé ✓ 🔥")
        first.add_message(conv.id, "assistant", "ok", MessageStatus.STOPPED)
        before = first.messages(conv.id)
    with ChatStore(db_path) as second:
        assert second.list_conversations() == [second.conversation(conv.id)]
        assert second.messages(conv.id) == before
        assert second.messages(conv.id)[0].content == "ünïcödé ✓ 🔥"
    assert pragma(db_path, "user_version") == SCHEMA_VERSION


def test_streaming_becomes_interrupted_on_reopen(db_path: Path) -> None:
    with ChatStore(db_path) as first:
        conv = first.create_conversation()
        first.add_message(conv.id, "user", "Tell me a story")
        reply = first.add_message(conv.id, "assistant", "Once upon", MessageStatus.STREAMING)
    with ChatStore(db_path) as second:
        got = second.messages(conv.id)[-1]
    assert got.id == reply.id
    assert got.status is MessageStatus.INTERRUPTED
    assert got.content == "Once upon"


def test_garbage_file_is_a_readable_error_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    garbage = b"this is not a database at all\x00\xff" * 200
    path.write_bytes(garbage)
    with pytest.raises(StoreError) as info:
        ChatStore(path)
    message = str(info.value)
    assert isinstance(info.value, KnownError)
    assert str(path) in message and "cannot be read" in message
    assert "move it elsewhere" in message
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chats.sqlite3"]


def test_newer_database_is_refused(db_path: Path) -> None:
    ChatStore(db_path).close()
    with closing(sqlite3.connect(db_path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.commit()
    with pytest.raises(StoreError, match="newer version of Hearth"):
        ChatStore(db_path)
    assert pragma(db_path, "user_version") == SCHEMA_VERSION + 1


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "a folder"
    folder.mkdir()
    with pytest.raises(StoreError, match="Could not open the chat history"):
        ChatStore(folder)


# -- ReplyRecorder -----------------------------------------------------------------


def stored_text(store: ChatStore, msg_id: int) -> tuple[str, MessageStatus]:
    (msg,) = [m for c in store.list_conversations() for m in store.messages(c.id) if m.id == msg_id]
    return msg.content, msg.status


def test_recorder_flushes_at_most_every_interval(store: ChatStore) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    mono = FakeClock(50.0)
    writes: list[str] = []
    real_update = store.update_message

    def spy(msg_id: int, content: str, status: MessageStatus | None = None) -> None:
        writes.append(content)
        real_update(msg_id, content, status)

    store.update_message = spy  # type: ignore[method-assign]
    rec = ReplyRecorder(store, msg.id, interval=1.0, clock=mono)

    # Steps that are exact in binary, so the sums are too.
    for piece in ["Hel", "lo", ","]:
        mono.now += 0.25
        rec.append(piece)
    assert writes == []  # 0.75 s: nothing saved yet
    assert rec.text == "Hello,"
    assert stored_text(store, msg.id) == ("", MessageStatus.STREAMING)

    mono.now += 0.25
    rec.append(" wor")  # 1.0 s since the start: saved
    assert writes == ["Hello, wor"]
    mono.now += 0.5
    rec.append("ld")
    rec.append("")
    assert writes == ["Hello, wor"]
    mono.now += 0.5
    rec.append("")  # an empty piece still lets the timer save what is pending
    assert writes == ["Hello, wor", "Hello, world"]
    mono.now += 5
    rec.flush()  # nothing new: no write
    assert writes == ["Hello, wor", "Hello, world"]
    assert stored_text(store, msg.id) == ("Hello, world", MessageStatus.STREAMING)

    rec.append("!")
    rec.finish(MessageStatus.COMPLETE)
    assert stored_text(store, msg.id) == ("Hello, world!", MessageStatus.COMPLETE)
    assert rec.text == "Hello, world!"
    with pytest.raises(RuntimeError):
        rec.append("late")


def test_recorder_finish_keeps_every_piece(store: ChatStore) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    mono = FakeClock()
    rec = ReplyRecorder(store, msg.id, interval=1.0, clock=mono)
    pieces = [f"tok{i} " for i in range(2000)]
    for i, piece in enumerate(pieces):
        if i % 7 == 0:
            mono.now += 0.37
        rec.append(piece)
    rec.finish(MessageStatus.STOPPED)
    assert stored_text(store, msg.id) == ("".join(pieces), MessageStatus.STOPPED)
    with pytest.raises(ValueError):
        rec.finish(MessageStatus.STREAMING)


def test_recorder_survives_a_deleted_conversation(store: ChatStore) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    rec = ReplyRecorder(store, msg.id, interval=0.0)
    rec.append("half")
    store.delete_conversation(conv.id)
    rec.append(" a reply")
    rec.finish(MessageStatus.COMPLETE)
    assert store.list_conversations() == []
