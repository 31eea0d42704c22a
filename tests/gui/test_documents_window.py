"""Documents in the window, end to end on a real store: a PDF dropped on the window is
read in the background (a chip with its pages and token cost), goes with the question,
the model is given it whole or by passages, the reply's citations open the passage, and
a file that cannot be read says why and is never sent.

The model is a ScriptedBackend (what it is given is recorded; a model that cites on
cue cannot be had here): the window, the store, pypdf and the retrieval are real."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from engine.history.turns import chat_settings
from engine.history.types import DocMode
from engine.types import DocumentPart
from tests.fakes.scripted import ScriptedBackend
from tests.fixtures.documents import pdf_bytes, scanned_pdf
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, click_text, send
from ui.document_chip import DocumentChip
from ui.passage_dialog import PassageDialog

FACT = "The reset button is behind the battery cover."


def manual_pdf(path: Path, pages: int) -> Path:
    all_pages = [
        [f"Page {p} of the manual: filler line {i} about nothing." for i in range(40)]
        for p in range(1, pages + 1)
    ]
    all_pages[pages // 2][7] = FACT
    path.write_bytes(pdf_bytes(all_pages))
    return path


def _chips(hearth: HearthApp) -> list[DocumentChip]:
    return [c for c in hearth.window.attachments.chips() if isinstance(c, DocumentChip)]


def _drop_and_wait(qtbot: QtBot, hearth: HearthApp, path: Path) -> DocumentChip:
    hearth.window.files_dropped.emit([str(path)])
    (chip,) = _chips(hearth)
    qtbot.waitUntil(
        lambda: chip.info.tokens > 0 or "no text" in chip._detail.text(), timeout=30_000
    )
    return chip


def test_a_short_pdf_is_read_whole(qtbot: QtBot, launch: Launch, tmp_path: Path) -> None:
    backend = ScriptedBackend(["It is behind the battery cover."], n_ctx=8192)
    hearth = launch(tmp_path / "data", backend=backend)
    chip = _drop_and_wait(qtbot, hearth, manual_pdf(tmp_path / "manual.pdf", 3))
    assert chip._detail.text().startswith("3 pages · ")
    assert chip._mode.text() == "Auto: whole"
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Where is the reset button?")
    (turn,) = backend.turns
    (question,) = turn.messages
    assert question.content.startswith('<document name="manual.pdf" pages="3">')
    assert FACT in question.content and question.content.endswith("Where is the reset button?")
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    stored = hearth.store.messages(conv_id)[0]
    assert [type(a) for a in stored.attachments] == [DocumentPart]
    assert _chips(hearth) == []  # the composer's row is empty again
    assert "manual.pdf · 3 pages · ~" in hearth.window.chat_view.toPlainText()
    assert "tokens · Auto: whole" in hearth.window.chat_view.toPlainText()


def test_a_long_pdf_gives_passages_and_citations_open_them(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    backend = ScriptedBackend(["Behind the battery cover [1]."], n_ctx=2048)
    hearth = launch(tmp_path / "data", backend=backend)
    chip = _drop_and_wait(qtbot, hearth, manual_pdf(tmp_path / "manual.pdf", 60))
    assert chip._mode.text() == "Auto: passages"
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Where is the reset button?")
    (turn,) = backend.turns
    content = turn.messages[-1].content
    assert "(Too long to read whole" in content
    assert "[1] manual.pdf, page 31\n" in content and FACT in content
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    reply = hearth.store.messages(conv_id)[-1]
    assert hearth.store.citations(reply.id)[1].chunk.page == 31
    view = hearth.window.chat_view
    qtbot.waitUntil(lambda: "Sources: [1] manual.pdf, page 31" in view.toPlainText())
    with qtbot.waitSignal(view.citation_requested, timeout=5000):
        click_text(qtbot, view, "1].")
    dialog = next(w for w in hearth.window.findChildren(PassageDialog))
    assert dialog.windowTitle() == "[1] manual.pdf, page 31"
    dialog.close()


def test_a_scanned_pdf_says_why_and_is_not_sent(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    backend = ScriptedBackend(["Hello."], n_ctx=4096)
    hearth = launch(tmp_path / "data", backend=backend)
    path = tmp_path / "scan.pdf"
    path.write_bytes(scanned_pdf(2))
    chip = _drop_and_wait(qtbot, hearth, path)
    assert "scan.pdf has no text to read" in chip._detail.text()
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Hi")
    assert backend.turns[0].messages[-1].content == "Hi"
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    assert hearth.store.messages(conv_id)[0].attachments == ()


def test_the_person_changes_how_a_sent_document_is_read(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    backend = ScriptedBackend(["Page 2.", "Behind the cover [1]."], n_ctx=8192)
    hearth = launch(tmp_path / "data", backend=backend)
    _drop_and_wait(qtbot, hearth, manual_pdf(tmp_path / "manual.pdf", 3))
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Where is the reset button?")
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    question = hearth.store.messages(conv_id)[0]
    sha = question.attachments[0].sha256
    view = hearth.window.chat_view
    assert "Auto: whole" in view.toPlainText()
    # the document's line in the chat: a menu (Automatic / Read whole / Passages)
    hearth.documents._change_mode(conv_id, sha, DocMode.RETRIEVE)
    assert chat_settings(hearth.store, conv_id).document_modes == {sha: DocMode.RETRIEVE}
    assert "manual.pdf is now read by the passages" in hearth.notifier.seen[-1].text
    qtbot.waitUntil(lambda: "tokens · Passages" in view.toPlainText())
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "And the reset button again?")
    last = backend.turns[-1].messages
    assert "(Too long to read whole" in last[0].content  # its first place: a note now
    assert "[1] manual.pdf, page 2" in last[-1].content and FACT in last[-1].content
