"""No dead ends: a chat store that fails (a full disk, a locked database) mid-reply and
at send, through the real window, on a real SQLite that really fails.

"Disk full" is SQLite's own SQLITE_FULL, made by ``PRAGMA max_page_count`` on the
store's connection (the file may not grow by a page); "locked" is a second real
connection holding ``BEGIN EXCLUSIVE``. The model is not the point here: the window
runs on a ``ScriptedBackend`` (tests/fakes), held at its gate to act mid-reply.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, Qt
from pytestqt.qtbot import QtBot

import app.chat.replies as replies_module
import app.chat.reply_saving as saving_module
from app.gui import HearthApp
from app.notifier import NoticeKind
from app.paths import resolve_paths
from app.worker import EngineThread, LoadRequest
from engine.errors import CatalogError
from engine.history.store import ChatStore
from engine.history.types import MessageStatus
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, answer_next_dialog, send
from ui.state import ResponseState

WAIT_MS = 10_000
BIG = "word " * 1500  # one piece bigger than a page: saving it needs new pages
REPLY = ["Once", " upon", " a time.", " " + BIG, " " + BIG, " The end."]


@pytest.fixture(autouse=True)
def _save_every_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """Save a streaming reply at every piece (not once a second) and retry a failed
    save at once, so that when saving fails is decided by the test, not by a clock."""
    monkeypatch.setattr(replies_module, "SAVE_INTERVAL_S", 0.0)
    monkeypatch.setattr(saving_module, "SAVE_TRY_S", 0.0)
    monkeypatch.setattr(saving_module, "RETRY_SAVE_MS", 20)


def _disk_full(store: ChatStore) -> None:
    # The store's own connection (the pragma is per connection): no page may be added.
    db = store._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")


def _disk_freed(store: ChatStore) -> None:
    store._db.execute("PRAGMA max_page_count = 1073741823")


@pytest.fixture
def other_program() -> Iterator[list[sqlite3.Connection]]:
    """Another program's connections to the chat history, closed at the end."""
    opened: list[sqlite3.Connection] = []
    yield opened
    for other in opened:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def data_dir_fast(tmp_path: Path) -> Path:
    """A data folder with no model in it: the scripted backend needs none."""
    return tmp_path / "hearth-data"


def _status(store: ChatStore, msg_id: int) -> MessageStatus | None:
    msg = store.message(msg_id)
    return msg.status if msg is not None else None


def _errors(hearth: HearthApp) -> list[str]:
    return hearth.notifier.texts(NoticeKind.ERROR)


def _usable(qtbot: QtBot, hearth: HearthApp) -> None:
    """The window is back where the person can act: Send, not a greyed Stop."""
    window = hearth.window
    assert hearth.replies.state == ResponseState.IDLE
    assert window.send_button.text() == "Send"
    if not window.composer.text():
        qtbot.keyClicks(window.composer, "still here?")
    assert window.send_button.isEnabled()


def test_disk_full_mid_reply_keeps_the_text_and_saves_it_once_there_is_room(
    qtbot: QtBot, launch: Launch, data_dir_fast: Path
) -> None:
    gate = threading.Event()
    backend = ScriptedBackend([REPLY], gate=gate)
    hearth = launch(data_dir_fast, backend=backend)
    window, store = hearth.window, hearth.store
    send(qtbot, hearth, "Tell me a story")
    qtbot.waitUntil(lambda: "Once" in window.chat_view.plain_text(), timeout=WAIT_MS)
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    reply_id = store.messages(conv_id)[-1].id

    _disk_full(store)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=WAIT_MS) as ended:
        gate.set()
    assert ended.args == [conv_id, reply_id, MessageStatus.COMPLETE]
    # Said once (not at every piece, not again at the end), in its own words.
    (said,) = _errors(hearth)
    assert said.startswith("The disk is full: Hearth could not save to the chat history")
    assert "What was written stays on screen" in said
    assert window.error_banner.isVisible() and window.error_banner.label.text() == said

    # All of it on screen, nothing lost, and the window usable again.
    shown = " ".join(window.chat_view.plain_text().split())
    assert "Once upon a time." in shown and shown.count("word") >= 3000 and "The end." in shown
    assert "Something went wrong" not in " ".join(hearth.notifier.texts())
    _usable(qtbot, hearth)
    assert store.message(reply_id).status is MessageStatus.STREAMING  # not saved yet

    _disk_freed(store)
    qtbot.waitUntil(lambda: _status(store, reply_id) is MessageStatus.COMPLETE, timeout=WAIT_MS)
    saved = store.message(reply_id)
    assert saved.content == "".join(REPLY)  # everything, in the first save that worked
    assert "Saving works again: every reply is saved." in hearth.notifier.texts(NoticeKind.INFO)
    assert not window.error_banner.isVisible()
    assert " ".join(window.chat_view.plain_text().split()).count("word") >= 3000


