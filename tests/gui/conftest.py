"""The real main window, real engine thread, real SQLite; the real starter model, or a
``ScriptedBackend`` (tests/fakes) where what is tested is Hearth around the model."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtGui import QTextCursor
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from app.paths import resolve_paths
from app.worker import EngineThread
from engine.settings import SPECS, Value
from engine.types import EngineOptions
from tests.fakes.scripted import ScriptedBackend, scripted_opener
from ui.chat_view import ChatView
from ui.state import ResponseState

Launch = Callable[..., HearthApp]

# Short replies keep the suite fast (set as a person would, in Settings: the real
# sampling path, the model's defaults with this on top); the stop test asks for more.
TEST_MAX_TOKENS = 48
TEST_OPTIONS = EngineOptions(n_ctx=2048)
# How long a dialog presser looks for its box before it fails its test.
DIALOG_DEADLINE_MS = 30_000
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
    """Start Hearth on a data folder and wait until its model is loaded (or failed).

    ``backend``: run the window on this ``ScriptedBackend`` instead of llama.cpp.
    Without one the real starter model answers, with replies of at most
    ``TEST_MAX_TOKENS`` unless ``sampling`` (Settings → Generation values, e.g.
    ``{"generation.temperature": 0.0}``) or the test's settings file says otherwise.
    """
    started: list[HearthApp] = []

    def _launch(
        data_dir: Path,
        *,
        wait_ready: bool = True,
        backend: ScriptedBackend | None = None,
        sampling: Mapping[str, Value] | None = None,
        **kwargs: object,
    ) -> HearthApp:
        kwargs.setdefault("options", TEST_OPTIONS)
        # The old exact-sampling seam is gone: every launch now samples as the app does
        # (the model's defaults with the Settings on top); None asked for just that.
        if kwargs.pop("params", None) is not None:
            raise TypeError("params= is gone: use sampling={...} (Settings values)")
        paths = resolve_paths(data_dir)
        if backend is not None:
            kwargs.setdefault("open_backend", scripted_opener(backend))
        hearth = HearthApp(paths, **kwargs)  # type: ignore[arg-type]
        started.append(hearth)
        if backend is None:
            # Sampling as a person sets it (Settings → Generation): the real path. Set
            # once the app has read its settings file, so the test's file is read as is.
            wanted: dict[str, Value] = {}
            if hearth.settings["generation.max_tokens"] == SPECS["generation.max_tokens"].default:
                wanted["generation.max_tokens"] = TEST_MAX_TOKENS
            wanted.update(sampling or {})
            if wanted:
                hearth.settings.update(wanted)
                hearth.settings_controller.apply_live("generation.max_tokens")
        qtbot.addWidget(hearth.window)
        hearth.start()
        if wait_ready:
            qtbot.waitUntil(
                lambda: hearth.replies.state != ResponseState.LOADING, timeout=REPLY_TIMEOUT_MS
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


_pressers: list[QTimer] = []


@pytest.fixture(autouse=True)
def _no_dialog_presser_outlives_its_test() -> Iterator[None]:
    """A presser whose box never came must not press a button in the next test's."""
    yield
    while _pressers:
        _pressers.pop().stop()


def answer_next_dialog(
    qtbot: QtBot, button_text: str, *, deadline_ms: int = DIALOG_DEADLINE_MS
) -> list[str]:
    """Press ``button_text`` in the next message box, as a person would; returns the
    texts of the boxes answered (filled in once it has been answered). Fails the
    test if no box comes within ``deadline_ms``; stops at the test's end."""
    from PySide6.QtWidgets import QApplication, QMessageBox

    seen: list[str] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.setProperty("left", deadline_ms // 20)
    _pressers.append(timer)

    def press() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            left = int(timer.property("left")) - 1
            timer.setProperty("left", left)
            if left <= 0:
                timer.stop()
                raise AssertionError(f"no dialog with a {button_text!r} button came")
            return
        timer.stop()
        seen.append(box.text())
        for button in box.buttons():
            if button.text().replace("&", "") == button_text:
                qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
                return
        raise AssertionError(f"no {button_text!r} button in {box.text()!r}")

    timer.timeout.connect(press)
    timer.start()
    return seen
