"""What a person sees of documents: the chip (name, pages or size, token cost, how it
is read, indexing progress, a file that could not be read), citations in a reply that
open their passage, and the passage itself."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QToolButton
from pytestqt.qtbot import QtBot

from engine.history.types import DocMode, MessageStatus, StoredMessage
from tests.gui.conftest import click_text
from ui.chat_view import ChatView
from ui.citations import link_citations, sources_html
from ui.document_chip import DocumentChip, DocumentChipInfo, chip_detail, mode_label
from ui.passage_dialog import PassageDialog

PDF = DocumentChipInfo("report.pdf", 480_000, 12_345, pages=12)


def test_chip_detail_and_mode_names() -> None:
    assert chip_detail(PDF) == "12 pages · 12.3k tokens"
    assert chip_detail(DocumentChipInfo("a.txt", 38_000, 900)) == "38 kB · 900 tokens"
    assert chip_detail(DocumentChipInfo("one.pdf", 1, 5, pages=1)) == "1 page · 5 tokens"
    assert mode_label(PDF) == "Automatic"
    assert mode_label(DocumentChipInfo("a", 1, 1, read_as=DocMode.RETRIEVE)) == "Auto: passages"
    assert mode_label(DocumentChipInfo("a", 1, 1, mode=DocMode.WHOLE)) == "Read whole"


def _labels(chip: DocumentChip) -> list[str]:
    return [label.text() for label in chip.findChildren(QLabel) if label.isVisible()]


def test_chip_shows_the_document_and_asks_for_a_mode(qtbot: QtBot) -> None:
    chip = DocumentChip(PDF)
    qtbot.addWidget(chip)
    chip.show()
    assert _labels(chip)[1:] == ["report.pdf", "12 pages · 12.3k tokens"]
    with qtbot.waitSignal(chip.mode_requested, timeout=2000) as blocker:
        chip._mode.menu().actions()[2].trigger()  # "Passages"
    assert blocker.args == [DocMode.RETRIEVE]
    with qtbot.waitSignal(chip.remove_requested, timeout=2000):
        chip._remove.click()


def test_chip_while_indexing_then_ready(qtbot: QtBot) -> None:
    chip = DocumentChip(PDF)
    qtbot.addWidget(chip)
    chip.show()
    chip.set_progress(200, 2723)
    assert "Indexing 200 of 2723 passages" in _labels(chip)
    assert not chip._mode.isVisible()
    with qtbot.waitSignal(chip.cancel_requested, timeout=2000):
        chip._cancel.click()
    chip.set_ready()
    assert chip._mode.isVisible() and not chip._cancel.isVisible()


def test_chip_for_a_file_that_could_not_be_read(qtbot: QtBot) -> None:
    chip = DocumentChip(PDF, removable=False)
    qtbot.addWidget(chip)
    chip.show()
    chip.set_error("scan.pdf has no text to read: its 3 page(s) are images (a scan).")
    assert any("no text to read" in t for t in _labels(chip))
    assert chip._remove.isVisible() and not chip._mode.isVisible()


def test_citation_markers_become_links_outside_code() -> None:
    body = "<p>Prune in winter [1] and water [2, 3]. See [9].</p><pre>x = a[1]</pre>"
    out = link_citations(body, 7, frozenset({1, 2, 3}))
    assert 'href="hearth-cite:7/1"' in out and 'href="hearth-cite:7/3"' in out
    assert "See [9]" in out  # not a passage it was given
    assert "<pre>x = a[1]</pre>" in out
    assert link_citations(body, 7, frozenset()) == body
    assert sources_html("#888", 7, []) == ""
    assert "[1]</a> guide.md, page 4" in sources_html("#888", 7, [(1, "guide.md, page 4")])


def test_reply_citations_open_their_passage(qtbot: QtBot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(700, 400)
    view.show()
    q = StoredMessage(1, 1, "user", "When to prune?", MessageStatus.COMPLETE, 0.0)
    a = StoredMessage(
        2, 1, "assistant", "In late winter [1].", MessageStatus.COMPLETE, 0.0, parent_id=1
    )
    view.show_messages([q, a])
    view.set_sources({2: ((1, "guide.md, lines 29–31"),)})
    assert "Sources: [1] guide.md, lines 29–31" in view.toPlainText()
    with qtbot.waitSignal(view.citation_requested, timeout=2000) as blocker:
        click_text(qtbot, view, "1")  # the first "1" is the reply's marker
    assert blocker.args == [2, 1]


def test_passage_dialog(qtbot: QtBot) -> None:
    dialog = PassageDialog(
        2, "guide.md", "lines 29–31", "Garden guide › Pruning", "Prune apple trees."
    )
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "[2] guide.md, lines 29–31"
    assert not dialog.open_button.isVisibleTo(dialog)
    labels = [w.text() for w in dialog.findChildren(QLabel)]
    assert "lines 29–31 — Garden guide › Pruning" in labels
    assert dialog.findChildren(QToolButton) == []
