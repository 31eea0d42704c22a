"""A reply that called tools, on real SQLite: recorded while it streams, read back with
its parts in order, read by the model as the same parts, carried by JSON export and
import, and written to Markdown as inert fenced blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.history.export import export_json, export_markdown, import_json
from engine.history.recorder import ReplyRecorder
from engine.history.store import ChatStore, MessageStatus
from engine.history.turns import ChatSettings, prompt_of
from engine.types import TextPart, ToolCallPart, ToolResultPart
from tests.unit.cipher_modes import both_ciphers

pytestmark = both_ciphers

INJECT = "<img src='http://198.51.100.7/x.png'> ![p](http://198.51.100.7/p.gif) ```"
CALL = ToolCallPart("call_1", "get_current_time", {"timezone": "Asia/Tokyo"}, server="time")
RESULT = ToolResultPart("call_1", "get_current_time", INJECT, True, 12, "time")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "a.sqlite3")
    yield s
    s.close()


def record(store: ChatStore) -> int:
    conv = store.create_conversation("Tokyo")
    store.add_message(conv.id, "user", "What time is it in Tokyo?")
    reply = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    rec = ReplyRecorder(store, reply.id, interval=0.0)
    rec.append("Let me check.")
    rec.append_part(CALL)
    rec.append_part(RESULT)
    rec.append("It is ")
    rec.append("noon.")
    rec.finish(MessageStatus.COMPLETE)
    return conv.id


def test_recorded_read_back_and_read_by_the_model(store: ChatStore) -> None:
    conv = record(store)
    user, reply = store.messages(conv)
    assert reply.content == "Let me check.It is noon."
    assert reply.parts == (TextPart("Let me check."), CALL, RESULT, TextPart("It is noon."))
    assert user.parts == ()  # a text message stores no parts
    prompt = prompt_of(store.messages(conv), ChatSettings())
    assert prompt.messages[-1].parts == reply.parts
    assert prompt.messages[-1].tool_results == (RESULT,)


def test_json_round_trip_and_markdown(store: ChatStore, tmp_path: Path) -> None:
    record(store)
    text = export_json(store)
    other = ChatStore(tmp_path / "b.sqlite3")
    try:
        (new,) = import_json(other, text)
        assert other.messages(new)[-1].parts == store.messages(1)[-1].parts
    finally:
        other.close()
    md = export_markdown(store)
    assert "> **Tool call: get_current_time** (time)" in md
    # The result is fenced with more backticks than it holds: no image, link or HTML.
    assert "> ````\n> " + INJECT + "\n> ````" in md


def test_search_finds_a_reply_by_its_tools_text(store: ChatStore) -> None:
    conv = record(store)
    reply = store.messages(conv)[-1]
    question = store.messages(conv)[0]
    # The question by its text, the reply by its call's arguments: newest first.
    assert [h.message_id for h in store.search("Tokyo")] == [reply.id, question.id]
    (hit,) = store.search("get_current_time")
    assert hit.message_id == reply.id
    assert "".join(text for text, _ in hit.parts()).startswith("get_current_time {")
    assert [h.message_id for h in store.search("198.51")] == [reply.id]  # the result's text
    assert [h.message_id for h in store.search("noon")] == [reply.id]  # the answer: once
    store.delete_message(reply.id)
    assert store.search("get_current_time") == []


def test_an_encrypted_store_keeps_and_searches_tool_parts(tmp_path: Path) -> None:
    """The tool index's triggers are plain SQL with JSON1: the encrypted file's SQLite
    (SQLite3 Multiple Ciphers through apsw) runs them as well."""
    store = ChatStore(tmp_path / "enc.sqlite3", key=b"\x01" * 32)
    try:
        conv = record(store)
        reply = store.messages(conv)[-1]
        assert reply.parts[1] == CALL
        assert [h.message_id for h in store.search("get_current_time")] == [reply.id]
    finally:
        store.close()
