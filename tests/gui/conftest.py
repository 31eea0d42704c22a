"""The real main window, real engine thread, real SQLite, real starter model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QTextCursor
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from app.paths import resolve_paths
from app.worker import EngineThread
from engine.types import EngineOptions, SamplingParams
from ui.chat_view import ChatView
from ui.state import ResponseState

Launch = Callable[..., HearthApp]

# Short replies keep the suite fast; the stop test asks for a long one.
TEST_PARAMS = SamplingParams(max_tokens=48, temperature=0.7, seed=1)
TEST_OPTIONS = EngineOptions(n_ctx=2048)
# A safety net for "the reply arrives", not a speed check (bench/ measures speed):
# on a 2-core machine shared with other work a short reply can take a minute.
REPLY_TIMEOUT_MS = 300_000


@pytest.fixture(autouse=True)
def _no_leaked_engine_threads() -> Iterator[None]:
    """Fail any test that leaves an engine QThread running (STYLE.md, napari)."""
    yield
    running = [t for t in EngineThread.live if t.thread.isRunning()]
    for t in running:
        t.close()
    assert not running, "a test left the engine thread running"


@pytest.fixture
def launch(qtbot: QtBot) -> Iterator[Launch]:
    """Start Hearth on a data folder and wait until its model is loaded (or failed)."""
    started: list[HearthApp] = []

    def _launch(data_dir: Path, *, wait_ready: bool = True, **kwargs: object) -> HearthApp:
        kwargs.setdefault("options", TEST_OPTIONS)
        kwargs.setdefault("params", TEST_PARAMS)
        hearth = HearthApp(resolve_paths(data_dir), **kwargs)  # type: ignore[arg-type]
        started.append(hearth)
        qtbot.addWidget(hearth.window)
        hearth.start()
        if wait_ready:
            qtbot.waitUntil(
                lambda: hearth.window.state not in (ResponseState.LOADING,),
                timeout=REPLY_TIMEOUT_MS,
            )
        return hearth

    yield _launch
    for hearth in started:
        hearth.close()


def send(qtbot: QtBot, hearth: HearthApp, text: str) -> None:
    """Type ``text`` into the composer and press Enter, as a person would."""
    composer = hearth.window.composer
    composer.setFocus()
    qtbot.keyClicks(composer, text)
    qtbot.keyClick(composer, Qt.Key.Key_Return)


def click_text(qtbot: QtBot, view: ChatView, needle: str) -> None:
    """Click on the middle of the first occurrence of ``needle`` in the view."""
    found = view.document().find(needle)
    assert not found.isNull(), needle
    start, end = QTextCursor(view.document()), QTextCursor(view.document())
    start.setPosition(found.selectionStart())
    end.setPosition(found.selectionEnd())
    view.setTextCursor(end)
    view.ensureCursorVisible()
    left, right = view.cursorRect(start), view.cursorRect(end)
    point = QPoint((left.left() + right.left()) // 2, left.center().y())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point)


def answer_next_dialog(qtbot: QtBot, button_text: str) -> list[str]:
    """Press ``button_text`` in the next message box, as a person would; returns the
    texts of the boxes answered (filled in once it has been answered)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    seen: list[str] = []

    def press() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, press)
            return
        seen.append(box.text())
        for button in box.buttons():
            if button.text().replace("&", "") == button_text:
                qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
                return
        raise AssertionError(f"no {button_text!r} button in {box.text()!r}")

    QTimer.singleShot(0, press)
    return seen
