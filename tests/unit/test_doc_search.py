"""The sidebar's search finds words inside attached documents (issue 14): through the
documents' own FTS5 index (real SQLite, plain and encrypted), the hit is the message
that carries the document, its snippet the passage, its ``source`` the document and
the page or lines; a deleted chat's documents are not found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.doc_ingest import ingest_bytes
from engine.history.store import ChatStore
from engine.history.types import HIGHLIGHT_END, HIGHLIGHT_START
from tests.fixtures.documents import pdf_bytes
from tests.unit.cipher_modes import both_ciphers

pytestmark = both_ciphers

FACT = "The reset button is behind the battery cover."


def manual(pages: int = 6) -> bytes:
    text = [[f"Page {p}: filler line {i} about nothing much." for i in range(30)] for p in
            range(1, pages + 1)]  # fmt: skip
    text[3][5] = FACT
    return pdf_bytes(text)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def _attach(store: ChatStore, title: str, text: str, name: str, data: bytes) -> int:
    conv = store.create_conversation(title)
    part = ingest_bytes(store, name, data).part
    return store.add_message(conv.id, "user", text, attachments=(part,)).id


def test_a_word_in_a_document_finds_its_message_with_the_passage_and_page(
    store: ChatStore,
) -> None:
    mid = _attach(store, "Printer help", "What does this say?", "manual.pdf", manual())
    (hit,) = store.search("battery cover")
    assert hit.message_id == mid and hit.title == "Printer help"
    assert hit.source == "manual.pdf, page 4"
    plain = hit.snippet.replace(HIGHLIGHT_START, "[").replace(HIGHLIGHT_END, "]")
    assert plain.startswith("…The reset button is behind the [battery] [cover]. Page 4")
    assert store.search("batt")[0].message_id == mid  # the last word as a prefix
    assert store.search("battery unicorn") == []  # every word must be there


def test_message_text_first_then_documents_each_message_once(store: ChatStore) -> None:
    doc_msg = _attach(store, "A", "Read this", "manual.pdf", manual())
    again = _attach(store, "B", "The same file again", "copy.pdf", manual())
    conv = store.create_conversation("C")
    said = store.add_message(conv.id, "user", "Where is the battery cover on mine?").id
    hits = store.search("battery cover")
    assert [h.message_id for h in hits] == [said, again, doc_msg]
    assert [h.source for h in hits] == ["", "copy.pdf, page 4", "manual.pdf, page 4"]
    both = _attach(store, "D", "battery cover question", "manual.pdf", manual())
    assert [h.message_id for h in store.search("battery cover")].count(both) == 1


def test_lines_for_text_files_and_deleted_chats_are_not_found(store: ChatStore) -> None:
    notes = "\n".join(f"line {i} of notes" for i in range(1, 40)) + "\nzebra crossing here\n"
    mid = _attach(store, "Notes", "see file", "notes.txt", notes.encode())
    (hit,) = store.search("zebra")
    assert hit.message_id == mid and hit.source.startswith("notes.txt, line")
    store.delete_conversation(store.message(mid).conversation_id)  # type: ignore[union-attr]
    assert store.search("zebra") == []
