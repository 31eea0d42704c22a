"""Encrypted chats in the window (issue 17): turning encryption on in Settings →
Privacy & storage, the recovery key shown once, the unlock dialog at start with its
growing wait, "Lock now", and chatting on in between.

The model is a ScriptedBackend (the window's part is under test, not llama.cpp); the
keyring is FileKeyring, a real keyring backend in a file (this machine has no Secret
Service: tests/fakes/file_keyring.py). Everything else is real: the cipher, the files,
Argon2id, the widgets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.chat_lock import ChatLock, Protection
from app.gui import HearthApp
from app.paths import resolve_paths
from app.privacy import open_at_start
from engine.crypto import keys
from engine.errors import StoreError
from engine.history import cipher
from engine.history.store import ChatStore
from tests.fakes.file_keyring import ENV, FileKeyring
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import answer_next_dialog, send
from tests.unit.test_store_encryption import leaks
from ui.settings_privacy import Held, RecoveryKeyDialog, UnlockDialog

PASS = "purple elephants dance"
# Screenshots for a person to look at: HEARTH_SHOTS=<folder> HEARTH_SHOTS_THEME=dark|light.
SHOTS = Path(os.environ.get("HEARTH_SHOTS", "")) if os.environ.get("HEARTH_SHOTS") else None
THEME = os.environ.get("HEARTH_SHOTS_THEME") or None


@pytest.fixture(autouse=True)
def file_keyring(tmp_path: Path) -> Iterator[Path]:
    """Hearth's code asks ``keyring.get_keyring()``: it gets the file backend."""
    path = tmp_path / "keyring.json"
    os.environ[ENV] = str(path)
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring(path))
    yield path
    keyring.set_keyring(previous)
    os.environ.pop(ENV, None)


