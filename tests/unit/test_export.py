"""Export to Markdown and JSON, and import JSON back, on real SQLite stores."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.errors import KnownError
from engine.history.export import (
    FORMAT,
    VERSION,
    ChatImportError,
    ExportWriteError,
    export_json,
    export_markdown,
    import_json,
    json_chunks,
    parse_json,
    write_export,
)
from engine.history.store import ChatStore, MessageStatus
from tests.unit.cipher_modes import both_ciphers

pytestmark = both_ciphers

WHEN = 1_750_000_000.0
Doc = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "a.sqlite3", clock=Clock())
    yield s
    s.close()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "b.sqlite3", clock=Clock())
    yield s
    s.close()


def fill(store: ChatStore) -> tuple[int, int]:
    """Two chats with everything an export must carry."""
    trip = store.create_conversation("Trip to Lyon ✓")
    store.set_pinned(trip.id, True)
    store.set_conversation_settings(trip.id, {"enable_thinking": True, "temperature": 1.0})
    store.add_message(trip.id, "system", "Be brief.")
    q = store.add_message(trip.id, "user", 'What to eat?\n\n- cheap\n- "local"')
    a = store.add_message(
        trip.id, "assistant", "A **bouchon**.", thinking="They want food.", thinking_ms=1234
    )
    store.add_variant(a.id, "Quenelles", MessageStatus.STOPPED, thinking="Shorter.")
    store.select_variant(a.id)
    store.add_message(trip.id, "user", "Thanks")
    store.add_variant(q.id, "Edited question 🔥")  # the first branch stays
    store.select_variant(q.id)
    auto = store.create_conversation()
    store.set_auto_title(auto.id, "Auto title")
    store.add_message(auto.id, "user", "Hi")
    store.add_message(auto.id, "assistant", "Hel", MessageStatus.INTERRUPTED)
    gone = store.create_conversation("deleted")
    store.delete_conversation(gone.id)
    return trip.id, auto.id


def test_json_round_trip_is_byte_identical(store: ChatStore, other: ChatStore) -> None:
    trip, auto = fill(store)
    first = export_json(store, exported_at=WHEN)
    doc = json.loads(first)
    assert (doc["format"], doc["version"], doc["exported_at"]) == (FORMAT, VERSION, WHEN)
    assert [c["title"] for c in doc["conversations"]] == ["Trip to Lyon ✓", "Auto title"]
    assert first == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"  # streamed == whole

    new_ids = import_json(other, first)
    assert len(new_ids) == 2
    second = export_json(other, exported_at=WHEN)
    assert second == first
    assert import_json(other, second.encode("utf-8")) != new_ids  # bytes work; new chats

    # What came back is the same chat: versions, choices, thinking, pins, titles.
    assert [m.content for m in other.messages(new_ids[0])] == [
        m.content for m in store.messages(trip)
    ]
    assert [(m.content, m.thinking, m.thinking_ms, m.status) for m in
            other.all_messages(new_ids[0])] == [
        (m.content, m.thinking, m.thinking_ms, m.status) for m in store.all_messages(trip)
    ]  # fmt: skip
    copy = other.conversation(new_ids[0])
    assert copy is not None and copy.pinned and not copy.title_is_auto
    assert other.conversation_settings(new_ids[0]) == store.conversation_settings(trip)
    auto_copy = other.conversation(new_ids[1])
    assert auto_copy is not None and auto_copy.title_is_auto
    assert auto_copy.created_at == store.conversation(auto).created_at  # type: ignore[union-attr]
    assert [h.conversation_id for h in other.search("quenelles")] == [new_ids[1] + 1, new_ids[0]]


def dropped(store: ChatStore, title: str = "Long chat") -> tuple[int, int]:
    """A chat after "Drop the oldest turns": the model reads from its third message."""
    conv = store.create_conversation(title)
    store.add_message(conv.id, "user", "Old question")
    store.add_message(conv.id, "assistant", "Old answer")
    start = store.add_message(conv.id, "user", "Newer question")
    store.add_message(conv.id, "assistant", "Newer answer")
    store.set_conversation_settings(conv.id, {"context_from": start.id, "enable_thinking": False})
    return conv.id, start.id


def test_the_context_start_survives_a_round_trip(store: ChatStore, other: ChatStore) -> None:
    trip, _auto = fill(store)
    _long_chat, start = dropped(store)
    other.create_conversation("already here")  # the copy's ids differ from the original's
    other.add_message(other.list_conversations()[0].id, "user", "Padding")
    first = export_json(store, exported_at=WHEN)
    doc = json.loads(first)
    assert doc["conversations"][2]["settings"] == {"context_from": 3, "enable_thinking": False}

    new_ids = import_json(other, first)
    assert export_json(other, new_ids, exported_at=WHEN) == first
    copy_start = other.conversation_settings(new_ids[2])["context_from"]
    assert copy_start != start
    assert [m.id for m in other.messages(new_ids[2])].index(copy_start) == 2
    copied = other.message(copy_start)
    assert copied is not None and copied.content == "Newer question"
    assert other.conversation_settings(new_ids[0]) == store.conversation_settings(trip)


def test_a_context_start_that_names_no_message_of_the_chat_is_left_out(
    store: ChatStore, other: ChatStore
) -> None:
    long_chat, _start = dropped(store)
    _elsewhere, start_elsewhere = dropped(store, "Another")
    store.set_conversation_settings(long_chat, {"context_from": start_elsewhere, "x": 1})
    doc = json.loads(export_json(store, exported_at=WHEN))
    assert doc["conversations"][0]["settings"] == {"x": 1}  # not another chat's message

    for stale in (99, 0, True, "3", None):
        doc["conversations"][1]["settings"] = {"context_from": stale, "y": 2}
        one = {**doc, "conversations": doc["conversations"][1:]}
        (new_id,) = import_json(other, json.dumps(one))
        assert other.conversation_settings(new_id) == {"y": 2}, stale


def test_export_one_chat_and_an_empty_store(store: ChatStore, other: ChatStore) -> None:
    _trip, auto = fill(store)
    one = json.loads(export_json(store, [auto], exported_at=WHEN))
    assert [c["title"] for c in one["conversations"]] == ["Auto title"]
    messages = one["conversations"][0]["messages"]
    assert [(m["key"], m["parent"], m["status"]) for m in messages] == [
        (1, None, "complete"),
        (2, 1, "interrupted"),
    ]
    empty = export_json(other, exported_at=WHEN)
    assert json.loads(empty)["conversations"] == []
    assert empty == json.dumps(json.loads(empty), indent=2) + "\n"
    assert import_json(other, empty) == []
    assert export_json(store, [9999], exported_at=WHEN) == empty  # a missing id is skipped


def test_markdown_has_the_shown_answers_and_thinking_only_if_asked(store: ChatStore) -> None:
    trip, _ = fill(store)
    text = export_markdown(store, [trip])
    assert text.startswith("# Trip to Lyon ✓\n\n*")
    assert "### System\n\nBe brief." in text
    assert '### You\n\nWhat to eat?\n\n- cheap\n- "local"' in text
    assert "### Assistant\n\nA **bouchon**." in text
    assert "Quenelles" not in text and "Edited question" not in text  # not the shown versions
    assert "They want food" not in text and "Thinking" not in text
    thought = export_markdown(store, [trip], include_thinking=True)
    assert "> **Thinking** (1 s)\n>\n> They want food." in thought
    every = export_markdown(store)
    assert every.count("\n---\n") == 1 and "*(interrupted)*" in every
    assert "deleted" not in every
    assert "no longer reads" not in every


def test_markdown_marks_where_the_model_stopped_reading(store: ChatStore) -> None:
    long_chat, _start = dropped(store)
    text = export_markdown(store, [long_chat])
    assert (
        "Old answer\n\n*(The model no longer reads the messages above.)*\n\n"
        "### You\n\nNewer question" in text
    )
    first = store.messages(long_chat)[0].id
    store.set_conversation_settings(long_chat, {"context_from": first})
    assert "no longer reads" not in export_markdown(store, [long_chat])  # it reads them all


def test_write_export_is_atomic(store: ChatStore, tmp_path: Path) -> None:
    fill(store)
    target = tmp_path / "chats.json"
    write_export(target, json_chunks(store, exported_at=WHEN))
    assert target.read_text(encoding="utf-8") == export_json(store, exported_at=WHEN)

    def broken() -> Iterator[str]:
        yield "partial"
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError):
        write_export(target, broken())
    assert target.read_text(encoding="utf-8") == export_json(store, exported_at=WHEN)
    assert sorted(p.name for p in tmp_path.iterdir() if "chats.json" in p.name) == ["chats.json"]
    with pytest.raises(ExportWriteError, match="Could not save the export"):
        write_export(tmp_path / "no such folder" / "x.md", ["text"])


def good_doc(store: ChatStore) -> Doc:
    fill(store)
    doc: Doc = json.loads(export_json(store, exported_at=WHEN))
    return doc


def _set(path: str, value: object) -> Callable[[Doc], None]:
    """A change to the first conversation ("c.") or its second message ("m.")."""

    def change(d: Doc) -> None:
        where, key = path.split(".")
        conv = d["conversations"][0]
        target = conv if where == "c" else conv["messages"][1]
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value

    return change


_DELETE = object()


def broken_docs(doc: Doc) -> list[tuple[str, str]]:
    def variant(change: Callable[[Doc], None]) -> str:
        d = json.loads(json.dumps(doc))
        change(d)
        return json.dumps(d)

    return [
        ("not json {", "not valid JSON"),
        ("[1, 2]", "marker"),
        ('{"format": "something else", "version": 1}', "marker"),
        (variant(lambda d: d.update(version="one")), "format version"),
        (variant(lambda d: d.update(conversations={})), "list of conversations"),
        (variant(lambda d: d["conversations"].append(3)), "conversation 3 is not an object"),
        (variant(_set("c.title", _DELETE)), "'title' is missing"),
        (variant(_set("c.pinned", 1)), "'pinned'"),
        (variant(_set("m.created_at", True)), "'created_at'"),
        (variant(_set("m.role", "robot")), "unknown role or status"),
        (variant(_set("m.status", "done")), "unknown role or status"),
        (variant(_set("m.parent", 99)), "earlier message"),
        (variant(_set("m.parent", 2)), "earlier message"),
        (variant(_set("m.key", 1)), "same key"),
        (variant(lambda d: d["conversations"][0]["messages"].insert(2, "text")), "message 3 is"),
    ]


def test_a_bad_file_imports_nothing_and_says_why(store: ChatStore, other: ChatStore) -> None:
    doc = good_doc(store)
    for text, why in broken_docs(doc):
        with pytest.raises(ChatImportError) as info:
            import_json(other, text)
        message = str(info.value)
        assert isinstance(info.value, KnownError)
        assert why in message, (why, message)
        assert message.startswith("This file is not a Hearth chat export (")
        assert message.endswith("nothing was imported.")
    assert other.list_conversations() == []


def test_a_newer_export_asks_for_an_update(store: ChatStore, other: ChatStore) -> None:
    doc = good_doc(store)
    doc["version"] = VERSION + 1
    with pytest.raises(ChatImportError, match="newer version of Hearth"):
        import_json(other, json.dumps(doc))
    assert other.list_conversations() == []


def test_an_import_is_all_or_nothing(store: ChatStore, other: ChatStore) -> None:
    doc = good_doc(store)
    other.create_conversation("already here")
    items = parse_json(json.dumps(doc))
    first, (conv, messages, settings) = items
    # The file checks passed; the store refuses the second conversation part-way.
    bad = [messages[0], replace(messages[1], role="robot")]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="role"):
        other.import_conversations([first, (conv, bad, settings)])
    assert [c.title for c in other.list_conversations()] == ["already here"]
    assert other.search("bouchon") == []
    blank = replace(conv, title="   ")
    ids = other.import_conversations([first, (blank, messages, settings)])
    assert other.conversation(ids[1]).title == "New chat"  # type: ignore[union-attr]
    assert len(other.list_conversations()) == 3
