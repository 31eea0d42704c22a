"""The one-time offer to encrypt the chats (issue 17): a strip after the third chat,
"Encrypt…" opens Settings → Privacy & storage, "Not now" asks again after more chats,
"Don't ask again" is kept in the settings across starts.

The model is a ScriptedBackend (the window is under test, not llama.cpp); the keyring
is FileKeyring (this machine has no Secret Service). Everything else is real.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.paths import resolve_paths
from app.privacy_offer import LATER_CHATS
from engine.history.store import ChatStore
from engine.settings import Storage
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import send
from tests.gui.test_privacy import THEME, file_keyring, shoot
from ui.privacy_strip import OFFER_TEXT

_ = file_keyring  # the autouse fixture, used here too


def chats(data: Path, n: int) -> None:
    store = ChatStore(resolve_paths(data).ensure().db_path)
    try:
        for i in range(n):
            conv = store.create_conversation(f"Chat {i}").id
            store.add_message(conv, "user", f"Question {i}")
            store.add_message(conv, "assistant", f"Answer {i}")
    finally:
        store.close()


def test_the_offer_comes_after_the_third_chat_and_not_now_puts_it_off(
    qtbot: QtBot,
    launch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "hearth-data"
    chats(data, 2)
    hearth = launch(data, backend=ScriptedBackend(["Sure."]), theme=THEME)
    offer = hearth.encrypt_offer.strip
    assert not offer.isVisible()  # two chats: not yet
    hearth.conversations.new_chat()
    send(qtbot, hearth, "A third chat")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    qtbot.waitUntil(offer.isVisible)
    assert OFFER_TEXT in offer.label.text()
    shoot(hearth.window, "encrypt-offer")
    qtbot.mouseClick(offer.later_button, Qt.MouseButton.LeftButton)
    assert not offer.isVisible()
    assert hearth.settings[Storage.ENCRYPT_OFFER_AT] == 3 + LATER_CHATS
    hearth.conversations.new_chat()
    send(qtbot, hearth, "A fourth chat")
    qtbot.waitUntil(lambda: not hearth.replies.busy, timeout=10_000)
    assert not offer.isVisible()  # put off: asked again after ten more
    # "Encrypt…" opens the Encryption section.
    hearth.settings.set(Storage.ENCRYPT_OFFER_AT, 3)
    hearth.encrypt_offer.check()
    assert offer.isVisible()
    qtbot.mouseClick(offer.encrypt_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: hearth.privacy.section is not None)
    assert hearth.privacy.section.isVisible() and not offer.isVisible()  # type: ignore[union-attr]


def test_dont_ask_again_is_kept_across_starts(
    qtbot: QtBot,
    launch,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = tmp_path / "hearth-data"
    chats(data, 3)
    hearth = launch(data, backend=ScriptedBackend(["Sure."]), theme=THEME)
    offer = hearth.encrypt_offer.strip
    qtbot.waitUntil(offer.isVisible)
    qtbot.mouseClick(offer.never_button, Qt.MouseButton.LeftButton)
    assert not offer.isVisible() and hearth.settings[Storage.ENCRYPT_OFFER_AT] == 0
    hearth.close()
    again = launch(data, backend=ScriptedBackend(["Sure."]), theme=THEME)
    assert not again.encrypt_offer.strip.isVisible()