def shoot(widget: QWidget, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        widget.grab().save(str(SHOTS / f"{name}-{THEME or 'system'}.png"))


def open_privacy(qtbot: QtBot, hearth: HearthApp) -> None:
    hearth.settings_controller.open()
    dialog = hearth.settings_controller.dialog
    assert dialog is not None
    titles = [dialog.pages.item(i).text() for i in range(dialog.pages.count())]
    dialog.pages.setCurrentRow(titles.index("Privacy & storage"))
    qtbot.waitUntil(lambda: hearth.privacy.section is not None and dialog.isVisible())


def test_turn_on_with_a_passphrase_chat_on_lock_and_unlock(
    qtbot: QtBot,
    launch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "hearth-data"
    hearth = launch(
        data, backend=ScriptedBackend(["The marmalade is ready.", "Zeppelins fly."]), theme=THEME
    )
    send(qtbot, hearth, "Tell me about marmalade")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    open_privacy(qtbot, hearth)
    section = hearth.privacy.section
    assert section is not None and section.held is Held.NONE
    assert "unencrypted" in section.status.text()
    shoot(hearth.settings_controller.dialog, "privacy-off")  # type: ignore[arg-type]
    section.passphrase_choice.click()  # (the middle of a wide radio button is past its text)
    qtbot.keyClicks(section.passphrase, PASS)
    qtbot.keyClicks(section.repeat, PASS[:-1])
    assert not section.apply_button.isEnabled() and "differ" in section.problem.text()
    qtbot.keyClicks(section.repeat, PASS[-1])
    assert section.apply_button.isEnabled()
    shoot(hearth.settings_controller.dialog, "privacy-passphrase")  # type: ignore[arg-type]
    qtbot.mouseClick(section.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: hearth.privacy.recovery_dialog is not None)
    shown = hearth.privacy.recovery_dialog
    assert isinstance(shown, RecoveryKeyDialog)
    code = shown.code.text()
    assert len(code) == 64 and not shown.ok.isEnabled()  # not before it was kept
    shoot(shown, "recovery-key")
    shown.kept.setChecked(True)
    qtbot.mouseClick(shown.ok, Qt.MouseButton.LeftButton)
    assert section.held is Held.PASSPHRASE and "passphrase" in section.status.text()
    assert any(t.startswith("Your chats are encrypted (") for t in hearth.notifier.texts())
    assert hearth.privacy.strip.text().startswith("Your chats are encrypted (")
    # Chatting goes on, on the same store, now encrypted.
    hearth.settings_controller.dialog.close()  # type: ignore[union-attr]
    send(qtbot, hearth, "And zeppelins?")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    assert [h.snippet for h in hearth.store.search("zeppelins")]
    assert leaks_of(data) == []

    # Lock now: the chats hide; a wrong passphrase waits longer each time.
    hearth.privacy._delay_base_ms = 40
    hearth.privacy.lock_now()
    dialog = hearth.privacy.unlock_dialog
    assert dialog is not None and hearth.privacy.locked
    central = hearth.window.centralWidget()
    assert not central.isVisible()
    # Locked means closed: no connection, no key held by the store, the cipher or privacy.
    assert hearth.store.locked and not hearth.store.encrypted
    assert cipher.key_for(hearth.store.path) is None and hearth.privacy._key is None
    with pytest.raises(StoreError, match="Your chats are locked"):
        hearth.store.search("zeppelins")
    with pytest.raises(StoreError, match="Your chats are locked"):
        hearth.store.create_conversation("sneaky")
    # A model that finishes loading behind the lock reads the open chat: a sentence, no
    # crash, and the banner does not outlive the lock.
    hearth.engine.model_changed.emit(hearth.engine.model_info, "")
    assert not any("went wrong" in t for t in hearth.notifier.texts())
    assert "Your chats are locked" in hearth.notifier.texts()[-1]
    shoot(dialog, "locked")
    for attempt in (1, 2):
        dialog.entry.setText("not it at all")
        qtbot.mouseClick(dialog.unlock_button, Qt.MouseButton.LeftButton)
        assert not dialog.unlock_button.isEnabled()
        assert "does not unlock" in dialog.problem.text()
        assert dialog.delay_ms == 40 * 2 ** (attempt - 1)
        qtbot.waitUntil(dialog.unlock_button.isEnabled, timeout=5000)
    dialog.entry.setText(PASS)
    qtbot.mouseClick(dialog.unlock_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not hearth.privacy.locked and central.isVisible())
    assert not hearth.window.error_banner.isVisible()
    assert not hearth.store.locked and [h.snippet for h in hearth.store.search("zeppelins")]
    send(qtbot, hearth, "Still zeppelins?")  # the reopened store takes the next chat
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    assert len(hearth.store.search("zeppelins")) >= 2


def leaks_of(data: Path) -> list[str]:
    """Words of the chats in any file Hearth wrote (settings, logs, the database…)."""
    return [w for w in leaks(data) if "marmalade" in w or "zeppelin" in w]


def test_unlock_at_start_asks_for_the_passphrase(qtbot: QtBot, tmp_path: Path) -> None:
    db = tmp_path / "hearth.sqlite3"
    with ChatStore(db) as store:
        store.create_conversation("Marmalade plans")
    lock = ChatLock(db)
    lock.encrypt(passphrase=PASS)
    typed: list[str] = ["wrong passphrase", PASS]

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, UnlockDialog):
            QTimer.singleShot(20, answer)
            return
        if not dialog.unlock_button.isEnabled():
            QTimer.singleShot(20, answer)
            return
        shoot(dialog, "unlock-at-start")
        dialog.entry.setText(typed.pop(0))
        dialog.unlock_button.click()
        if typed:
            QTimer.singleShot(20, answer)

    QTimer.singleShot(0, answer)
    store, notice, key = open_at_start(lock, delay_base_ms=30)
    with store:
        assert [c.title for c in store.list_conversations()] == ["Marmalade plans"]
    assert key is not None and notice is None and typed == []


def test_keyring_entry_gone_asks_for_the_recovery_key(qtbot: QtBot, tmp_path: Path) -> None:
    db = tmp_path / "hearth.sqlite3"
    lock = ChatLock(db)
    code = lock.encrypt().recovery_code
    kf = lock.keyfile()
    assert kf is not None and lock.protection() is Protection.KEYRING
    keys.Keyring().forget(kf.key_id)
    reasons: list[str] = []

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, UnlockDialog):
            QTimer.singleShot(20, answer)
            return
        reasons.append(dialog.reason.text())
        assert dialog.use_recovery.isChecked() and not dialog.use_recovery.isEnabled()
        dialog.entry.setText(code)
        dialog.unlock_button.click()

    QTimer.singleShot(0, answer)
    store, _, _ = open_at_start(lock)
    store.close()
    assert "no longer in the system keyring" in reasons[0]
    assert keys.Keyring().load(kf.key_id) is not None  # put back


def test_quitting_the_unlock_dialog_leaves_the_chats_locked(qtbot: QtBot, tmp_path: Path) -> None:
    db = tmp_path / "hearth.sqlite3"
    lock = ChatLock(db)
    lock.encrypt(passphrase=PASS)

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, UnlockDialog):
            QTimer.singleShot(20, answer)
            return
        dialog.reject()

    QTimer.singleShot(0, answer)
    with pytest.raises(Exception, match="without unlocking your chats"):
        open_at_start(lock)


