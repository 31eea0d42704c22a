"""Encrypting the chats from the window, off the GUI thread (issue 17): the progress
strip, reading while it runs, sending held (the message kept), quitting mid-way, and
the interrupted conversion said at the next start.

The model is a ScriptedBackend (the window is under test, not llama.cpp); the keyring
is FileKeyring, a real keyring backend in a file (this machine has no Secret Service).
The conversion is stopped at a step by ``Conversion.pause`` so the test can look at
the window while it runs; the cipher, the files and the widgets are real.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.chat_lock import ChatLock, Protection
from app.gui import HearthApp
from app.paths import resolve_paths
from engine.crypto import keys
from engine.history import cipher, migrate
from engine.history.store import ChatStore
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import answer_next_dialog, send
from tests.gui.test_privacy import THEME, file_keyring, open_privacy, shoot

_ = file_keyring  # the autouse fixture, used here too


def two_chats(db: Path) -> tuple[int, int]:
    store = ChatStore(db)
    try:
        first = store.create_conversation("Quokka facts").id
        store.add_message(first, "user", "Tell me about quokkas")
        store.add_message(first, "assistant", "Quokkas smile a lot.")
        second = store.create_conversation("Narwhal facts").id
        store.add_message(second, "user", "And narwhals?")
        store.add_message(second, "assistant", "Narwhals have a long tusk.")
    finally:
        store.close()
    return first, second


class Gate:
    """Stops the conversion after ``step`` until released (or cancelled)."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, step: str, cancel: threading.Event) -> None:
        if step != self.step:
            return
        self.reached.set()
        while not (self.release.is_set() or cancel.is_set()):
            cancel.wait(0.01)  # on the conversion's thread; the test waits with waitUntil


@pytest.fixture
def gate() -> Gate:
    return Gate("copied")


@contextmanager
def closing(hearth: HearthApp, gate: Gate) -> Iterator[None]:
    """A failed test must not leave the conversion waiting: pytest-qt's closing of the
    window (before any fixture's end) would ask whether to stop it, and wait."""
    try:
        yield
    finally:
        gate.release.set()
        hearth.close()


def start_encrypting(qtbot: QtBot, hearth: HearthApp, gate: Gate) -> None:
    hearth.privacy.conversion.pause = gate
    open_privacy(qtbot, hearth)
    section = hearth.privacy.section
    assert section is not None
    qtbot.mouseClick(section.apply_button, Qt.MouseButton.LeftButton)  # keyring: no passphrase
    qtbot.waitUntil(gate.reached.is_set, timeout=20_000)
    assert hearth.privacy.converting and not section.apply_button.isEnabled()


def test_encrypting_in_the_background_reads_on_and_holds_sending(
    qtbot: QtBot,
    launch,
    tmp_path: Path,
    gate: Gate,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "hearth-data"
    first, second = two_chats(resolve_paths(data).ensure().db_path)
    hearth = launch(data, backend=ScriptedBackend(["Wombats dig burrows."]), theme=THEME)
    with closing(hearth, gate):
        start_encrypting(qtbot, hearth, gate)
        strip = hearth.privacy.strip
        qtbot.waitUntil(lambda: "Checking the encrypted copy" in strip.text(), timeout=10_000)
        assert strip.isVisible() and strip.progress.isVisible()
        hearth.settings_controller.dialog.close()  # type: ignore[union-attr]
        shoot(hearth.window, "converting")

        # Reading goes on: another chat opens, search finds.
        hearth.conversations.open_conversation(second)
        qtbot.waitUntil(lambda: "long tusk" in hearth.window.chat_view.toPlainText())
        assert {h.conversation_id for h in hearth.store.search("quokkas")} == {first}
        # Nothing is written to the file being copied: sending says why, the text stays.
        send(qtbot, hearth, "What about wombats?")
        assert "Encrypting your chats: nothing can be saved" in hearth.notifier.texts()[-1]
        assert hearth.window.composer.text() == "What about wombats?"
        assert not hearth.replies.busy
        # Quitting asks; "Cancel" keeps Hearth running and converting.
        asked = answer_next_dialog(qtbot, "Cancel")
        hearth.window.close()
        assert "Stop and quit?" in asked[0] and not hearth.closed and hearth.privacy.converting

        gate.release.set()
        qtbot.waitUntil(lambda: hearth.privacy.recovery_dialog is not None, timeout=20_000)
        shown = hearth.privacy.recovery_dialog
        assert shown is not None
        shown.kept.setChecked(True)
        shown.accept()
        assert (
            strip.text().startswith("Your chats are encrypted (") and not strip.progress.isVisible()
        )
        shoot(hearth.window, "converted")
        assert not hearth.window.error_banner.isVisible()  # "nothing can be saved" is over
        assert ChatLock(hearth.store.path).protection() is Protection.KEYRING
        assert cipher.is_plain_file(hearth.store.path) is False
        # The kept message goes now, into the encrypted file.
        qtbot.keyClick(hearth.window.composer, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not hearth.replies.busy and hearth.window.composer.text() == "")
        qtbot.waitUntil(lambda: bool(hearth.store.search("wombats")), timeout=10_000)
        assert hearth.indexer.active  # the search indexer runs again
        qtbot.mouseClick(strip.close_button, Qt.MouseButton.LeftButton)
        assert not strip.isVisible()


def test_quitting_mid_conversion_stops_it_and_keeps_the_chats(
    qtbot: QtBot,
    launch,
    tmp_path: Path,
    gate: Gate,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "hearth-data"
    db = resolve_paths(data).ensure().db_path
    two_chats(db)
    hearth = launch(data, backend=ScriptedBackend(["Fine."]), theme=THEME)
    with closing(hearth, gate):
        start_encrypting(qtbot, hearth, gate)
        asked = answer_next_dialog(qtbot, "Yes")
        hearth.window.close()
        assert asked and hearth.closed  # shutdown waited for the conversion to stop
        assert not migrate.marker_path(db).exists() and not migrate.copy_path(db).exists()
        assert not keys.pending_path(db).exists()
        lock = ChatLock(db)
        assert lock.protection() is Protection.NONE
        store = ChatStore(db)
        try:
            assert store.count_conversations() == 2 and store.search("narwhals")
        finally:
            store.close()


def test_an_interrupted_conversion_is_undone_and_said_at_the_next_start(
    qtbot: QtBot,
    launch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """What a ``kill -9`` mid-copy leaves (the marker, a part of the copy): the window's
    start undoes it and says so (tests/unit/test_chat_lock.py kills a real process at
    each step; here the window's path is under test)."""
    data = tmp_path / "hearth-data"
    db = resolve_paths(data).ensure().db_path
    two_chats(db)
    migrate.marker_path(db).write_text('{"op": "encrypt", "step": "copy", "extra": {}}')
    migrate.copy_path(db).write_bytes(b"half a copy")
    hearth = launch(data, backend=ScriptedBackend(["Fine."]), theme=THEME)
    assert any("Encrypting your chat history was interrupted" in t for t in hearth.notifier.texts())
    assert not migrate.marker_path(db).exists() and not migrate.copy_path(db).exists()
    assert hearth.store.count_conversations() == 2
