"""Documents before Send and after (issue 14): the context meter counts the documents
attached to the next message, as their chips show their cost; the sidebar's search
finds words inside a sent document and says which document and page.

The model is a ScriptedBackend (its context measure is what the window shows); the
window, the store (FTS5), pypdf and the turn's document step are real."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, send
from tests.gui.test_documents_window import _chips, _drop_and_wait, manual_pdf


def _meter(hearth: HearthApp) -> int:
    return hearth.window.chat_toolbar.meter.value()


def test_the_meter_counts_attached_documents_before_send(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    backend = ScriptedBackend(["Hello.", "Behind the cover."], n_ctx=8192)
    hearth = launch(tmp_path / "data", backend=backend)
    # A new chat: the documents alone.
    chip = _drop_and_wait(qtbot, hearth, manual_pdf(tmp_path / "manual.pdf", 3))
    tokens = chip.info.tokens
    qtbot.waitUntil(lambda: _meter(hearth) == tokens, timeout=5_000)
    meter = hearth.window.chat_toolbar.meter
    assert f"About {tokens:,} of them are the documents attached" in meter.toolTip()
    qtbot.mouseClick(chip._remove, Qt.MouseButton.LeftButton)
    assert _chips(hearth) == []
    # An open chat: what it holds, plus the documents; taken off again when removed.
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Hi")
    qtbot.waitUntil(lambda: 0 < _meter(hearth) < tokens, timeout=5_000)
    chat = _meter(hearth)
    chip = _drop_and_wait(qtbot, hearth, manual_pdf(tmp_path / "manual.pdf", 3))
    qtbot.waitUntil(lambda: _meter(hearth) == chat + tokens, timeout=5_000)
    qtbot.mouseClick(chip._remove, Qt.MouseButton.LeftButton)
    assert _meter(hearth) == chat and "documents attached" not in meter.toolTip()


def test_search_finds_a_word_inside_a_sent_document(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    backend = ScriptedBackend(["It is behind the cover."], n_ctx=8192)
    hearth = launch(tmp_path / "data", backend=backend)
    _drop_and_wait(qtbot, hearth, manual_pdf(tmp_path / "manual.pdf", 3))
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "What does the manual say?")
    conv_id = hearth.conversations.current_id
    window = hearth.window
    qtbot.keyClicks(window.search_box, "battery")  # in the PDF only, not in any message
    results = window.search_results
    qtbot.waitUntil(lambda: results.isVisible() and results.count() == 1, timeout=5_000)
    label = results.itemWidget(results.item(0))
    text = label.text()  # type: ignore[attr-defined]
    assert "In manual.pdf, page 2:" in text and "<u>battery</u>" in text
    qtbot.mouseClick(window.new_chat_button, Qt.MouseButton.LeftButton)
    assert hearth.conversations.current_id != conv_id
    results.itemClicked.emit(results.item(0))  # opens the chat at that question
    assert hearth.conversations.current_id == conv_id