def test_stop_encrypting_asks_then_writes_a_plain_file(
    qtbot: QtBot,
    launch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "hearth-data"
    paths = resolve_paths(data).ensure()
    ChatLock(paths.db_path).encrypt()  # in the keyring: opens by itself
    hearth = launch(data, backend=ScriptedBackend(["Fine."]), theme=THEME)
    open_privacy(qtbot, hearth)
    section = hearth.privacy.section
    assert section is not None and section.held is Held.KEYRING
    assert not section.lock_button.isVisible()  # nothing to lock with: the keyring unlocks
    shoot(hearth.settings_controller.dialog, "privacy-keyring")  # type: ignore[arg-type]
    seen = answer_next_dialog(qtbot, "Yes")
    qtbot.mouseClick(section.decrypt_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: section.held is Held.NONE)
    assert "unencrypted" in seen[0]
    assert ChatLock(paths.db_path).protection() is Protection.NONE
    send(qtbot, hearth, "Still here?")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    assert hearth.store.count_conversations() == 1


def test_moving_an_encrypted_history_takes_its_key_file_along(
    qtbot: QtBot,
    launch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "hearth-data"
    paths = resolve_paths(data).ensure()
    ChatLock(paths.db_path).encrypt(passphrase=PASS)
    unlock_when_asked(PASS)
    hearth = launch(data, backend=ScriptedBackend(["Noted: lighthouse."]))
    send(qtbot, hearth, "Remember lighthouse")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    hearth.settings_controller.open()
    dialog = hearth.settings_controller.dialog
    assert dialog is not None
    new = tmp_path / "synced" / "chats"
    answer_next_dialog(qtbot, "Move")
    dialog.move_chats_requested.emit(str(new))  # what Qt's folder picker returns
    qtbot.waitUntil(lambda: hearth.store.path == new / "hearth.sqlite3", timeout=10_000)
    assert sorted(p.name for p in new.iterdir() if "sqlite3-" not in p.name) == [
        "hearth.sqlite3",
        "hearth.sqlite3.key",
    ]
    assert not list(data.glob("hearth.sqlite3*"))
    assert leaks_of(tmp_path / "synced") == []
    dialog.close()
    hearth.close()
    unlock_when_asked(PASS)
    again = launch(data, backend=ScriptedBackend([]))
    assert [h.message_id for h in again.store.search("lighthouse")]


def unlock_when_asked(passphrase: str) -> None:
    """Type ``passphrase`` into the unlock dialog at start, as a person would."""

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, UnlockDialog):
            QTimer.singleShot(20, answer)
            return
        dialog.entry.setText(passphrase)
        dialog.unlock_button.click()

    QTimer.singleShot(0, answer)


def test_export_and_import_on_an_encrypted_history_and_the_warning(
    qtbot: QtBot,
    launch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Export and import run on a second connection (a thread of its own), which opens
    the encrypted file with the key of the store open at that path."""
    data = tmp_path / "hearth-data"
    paths = resolve_paths(data).ensure()
    ChatLock(paths.db_path).encrypt()
    hearth = launch(data, backend=ScriptedBackend(["Kept: lighthouse."]))
    send(qtbot, hearth, "Keep lighthouse safe")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    exported = tmp_path / "out" / "chats.json"
    exported.parent.mkdir()
    hearth.window.export_requested.emit(None, "json", str(exported))
    qtbot.waitUntil(
        lambda: any("not encrypted" in t for t in hearth.notifier.texts()), timeout=10_000
    )
    assert b"lighthouse" in exported.read_bytes()  # what an export is for, said above
    hearth.window.import_requested.emit(str(exported))
    qtbot.waitUntil(lambda: hearth.window.conversations.rowCount() == 2, timeout=10_000)
    assert len(hearth.store.search("lighthouse")) == 4
    assert leaks_of(data) == [] and not [w for w in leaks(data) if "lighthouse" in w]


def test_a_file_that_is_neither_plain_nor_known_can_be_set_aside(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """No key file and not a plain database: encrypted elsewhere, or damaged. The
    person may set it aside (kept, as a damaged file always was) and start empty."""
    db = tmp_path / "hearth.sqlite3"
    db.write_bytes(b"not a database at all\x00\xff" * 300)

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, UnlockDialog):
            QTimer.singleShot(20, answer)
            return
        assert "damaged" in dialog.reason.text() and "recovery key" in dialog.reason.text()
        dialog.findChild(QWidget, "unlock_fresh").click()  # type: ignore[union-attr]

    QTimer.singleShot(0, answer)
    store, notice, key = open_at_start(ChatLock(db))
    with store:
        assert store.count_conversations() == 0 and key is None
    assert notice and "moved it to" in notice
    assert [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