def test_disk_full_at_send_leaves_the_message_in_the_composer(
    qtbot: QtBot, launch: Launch, data_dir_fast: Path
) -> None:
    backend = ScriptedBackend(["Hello there."])
    hearth = launch(data_dir_fast, backend=backend)
    window, store = hearth.window, hearth.store
    typed = "A question long enough to need a page of its own. " + BIG
    window.composer.setPlainText(typed)
    _disk_full(store)
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)

    (said,) = _errors(hearth)
    assert said.startswith("The disk is full:")
    assert said.endswith(replies_module.UNSENT_NOTE)
    assert window.error_banner.label.text() == said
    assert window.composer.text() == typed  # never lost
    _usable(qtbot, hearth)
    assert backend.turns == []  # nothing was asked of the model

    _disk_freed(store)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=WAIT_MS):
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    assert window.composer.text() == ""  # stored now, so it left the composer
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    question, answer = store.messages(conv_id)
    assert (question.content, answer.content) == (typed.strip(), "Hello there.")
    assert [m.content for m in backend.turns[0].messages] == [typed.strip()]
    assert not window.error_banner.isVisible()


def test_locked_database_at_send_and_mid_reply(
    qtbot: QtBot, launch: Launch, data_dir_fast: Path, other_program: list[sqlite3.Connection]
) -> None:
    gate = threading.Event()
    backend = ScriptedBackend(["First answer.", REPLY], gate=gate)
    hearth = launch(data_dir_fast, backend=backend)
    window, store = hearth.window, hearth.store
    # Wait for the lock a tenth of a second, not the five the app waits (the test's time).
    store._db.execute("PRAGMA busy_timeout = 100")
    locker = sqlite3.connect(store.path, isolation_level=None)
    other_program.append(locker)

    locker.execute("BEGIN EXCLUSIVE")
    send(qtbot, hearth, "Are you there?")
    (said,) = _errors(hearth)
    assert said.startswith("The chat history is locked by another program:")
    assert window.composer.text() == "Are you there?"
    _usable(qtbot, hearth)
    locker.execute("ROLLBACK")

    gate.set()
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=WAIT_MS):
        qtbot.keyClick(window.composer, Qt.Key.Key_Return)
    assert window.composer.text() == ""
    gate.clear()

    send(qtbot, hearth, "And a story?")
    qtbot.waitUntil(lambda: "Once" in window.chat_view.plain_text(), timeout=WAIT_MS)
    conv_id = hearth.conversations.current_id
    reply_id = store.messages(conv_id or -1)[-1].id
    locker.execute("BEGIN EXCLUSIVE")
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=WAIT_MS):
        gate.set()
    locked = [t for t in _errors(hearth) if t.startswith("The chat history is locked")]
    assert len(locked) >= 2 and "What was written stays on screen" in locked[-1]
    _usable(qtbot, hearth)
    assert "The end." in window.chat_view.plain_text()

    locker.execute("ROLLBACK")
    qtbot.waitUntil(lambda: _status(store, reply_id) is MessageStatus.COMPLETE, timeout=WAIT_MS)
    assert store.message(reply_id).content == "".join(REPLY)


