"""``hearth chat --file``: a real process, the real starter model, a real PDF. What is
asserted is what the model was given and what was stored (the document with the
question, the passages with the reply), not the tiny model's prose."""

from __future__ import annotations

from pathlib import Path

from engine.history.store import ChatStore
from engine.types import DocumentPart
from tests.fixtures.documents import pdf_bytes, scanned_pdf
from tests.integration.test_cli import hearth

FACT = "The reset button is behind the battery cover."


def test_chat_with_a_long_pdf_by_passages(data_dir: Path, tmp_path: Path) -> None:
    pages = [[f"Page {p}, filler line {i} about nothing." for i in range(40)] for p in range(60)]
    pages[30][5] = FACT
    pdf = tmp_path / "manual.pdf"
    pdf.write_bytes(pdf_bytes(pages))
    result = hearth(
        "chat", "--context", "2048", "--max-tokens", "8", "--file", str(pdf),
        "Where is the reset button?", data_dir=data_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Sources (the passages the model was given):\n  [1] manual.pdf, page 31" in (
        result.stderr
    )
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        (conv,) = store.list_conversations()
        question, reply = store.messages(conv.id)
        (part,) = question.attachments
        assert isinstance(part, DocumentPart) and part.name == "manual.pdf"
        assert FACT in part.text
        assert store.citations(reply.id)[1].chunk.page == 31
    finally:
        store.close()


def test_chat_with_a_short_file_reads_it_whole(data_dir: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nThe spare key is under the blue pot.\n")
    shown = hearth(
        "chat", "--show-prompt", "--file", str(notes), "Where is the key?", data_dir=data_dir
    )
    assert shown.returncode == 0, shown.stderr
    assert '<document name="notes.md"' in shown.stdout  # read whole, before the question
    assert "The spare key is under the blue pot." in shown.stdout
    assert shown.stdout.index("blue pot") < shown.stdout.index("Where is the key?")
    with ChatStore(data_dir / "hearth.sqlite3") as store:  # showing wrote nothing
        assert store.list_conversations() == [] and store.document_ids() == []
    result = hearth(
        "chat", "--max-tokens", "8", "--file", str(notes), "Where is the key?", data_dir=data_dir
    )
    assert result.returncode == 0, result.stderr
    assert "Sources" not in result.stderr  # whole: no passages
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        (conv,) = store.list_conversations()
        assert store.messages(conv.id)[0].attachments[0].name == "notes.md"
    finally:
        store.close()


def test_a_file_that_cannot_be_read_says_why_and_saves_nothing(
    data_dir: Path, tmp_path: Path
) -> None:
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(scanned_pdf(2))
    result = hearth("chat", "--file", str(scan), "Summarise it.", data_dir=data_dir)
    assert result.returncode == 2
    assert "hearth: scan.pdf has no text to read" in result.stderr
    gone = hearth("chat", "--file", str(tmp_path / "gone.txt"), "Hi", data_dir=data_dir)
    assert gone.returncode == 2 and "gone.txt is no longer there" in gone.stderr
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        assert store.list_conversations() == []
    finally:
        store.close()


def test_show_prompt_with_a_long_pdf_after_a_chat_shows_the_passages(
    data_dir: Path, tmp_path: Path
) -> None:
    """--show-prompt --file on an existing chat: the chat so far, then the passages that
    answer the question (by the same turn model as a reply), and nothing is stored."""
    first = hearth("chat", "--max-tokens", "4", "Hello there.", data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    with ChatStore(data_dir / "hearth.sqlite3") as store:
        (conv,) = store.list_conversations()
        before = len(store.messages(conv.id))
    pages = [[f"Page {p}, filler line {i} about nothing." for i in range(40)] for p in range(60)]
    pages[30][5] = FACT
    pdf = tmp_path / "manual.pdf"
    pdf.write_bytes(pdf_bytes(pages))
    shown = hearth(
        "chat", "--show-prompt", "--context", "2048", "--conversation", str(conv.id),
        "--file", str(pdf), "Where is the reset button?", data_dir=data_dir,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "Hello there." in out and FACT in out and "page 31" in out
    assert "Page 5, filler line 1 " not in out  # passages, not the whole 60 pages
    assert out.index("Hello there.") < out.index(FACT) < out.index("Where is the reset button?")
    with ChatStore(data_dir / "hearth.sqlite3") as store:
        assert len(store.messages(conv.id)) == before and store.document_ids() == []
