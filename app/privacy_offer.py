"""The gentle, one-time offer to encrypt the chats (issue 17): once a few chats exist
on an unencrypted history, a strip above the composer asks "Encrypt them?" with
Encrypt… (Settings → Privacy & storage), Not now (asked again after more chats) and
Don't ask again. The answer is kept in the settings (``Storage.ENCRYPT_OFFER_AT``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot

from engine.errors import KnownError
from engine.history import cipher
from engine.history.store import ChatStore
from engine.settings import Settings, Storage
from ui.privacy_strip import EncryptOfferStrip
from ui.settings_privacy import Held

if TYPE_CHECKING:
    from app.privacy import PrivacyController
    from app.settings_controller import SettingsController

LATER_CHATS = 10  # "Not now": asked again when this many more chats exist


class EncryptOffer(QObject):
    def __init__(
        self,
        privacy: PrivacyController,
        store: ChatStore,
        settings: Settings,
        *,
        add_bar: Callable[[EncryptOfferStrip], None],
        open_privacy: Callable[[], None],
    ) -> None:
        super().__init__(privacy)
        self.privacy, self.store, self.settings = privacy, store, settings
        self._open_privacy = open_privacy
        self.strip = EncryptOfferStrip()
        add_bar(self.strip)
        self.strip.encrypt_clicked.connect(self._on_encrypt)
        self.strip.later_clicked.connect(self._on_later)
        self.strip.never_clicked.connect(self._on_never)

    def _chats(self) -> int:
        try:
            return self.store.count_conversations()
        except KnownError:  # locked, converting, a disk problem: ask another time
            return -1

    @Slot()
    def check(self) -> None:
        """Show the strip if it is time (called at start and after each reply)."""
        at = int(self.settings[Storage.ENCRYPT_OFFER_AT] or 0)
        due = (
            at > 0
            and cipher.cipher_available()
            and self.privacy.held is Held.NONE
            and not self.privacy.converting
            and not self.privacy.locked
            and self._chats() >= at
        )
        self.strip.setVisible(due)

    @Slot()
    def _on_encrypt(self) -> None:
        self.strip.hide()  # the Settings section takes it from here; shown again if not done
        self._open_privacy()

    @Slot()
    def _on_later(self) -> None:
        self.strip.hide()
        self.settings.set(Storage.ENCRYPT_OFFER_AT, max(self._chats(), 0) + LATER_CHATS)

    @Slot()
    def _on_never(self) -> None:
        self.strip.hide()
        self.settings.set(Storage.ENCRYPT_OFFER_AT, 0)


def show_privacy_page(controller: SettingsController) -> None:
    """Open Settings on Privacy & storage (where the Encryption section is)."""
    controller.open()
    dialog = controller.dialog
    if dialog is None:
        return
    for row in range(dialog.pages.count()):
        if dialog.pages.item(row).text() == "Privacy & storage":
            dialog.pages.setCurrentRow(row)