def test_stop_ends_the_reply_and_keeps_what_was_written(
    qtbot: QtBot, launch: Launch, data_dir_fast: Path
) -> None:
    gate = threading.Event()
    backend = ScriptedBackend([REPLY], gate=gate)
    hearth = launch(data_dir_fast, backend=backend)
    window = hearth.window
    send(qtbot, hearth, "Tell me a story")
    qtbot.waitUntil(lambda: "Once" in window.chat_view.plain_text(), timeout=WAIT_MS)
    assert window.send_button.text() == "Stop" and window.send_button.isEnabled()
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=WAIT_MS) as ended:
        qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)
    assert ended.args[2] is MessageStatus.STOPPED
    stored = hearth.store.message(ended.args[1])
    assert stored.content == "Once" and stored.status is MessageStatus.STOPPED
    _usable(qtbot, hearth)


def test_a_failed_start_leaves_no_engine_thread(
    qtbot: QtBot, data_dir_fast: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for a damaged catalog file, found after the engine thread started.
    def damaged(*_args: object, **_kwargs: object) -> None:
        raise CatalogError("The model catalog is damaged. Reinstall Hearth.")

    monkeypatch.setattr("app.gui.ModelManager", damaged)
    before = {t for t in EngineThread.live if t.thread.isRunning()}
    hook = sys.excepthook
    with pytest.raises(CatalogError):
        HearthApp(resolve_paths(data_dir_fast), open_backend=lambda _r: ScriptedBackend())
    assert {t for t in EngineThread.live if t.thread.isRunning()} == before
    assert sys.excepthook is hook
    ChatStore(data_dir_fast / "hearth.sqlite3").close()  # the store was closed: it opens


class _HideWatch(QObject):
    """Notes whether the window was hidden while the model was still loading, and
    then lets the load finish (so that closing does not wait forever)."""

    def __init__(self, loading: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.loading, self.release = loading, release
        self.hidden_while_loading: bool | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Hide and self.hidden_while_loading is None:
            self.hidden_while_loading = self.loading.is_set() and not self.release.is_set()
            self.release.set()
        return False


def test_closing_while_a_model_loads_hides_the_window_first(
    qtbot: QtBot, launch: Launch, data_dir_fast: Path
) -> None:
    loading, release = threading.Event(), threading.Event()
    backend = ScriptedBackend()

    def slow_load(_request: LoadRequest) -> ScriptedBackend:
        # Stands in for reading a large model file, which cannot be interrupted.
        loading.set()
        release.wait(REPLY_TIMEOUT_MS / 1000)
        return backend

    hearth = launch(data_dir_fast, open_backend=slow_load, wait_ready=False)
    qtbot.waitUntil(loading.is_set, timeout=WAIT_MS)
    assert hearth.window.isVisible() and hearth.replies.state == ResponseState.LOADING
    watch = _HideWatch(loading, release)
    hearth.window.installEventFilter(watch)
    hearth.window.close()
    assert watch.hidden_while_loading is True  # off the screen before the wait began
    assert hearth.closed and not hearth.window.isVisible()
    assert not [t for t in EngineThread.live if t.thread.isRunning()]


def test_quitting_while_the_models_folder_moves_asks_first(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    """R4: a folder move is finished or undone, never cut off by a quit. The move in
    progress is stood in for by the files job's own flag (a real move of the starter
    model is a rename, over before a test could close the window during it)."""
    hearth = launch(data_dir, backend=ScriptedBackend(replies=["hi"]))
    window = hearth.window
    window.show()
    hearth.models.files._moving = True

    answered = answer_next_dialog(qtbot, "Cancel")
    window.close()
    assert answered and "models folder is being moved" in answered[0]
    assert window.isVisible() and not hearth.closed  # "no": nothing was shut down

    hearth.models.files._moving = False
    window.close()  # nothing moving: no question
    assert hearth.closed and not window.isVisible()
