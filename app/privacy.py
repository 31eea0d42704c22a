"""The window's side of encrypted chats (issue 17): unlocking at start, the Encryption
section of Settings → Privacy & storage, "Lock now" and locking after idle time.

The key work is app/chat_lock.py's (shared with the command line). A conversion
(encrypt, decrypt) runs off the GUI thread with a progress strip; its rules (no reply
streaming, writes held, quitting asks) are in app/privacy_convert.py. At its end the
same ``ChatStore`` object is reopened (``reopen``), so every controller keeps its handle.

"Lock now" (and the idle lock) closes the database and drops the key (``store.lock``),
hides the chats (the list, the open chat, the composer) behind the unlock dialog and
clears the clipboard; the passphrase reopens the same store. Python cannot wipe bytes,
so the key's memory is freed, not overwritten, and the open chat's text stays in the
hidden widgets until they are redrawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from app.chat_lock import ChatLock, Protection
from app.notifier import NoticeKind
from app.privacy_convert import Conversion, Job
from engine.crypto import keys
from engine.errors import KnownError, StoreError
from engine.history.opening import open_store
from engine.history.store import ChatStore
from engine.settings import Settings, Storage
from engine.units import format_duration
from ui.privacy_strip import ConversionStrip
from ui.settings_privacy import EncryptionSection, Held, RecoveryKeyDialog, UnlockDialog

if TYPE_CHECKING:
    from app.background import IdleIndexer
    from app.notifier import Notifier
    from ui.settings_dialog import SettingsDialog

log = logging.getLogger(__name__)

# What a read or write of the store says while it is locked (a model that finishes
# loading behind the lock reads the open chat, say); cleared from the banner on unlock.
_LOCKED = "Your chats are locked: unlock them to read or write them."
_RETRY_LOCK_MS = 30_000  # an idle lock put off by a streaming reply tries again then
Progress = Callable[[float], None]
Pause = Callable[[str], None]
Cancelled = Callable[[], bool]

_INPUT = frozenset(
    {QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress, QEvent.Type.Wheel, QEvent.Type.TouchBegin}
)


def _try_unlock(lock: ChatLock, text: str, recovery: bool) -> bytes:
    return lock.key_from_recovery(text) if recovery else lock.key_from_passphrase(text)


def open_at_start(
    lock: ChatLock, *, delay_base_ms: int = 1000
) -> tuple[ChatStore, str | None, bytes | None]:
    """The store, unlocked the way it is held: the keyring by itself; a passphrase (or
    the recovery key, when the keyring entry is gone) from the unlock dialog. A person
    who quits the dialog gets a ``StoreError`` saying the chats stayed locked."""
    notices = [lock.recover()]
    protection = lock.protection()
    key: bytes | None = None
    reason = ""
    if protection is Protection.KEYRING:
        try:
            key = lock.key_from_keyring()
        except keys.ChatKeyError as e:
            reason = e.message
    if protection in (Protection.PASSPHRASE, Protection.UNKNOWN) or reason:
        dialog = UnlockDialog(
            recovery_only=protection is not Protection.PASSPHRASE,
            offer_fresh=protection is Protection.UNKNOWN,
            reason=reason
            or (
                "Your chat history cannot be read as it is: it is encrypted and its key "
                "file is missing (enter your recovery key), or it is damaged (set it "
                "aside: Hearth keeps the file and starts an empty history)."
                if protection is Protection.UNKNOWN
                else ""
            ),
            delay_base_ms=delay_base_ms,
        )
        got: list[bytes] = []

        def attempt(text: str, recovery: bool) -> None:
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                got.append(_try_unlock(lock, text, recovery))
            except keys.ChatKeyError as e:
                dialog.refuse(e.message)
                return
            finally:
                QApplication.restoreOverrideCursor()
            dialog.accept()

        dialog.unlock_requested.connect(attempt)
        result = dialog.exec()
        if result == UnlockDialog.FRESH:
            store, notice = open_store(lock.db)  # moved aside with a timestamp, kept
            return store, " ".join(n for n in (*notices, notice) if n) or None, None
        if result != UnlockDialog.DialogCode.Accepted or not got:
            raise StoreError(
                "Hearth closed without unlocking your chats; they are unchanged. Start "
                "Hearth again and enter your passphrase or recovery key."
            )
        key = got[0]
    store, notice = lock.open(key)
    notices.append(notice)
    return store, " ".join(n for n in notices if n) or None, key


class PrivacyController(QObject):
    """Encryption on/off/re-held from Settings, lock now, lock after idle."""

    def __init__(
        self,
        lock: ChatLock,
        store: ChatStore,
        key: bytes | None,
        *,
        window: QWidget,
        settings: Settings,
        notifier: Notifier,
        indexer: IdleIndexer,
        busy: Callable[[], bool],
        delay_base_ms: int = 1000,
    ) -> None:
        super().__init__(window)
        self.lock, self.store, self._key = lock, store, key
        self.window, self.settings, self.notifier = window, settings, notifier
        self.indexer, self._busy = indexer, busy
        self._delay_base_ms = delay_base_ms
        self._key_id = keys.key_id(key) if key is not None else ""  # checks an unlock
        self.section: EncryptionSection | None = None
        self.unlock_dialog: UnlockDialog | None = None
        self.recovery_dialog: RecoveryKeyDialog | None = None
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.timeout.connect(self.lock_now)
        self.strip = ConversionStrip()
        add_bar = getattr(window, "add_notice_bar", None)
        if add_bar is not None:
            add_bar(self.strip)
        self.conversion = Conversion(store, self.strip, notifier, self)
        self._refresh()
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)
        self._restart_idle()

    # -- state -----------------------------------------------------------------------------

    @property
    def held(self) -> Held:
        return self._held

    def _refresh(self) -> None:
        """Read again how the chats are held (the key file), after a change."""
        self.lock.db = self.store.path  # the chats folder may have moved
        protection = self.lock.protection().value
        self._held = Held(protection) if protection in Held._value2member_map_ else Held.NONE

    @property
    def locked(self) -> bool:
        return self.unlock_dialog is not None

    def attach(self, dialog: SettingsDialog) -> None:
        """Put the Encryption section at the top of the dialog's Privacy & storage page."""
        page = dialog.findChild(QWidget, "page:storage")
        layout = page.layout() if page is not None else None
        if layout is None:
            return
        section = EncryptionSection(page)
        section.encrypt_requested.connect(self._on_encrypt)
        section.decrypt_requested.connect(self._on_decrypt)
        section.holder_change_requested.connect(self._on_holder_change)
        section.lock_requested.connect(self.lock_now)
        layout.insertWidget(0, section)  # type: ignore[attr-defined]
        self.section = section
        section.destroyed.connect(self._on_section_gone)  # the dialog closed
        self._show_state()

    @Slot()
    def _on_section_gone(self) -> None:
        self.section = None

    def _show_state(self) -> None:
        self._refresh()
        if self.section is not None:
            self.section.set_state(
                self.held, keyring_usable=self.lock.keyring.usable, busy=self.converting
            )

    # -- converting ------------------------------------------------------------------------

    @property
    def converting(self) -> bool:
        return self.conversion.running

    def _convert(self, job: Job, on_ok: Callable[[], None] = lambda: None) -> bool:
        """Start ``job`` off the GUI thread (app/privacy_convert.py has the rules);
        ``on_ok`` runs on the GUI thread once the store is reopened on the new file."""
        if self.converting:
            self.notifier.error("The chats are being converted already; wait until it is done.")
            return False
        if self._busy():
            self.notifier.error(
                "A reply is being written: wait until it finishes (or stop it), then try again."
            )
            return False
        self.indexer.stop()
        self._idle.stop()

        def ended(ok: bool, key: bytes | None) -> None:
            self._key = key
            self._key_id = keys.key_id(key) if key is not None else ""
            self.indexer.start()
            self._show_state()
            self._restart_idle()
            if ok:
                on_ok()

        try:
            self.conversion.start(job, self._key, ended)
        except KnownError as e:
            self.notifier.error(e.message)
            self.indexer.start()
            self._restart_idle()
            return False
        self._show_state()
        return True

    def may_close(self) -> bool:
        """Whether Hearth may quit now: asks while the chats are being converted."""
        if not self.converting:
            return True
        answer = QMessageBox.question(
            self.window,
            "Stop changing the encryption?",
            "Hearth is converting your chats. Stop and quit? Nothing is lost: Hearth "
            "removes the unfinished copy and your chats stay as they were; you can start "
            "again from Settings → Privacy & storage.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _show_recovery(self, code: str) -> None:
        dialog = RecoveryKeyDialog(code, self.section or self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(lambda _r: setattr(self, "recovery_dialog", None))
        self.recovery_dialog = dialog
        dialog.open()

    @Slot(str, str)
    def _on_encrypt(self, held: str, passphrase: str) -> None:
        codes: list[str] = []
        seconds: list[float] = []

        def work(progress: Progress, pause: Pause, cancelled: Cancelled) -> bytes | None:
            done = self.lock.encrypt(
                passphrase=passphrase if held == Held.PASSPHRASE else None,
                progress=progress,
                pause=pause,
                cancelled=cancelled,
            )
            codes.append(done.recovery_code)
            seconds.append(done.seconds)
            return self.lock.key_from_recovery(done.recovery_code)

        job = Job(
            "Encrypting your chats",
            "Checking the encrypted copy",
            work,
            lambda key: f"Your chats are encrypted ({format_duration(seconds[0])}).",
        )
        self._convert(job, lambda: self._show_recovery(codes[0]))

    @Slot()
    def _on_decrypt(self) -> None:
        key = self._key
        if key is None:
            return
        answer = QMessageBox.question(
            self.section or self.window,
            "Stop encrypting your chats?",
            "Hearth will write your chats back unencrypted: anyone with a copy of the "
            "chats folder could read them. The encrypted file is deleted; on an SSD or in "
            "a backup its blocks may remain, still encrypted.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return

        seconds: list[float] = []

        def work(progress: Progress, pause: Pause, cancelled: Cancelled) -> bytes | None:
            seconds.append(
                self.lock.decrypt(key, progress=progress, pause=pause, cancelled=cancelled)
            )
            return None

        job = Job(
            "Decrypting your chats",
            "Checking the decrypted copy",
            work,
            lambda _key: f"Your chats are no longer encrypted ({format_duration(seconds[0])}).",
        )
        self._convert(job)

    @Slot(str, str)
    def _on_holder_change(self, held: str, passphrase: str) -> None:
        key = self._key
        if key is None:
            return
        try:
            self.lock.change_passphrase(key, passphrase if held == Held.PASSPHRASE else None)
        except KnownError as e:
            self.notifier.error(e.message)
            return
        self._show_state()
        self._restart_idle()
        self.notifier.info(
            "Hearth will ask for the new passphrase from now on."
            if held == Held.PASSPHRASE
            else "The key of your chats is now kept in the system keyring."
        )

    # -- locking ----------------------------------------------------------------------------

    @Slot()
    def lock_now(self) -> None:
        """Close the database, drop the key and hide the chats behind the unlock dialog.

        With a passphrase only: a key in the keyring unlocks again with a click, without
        a secret, so locking would protect nothing the screen lock does not (the
        section and the README say so). Not while a reply is written or the chats are
        converted: the idle lock waits for their end; "Lock now" says why."""
        if self.locked or self.held is not Held.PASSPHRASE:
            return
        if self._busy() or self.converting:
            if self.sender() is self._idle:  # idle: lock once the reply is over
                self._idle.start(_RETRY_LOCK_MS)
            else:
                self.notifier.error(
                    "Hearth cannot lock while a reply is being written or the chats are "
                    "converted: stop the reply (or wait for the end), then lock."
                )
            return
        self.indexer.stop()
        if self._key is not None:
            self._key_id = keys.key_id(self._key)
        self.store.lock(_LOCKED)
        self._key = None  # no reference to the key while locked
        central = getattr(self.window, "centralWidget", lambda: None)()
        if central is not None:
            central.hide()
        QGuiApplication.clipboard().clear()  # a copied reply does not outlive the lock
        dialog = UnlockDialog(
            reason="Hearth is locked. Enter your passphrase to see your chats.",
            delay_base_ms=self._delay_base_ms,
            parent=self.window,
        )
        dialog.unlock_requested.connect(self._on_unlock_attempt)
        dialog.rejected.connect(self.window.close)
        self.unlock_dialog = dialog
        dialog.open()

    @Slot(str, bool)
    def _on_unlock_attempt(self, text: str, recovery: bool) -> None:
        dialog = self.unlock_dialog
        if dialog is None:
            return
        try:
            key = _try_unlock(self.lock, text, recovery)
        except keys.ChatKeyError as e:
            dialog.refuse(e.message)
            return
        if keys.key_id(key) != self._key_id:
            dialog.refuse("That does not unlock these chats.")
            return
        try:
            self.store.reopen(key)
        except KnownError as e:  # e.g. the disk went away while locked
            dialog.refuse(e.message)
            return
        self._key = key
        self.indexer.start()
        if self.notifier.texts(NoticeKind.ERROR)[-1:] == [_LOCKED]:  # said behind the lock
            self.notifier.clear_error()
        self.unlock_dialog = None
        dialog.rejected.disconnect(self.window.close)
        dialog.accept()
        dialog.deleteLater()
        central = getattr(self.window, "centralWidget", lambda: None)()
        if central is not None:
            central.show()
        self._restart_idle()

    def _restart_idle(self) -> None:
        minutes = int(self.settings[Storage.LOCK_AFTER_MIN] or 0)
        if minutes > 0 and not self.locked and self.held is Held.PASSPHRASE:
            self._idle.start(minutes * 60_000)
        else:
            self._idle.stop()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in _INPUT:
            self._restart_idle()  # from now, with the minutes as they are in Settings
        return False

    def close(self) -> None:
        """On quit, before the store closes: a conversion is stopped and waited for."""
        self.conversion.cancel_and_wait()
        self._idle.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
