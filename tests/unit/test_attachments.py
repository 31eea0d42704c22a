"""Attachments (images, documents) in the chat store: stored with their message,
content-addressed, shared, released with the last message that holds them, carried
through JSON export/import and described in Markdown. Real SQLite files."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.history.attachments import sha256_of
from engine.history.export import (
    ChatImportError,
    export_json,
    export_markdown,
    import_json,
)
from engine.history.store import ChatStore
from engine.history.turns import ChatSettings, prompt_before, prompt_of
from engine.types import DocumentPart, ImagePart, TextPart
from tests.unit.cipher_modes import both_ciphers, connect_raw

pytestmark = both_ciphers

WHEN = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "a.sqlite3", clock=Clock())
    yield s
    s.close()


def image(data: bytes = b"\x89PNG not really", name: str = "cat.png") -> ImagePart:
    return ImagePart(sha256=sha256_of(data), name=name, mime="image/png", size=len(data),
                     width=640, height=480, data=data)  # fmt: skip


def document(text: str = "Page one.") -> DocumentPart:
    data = b"%PDF-1.4 " + text.encode()
    return DocumentPart(sha256=sha256_of(data), name="report.pdf", mime="application/pdf",
                        size=len(data), text=text, data=data)  # fmt: skip


def count(store: ChatStore, table: str) -> int:
    db = connect_raw(store.path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_a_message_keeps_its_attachments_in_order_without_bytes(store: ChatStore) -> None:
    conv = store.create_conversation()
    cat, dog, doc = image(), image(b"GIF89a dog", "dog.gif"), document()
    stored = store.add_message(conv.id, "user", "Which is cuter?", attachments=[cat, dog, doc])
    shown = store.messages(conv.id)[0]
    assert shown.attachments == stored.attachments == (cat, dog, doc)
    assert [a.name for a in shown.attachments] == ["cat.png", "dog.gif", "report.pdf"]
    assert all(a.data == b"" for a in shown.attachments)  # described, not loaded
    assert isinstance(shown.attachments[2], DocumentPart)
    assert shown.attachments[2].text == "Page one."
    assert store.with_data(shown.attachments)[1].data == b"GIF89a dog"
    assert store.attachment_data(cat.sha256) == cat.data


def test_the_same_file_is_stored_once_and_released_with_the_last_message(
    store: ChatStore,
) -> None:
    conv = store.create_conversation()
    q = store.add_message(conv.id, "user", "Look", attachments=[image()])
    # An edit keeps the image: the part without bytes names the stored file.
    edit = store.add_variant(q.id, "Look again", attachments=store.message(q.id).attachments)  # type: ignore[union-attr]
    store.add_message(conv.id, "user", "And once more", attachments=[image()])
    assert (count(store, "blobs"), count(store, "attachments")) == (1, 3)
    store.delete_message(q.id)
    store.delete_message(edit.id)
    assert count(store, "blobs") == 1  # the third message still shows it
    store.delete_conversation(conv.id)
    assert count(store, "blobs") == 1  # a deleted chat can still be undone
    store.purge_deleted()
    assert (count(store, "blobs"), count(store, "attachments")) == (0, 0)


def test_deleting_every_chat_deletes_every_file(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "x", attachments=[image(), document()])
    store.delete_all_conversations()
    assert count(store, "blobs") == 0


def test_an_attachment_without_its_bytes_or_with_wrong_ones_is_refused(store: ChatStore) -> None:
    conv = store.create_conversation()
    with pytest.raises(ValueError, match="no bytes"):
        store.add_message(conv.id, "user", "x", attachments=[ImagePart(sha256="0" * 64)])
    bad = ImagePart(sha256="0" * 64, data=b"abc")
    with pytest.raises(ValueError, match="do not match"):
        store.add_message(conv.id, "user", "x", attachments=[bad])
    assert store.messages(conv.id) == []  # all or nothing


def test_the_model_reads_attachments_before_the_text(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "What is it?", attachments=[image()])
    described = prompt_of(store.messages(conv.id), ChatSettings()).messages[0]
    assert described.parts == (image(), TextPart("What is it?"))
    assert described.content == "What is it?"
    assert described.images[0].data == b""
    loaded = prompt_before(store, conv.id).messages[0]
    assert loaded.images[0].data == image().data


def test_json_round_trip_keeps_attachments_byte_for_byte(store: ChatStore, tmp_path: Path) -> None:
    conv = store.create_conversation("Pets")
    store.add_message(conv.id, "user", "Cute?", attachments=[image(), image(), document()])
    store.add_message(conv.id, "assistant", "Very.")
    text = export_json(store, exported_at=WHEN)
    doc = json.loads(text)
    files = doc["conversations"][0]["files"]
    assert len(files) == 2  # the same image twice is one file
    assert base64.b64decode(files[image().sha256]) == image().data
    assert "attachments" not in doc["conversations"][0]["messages"][1]
    other = ChatStore(tmp_path / "b.sqlite3", clock=Clock())
    try:
        (new,) = import_json(other, text)
        assert other.messages(new)[0].attachments == (image(), image(), document())
        assert other.attachment_data(document().sha256) == document().data
        assert export_json(other, exported_at=WHEN) == text
    finally:
        other.close()


def test_an_export_with_a_damaged_file_imports_nothing(store: ChatStore, tmp_path: Path) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "x", attachments=[image()])
    doc = json.loads(export_json(store, exported_at=WHEN))
    doc["conversations"][0]["files"][image().sha256] = base64.b64encode(b"other").decode()
    with pytest.raises(ChatImportError, match="damaged"):
        import_json(store, json.dumps(doc))
    del doc["conversations"][0]["files"]
    with pytest.raises(ChatImportError, match="missing"):
        import_json(store, json.dumps(doc))
    assert len(store.list_conversations()) == 1


def test_markdown_names_each_attachment(store: ChatStore) -> None:
    conv = store.create_conversation("Pets")
    store.add_message(conv.id, "user", "Cute?", attachments=[image(), document()])
    md = export_markdown(store)
    assert "*[Image: cat.png, 640×480]*" in md
    assert "*[Document: report.pdf]*" in md
    assert "PNG" not in md  # the bytes are not written


def test_search_finds_a_message_by_its_image_file_name(store: ChatStore) -> None:
    conv = store.create_conversation()
    shown = store.add_message(
        conv.id, "user", "What is this?", attachments=[image(name="Q3 chart.png")]
    )
    store.add_message(conv.id, "assistant", "A chart of sales.")
    (hit,) = store.search("q3 chart")
    assert (hit.message_id, hit.snippet.replace("\x02", "").replace("\x03", "")) == (
        shown.id,
        "Q3 chart.png",
    )
    assert [h.message_id for h in store.search("chart")] == [shown.id + 1, shown.id]
    assert store.search("100%") == []  # LIKE's wildcards are just text
    store.delete_conversation(conv.id)
    assert store.search("Q3") == []
