"""The chat store against a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from engine.errors import KnownError, StoreError
from engine.history.recorder import ReplyRecorder
from engine.history.store import (
    DELETED_KEEP_S,
    SCHEMA_VERSION,
    ChatStore,
    Conversation,
    MessageStatus,
)
from tests.unit.cipher_modes import both_ciphers, connect_raw

pytestmark = both_ciphers


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
    with closing(connect_raw(path)) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


def test_creates_the_file_with_schema_and_wal(store: ChatStore, db_path: Path) -> None:
    assert store.path == db_path
    assert db_path.is_file()
    assert pragma(db_path, "user_version") == SCHEMA_VERSION
    assert pragma(db_path, "journal_mode") == "wal"
    with closing(connect_raw(db_path)) as db:
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {
        "conversations_listed",
        "conversations_deleted",
        "messages_in_order",
        "messages_tree",
        "messages_streaming",
    } <= indexes
    assert "conversations_newest" not in indexes  # replaced in v2


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


def test_delete_is_undoable_until_purged(store: ChatStore, db_path: Path, clock: FakeClock) -> None:
    keep = store.create_conversation("keep")
    gone = store.create_conversation("gone")
    store.add_message(keep.id, "user", "stays")
    store.add_message(gone.id, "user", "goes")
    store.add_message(gone.id, "assistant", "goes too")
    clock.now += 5
    store.delete_conversation(gone.id)
    store.delete_conversation(gone.id)  # twice is fine, and keeps the first time
    store.delete_conversation(9999)  # a missing id is fine
    assert store.list_conversations() == [store.conversation(keep.id)]
    assert store.conversation(gone.id) is None
    deleted = store.conversation(gone.id, include_deleted=True)
    assert deleted is not None and deleted.deleted_at == 1005.0
    assert store.list_conversations(deleted=True) == [deleted]
    assert store.count_conversations() == 1 and store.count_conversations(deleted=True) == 1
    with pytest.raises(KeyError):
        store.add_message(gone.id, "user", "not into a deleted chat")

    restored = store.undo_delete(gone.id)
    assert restored is not None and restored.deleted_at is None
    assert [c.id for c in store.list_conversations()] == [gone.id, keep.id]
    assert [m.content for m in store.messages(gone.id)] == ["goes", "goes too"]

    store.delete_conversation(gone.id)
    clock.now += 10
    assert store.purge_deleted(older_than_s=60) == 0  # deleted 10 s ago: kept
    assert store.purge_deleted() == 1
    assert store.undo_delete(gone.id) is None
    assert store.messages(gone.id) == []
    with closing(connect_raw(db_path)) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


def test_old_deletions_are_purged_on_open(db_path: Path, clock: FakeClock) -> None:
    with ChatStore(db_path, clock=clock) as first:
        old = first.create_conversation("old")
        first.add_message(old.id, "user", "bye")
        recent = first.create_conversation("recent")
        first.delete_conversation(old.id)
        clock.now += DELETED_KEEP_S - 1
        first.delete_conversation(recent.id)
    clock.now += 2  # old was deleted just over DELETED_KEEP_S ago, recent 2 s ago
    with ChatStore(db_path, clock=clock) as second:
        assert second.list_conversations(deleted=True) == [
            second.conversation(recent.id, include_deleted=True)
        ]
        assert second.undo_delete(old.id) is None
        assert second.messages(old.id) == []


def test_pinned_first_and_pages(store: ChatStore, clock: FakeClock) -> None:
    convs = []
    for i in range(7):
        clock.now += 1
        convs.append(store.create_conversation(f"chat {i}"))
    store.set_pinned(convs[2].id, True)
    store.set_pinned(convs[4].id, True)
    store.set_pinned(convs[4].id, True)  # idempotent
    listed = store.list_conversations()
    assert [c.title for c in listed] == [
        "chat 4", "chat 2", "chat 6", "chat 5", "chat 3", "chat 1", "chat 0",
    ]  # fmt: skip
    assert listed[0].pinned and not listed[2].pinned
    assert store.list_conversations(limit=3) == listed[:3]
    assert store.list_conversations(limit=3, offset=3) == listed[3:6]
    assert store.list_conversations(limit=3, offset=6) == listed[6:]
    assert store.list_conversations(offset=5) == listed[5:]
    assert store.list_conversations(limit=0) == []
    store.set_pinned(convs[4].id, False)
    assert [c.title for c in store.list_conversations(limit=2)] == ["chat 2", "chat 6"]


def test_an_auto_title_never_replaces_a_rename(store: ChatStore) -> None:
    placeholder = store.create_conversation()
    assert placeholder.title == "New chat" and placeholder.title_is_auto
    assert store.set_auto_title(placeholder.id, "  Weekend plans ")
    assert store.conversation(placeholder.id).title == "Weekend plans"  # type: ignore[union-attr]
    assert store.set_auto_title(placeholder.id, "Better plans")  # still automatic
    assert not store.set_auto_title(placeholder.id, "   ")
    store.rename_conversation(placeholder.id, "Mine")
    assert not store.set_auto_title(placeholder.id, "Hearth's idea")
    conv = store.conversation(placeholder.id)
    assert conv is not None and conv.title == "Mine" and not conv.title_is_auto

    typed = store.create_conversation("Typed by the person")
    assert not typed.title_is_auto
    assert not store.set_auto_title(typed.id, "auto")
    provisional = store.create_conversation("first words of the question", title_is_auto=True)
    assert store.set_auto_title(provisional.id, "A summary")
    assert not store.set_auto_title(9999, "nobody")


def test_per_chat_settings(store: ChatStore, db_path: Path) -> None:
    conv = store.create_conversation()
    assert store.conversation_settings(conv.id) == {}
    store.set_conversation_settings(conv.id, {"enable_thinking": True, "temperature": 0.6})
    assert store.conversation_settings(conv.id) == {"enable_thinking": True, "temperature": 0.6}
    with closing(connect_raw(db_path)) as db:  # a damaged value reads as "no settings"
        db.execute("UPDATE conversations SET settings = '[1, 2' WHERE id = ?", (conv.id,))
        db.commit()
    assert store.conversation_settings(conv.id) == {}
    assert store.conversation_settings(9999) == {}


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


@pytest.mark.plain_file
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
    with closing(connect_raw(db_path)) as db:
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


# -- schema v1 -> v2 -------------------------------------------------------------------

# Written by Hearth's v1 store code (engine/history/store.py at git 44080db), not by this
# one: conversations 1, 3, 4 (2 was deleted), a system prompt, a stopped reply,
# a reply left STREAMING by a process that died, and non-ASCII text.
V1_FILE = Path(__file__).parent / "data" / "store_v1.sqlite3"


@pytest.mark.plain_file
def test_a_v1_file_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "hearth.sqlite3"
    path.write_bytes(V1_FILE.read_bytes())
    assert pragma(path, "user_version") == 1
    with ChatStore(path) as store:
        convs = store.list_conversations()
        assert [(c.id, c.title) for c in convs] == [
            (4, "New chat"),
            (3, "Renamed by hand"),
            (1, "Trip to Lyon"),
        ]
        # Titles from v1 may have been typed by the person: never replaced automatically.
        assert not any(c.title_is_auto or c.pinned or c.deleted_at for c in convs)
        lyon = store.messages(1)
        assert [(m.id, m.parent_id, m.role) for m in lyon] == [
            (1, None, "system"),
            (2, 1, "user"),
            (3, 2, "assistant"),
            (4, 3, "user"),
            (5, 4, "assistant"),
        ]
        assert lyon[1].content == "What should I see in Lyon? ünïcödé ✓ 🔥"
        assert lyon[4].status is MessageStatus.STOPPED
        assert all(m.thinking == "" and m.variant_count == 1 and m.active for m in lyon)
        story = store.messages(3)
        assert story[-1].status is MessageStatus.INTERRUPTED
        assert story[-1].content == "Once upon a time, a keeper"
        assert store.messages(4) == []
        # Existing messages are searchable; ids are never reused.
        assert [h.message_id for h in store.search("traboules")] == [3]
        assert store.add_message(1, "user", "Merci").id == 9
        assert store.messages(1)[-1].parent_id == 5
        assert store.check_integrity(quick=False) == []
    assert pragma(path, "user_version") == SCHEMA_VERSION
    with ChatStore(path) as again:  # opening an upgraded file changes nothing
        assert [m.content for m in again.messages(1)][-1] == "Merci"
        assert [c.id for c in again.list_conversations()] == [1, 4, 3]


# -- ReplyRecorder: thinking and continuing ------------------------------------------


def test_recorder_saves_thinking_apart_in_the_same_update(store: ChatStore) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    mono = FakeClock(0.0)
    writes: list[tuple[str, str | None, int | None]] = []
    real_update = store.update_message

    def spy(
        msg_id: int,
        content: str,
        status: MessageStatus | None = None,
        *,
        thinking: str | None = None,
        thinking_ms: int | None = None,
    ) -> None:
        writes.append((content, thinking, thinking_ms))
        real_update(msg_id, content, status, thinking=thinking, thinking_ms=thinking_ms)

    store.update_message = spy  # type: ignore[method-assign]
    rec = ReplyRecorder(store, msg.id, interval=1.0, clock=mono)
    rec.append_thinking("The person ")
    mono.now += 0.5
    rec.append_thinking("wants a haiku.")
    assert writes == []
    mono.now += 0.5
    rec.append_thinking("")  # 1 s: thinking saved, answer still empty, one write
    assert writes == [("", "The person wants a haiku.", 1000)]
    mono.now += 1.5
    rec.append("Autumn ")  # the answer starts: thinking took 2.5 s
    assert rec.thinking_ms == 2500
    assert writes[-1] == ("Autumn ", "The person wants a haiku.", 2500)
    mono.now += 1
    rec.append("moon")  # only the answer changed: thinking is not rewritten
    assert writes[-1] == ("Autumn moon", None, None)
    rec.finish(MessageStatus.COMPLETE)
    saved = store.message(msg.id)
    assert saved is not None
    assert (saved.content, saved.thinking, saved.thinking_ms, saved.status) == (
        "Autumn moon",
        "The person wants a haiku.",
        2500,
        MessageStatus.COMPLETE,
    )
    # Thinking never leaks into what the model is sent back, nor into search.
    assert store.messages(conv.id)[0].content == "Autumn moon"
    assert store.search("haiku") == []


def test_recorder_finish_takes_the_engines_thinking_time(store: ChatStore) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    rec = ReplyRecorder(store, msg.id, clock=FakeClock())
    rec.append_thinking("hmm")
    rec.finish(MessageStatus.STOPPED, thinking_ms=12_345)
    saved = store.message(msg.id)
    assert saved is not None and saved.thinking_ms == 12_345 and saved.content == ""


def test_continue_a_cut_off_reply(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "Count to six")
    first = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    rec = ReplyRecorder(store, first.id, clock=FakeClock())
    rec.append_thinking("easy")
    rec.append("one two three")
    rec.finish(MessageStatus.LENGTH, thinking_ms=700)

    more = ReplyRecorder.resume(store, first.id, clock=FakeClock())
    assert store.message(first.id).status is MessageStatus.STREAMING  # type: ignore[union-attr]
    assert more.text == "one two three" and more.message_id == first.id
    more.append(" four five six")
    more.finish(MessageStatus.COMPLETE)
    (_user, reply) = store.messages(conv.id)
    assert reply.id == first.id and reply.variant_count == 1
    assert reply.content == "one two three four five six"
    assert (reply.thinking, reply.thinking_ms, reply.status) == (
        "easy",
        700,
        MessageStatus.COMPLETE,
    )
    with pytest.raises(KeyError):
        ReplyRecorder.resume(store, 9999)


def test_a_reply_cut_by_the_full_context_is_kept_as_such(db_path: Path) -> None:
    """CONTEXT ("the conversation filled the context window") is its own status, not
    LENGTH: stored, searchable, continued, exported with its note and imported back."""
    from engine.history.export import export_json, export_markdown, import_json

    store = ChatStore(db_path)
    conv = store.create_conversation("Lighthouse")
    store.add_message(conv.id, "user", "Tell a long story")
    reply = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    rec = ReplyRecorder(store, reply.id, clock=FakeClock())
    rec.append("The keeper climbed the stairs")
    rec.finish(MessageStatus.CONTEXT)
    store.close()

    store = ChatStore(db_path)  # as stored on disk
    assert store.message(reply.id).status is MessageStatus.CONTEXT  # type: ignore[union-attr]
    assert [h.message_id for h in store.search("keeper")] == [reply.id]
    markdown = export_markdown(store)
    assert "*(cut off: the conversation filled the model's context window)*" in markdown
    assert "reply length limit" not in markdown
    (copy_id,) = import_json(store, export_json(store, [conv.id]))
    assert [m.status for m in store.messages(copy_id)] == [
        MessageStatus.COMPLETE,
        MessageStatus.CONTEXT,
    ]
    more = ReplyRecorder.resume(store, reply.id, clock=FakeClock())  # Continue
    more.append(" to the lamp.")
    more.finish(MessageStatus.COMPLETE)
    assert store.message(reply.id).content == "The keeper climbed the stairs to the lamp."  # type: ignore[union-attr]
    store.close()
