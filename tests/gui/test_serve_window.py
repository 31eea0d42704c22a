"""Settings → Other programs on the real window: the switch starts the local API on the
window's engine thread, a program's request and the window's own reply take turns, the
key is required and replaceable, and the page says where it listens.

Fake: the model (``ScriptedBackend``: a reply held half-way on cue, so the turn-taking
is seen, not timed) and the keyring (an in-memory one: the machine's own must not be
touched). The API on the real starter model is tests/integration/test_serve.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from keyring.backend import KeyringBackend
from PySide6.QtWidgets import QCheckBox
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from app.serve_window import KEY_NAME
from engine.endpoints.keys import KeyStore
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, send
from tests.gui.test_settings import open_settings
from tests.openai_servers import LoopbackGuard, free_port
from ui.state import ResponseState

OFF = "Off. Turn on the switch above to let other programs use the model."


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.kept.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.kept[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.kept.pop((service, username), None)


@pytest.fixture(autouse=True)
def guard() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as g:
        yield g
    assert g.seen == [], g.seen


def _serving(qtbot: QtBot, hearth: HearthApp, ring: MemoryKeyring) -> Any:
    hearth.serve._keys = lambda: KeyStore(ring)
    hearth.settings.set("serve.port", free_port())
    dialog = open_settings(qtbot, hearth)
    titles = [dialog.pages.item(i).text() for i in range(dialog.pages.count())]
    dialog.pages.setCurrentRow(titles.index("Other programs"))
    switch = dialog.findChild(QCheckBox, "setting:serve.enabled")
    assert switch is not None and not switch.isChecked()
    assert dialog.serve_section.status.text() == OFF
    switch.click()
    qtbot.waitUntil(lambda: hearth.serve.server is not None, timeout=REPLY_TIMEOUT_MS)
    return dialog


def test_a_program_and_the_window_take_turns(qtbot: QtBot, launch: Launch, tmp_path: Path) -> None:
    gate = threading.Event()
    backend = ScriptedBackend(["the window's reply", "the program's reply"], gate=gate)
    hearth = launch(tmp_path, backend=backend)
    ring = MemoryKeyring()
    dialog = _serving(qtbot, hearth, ring)
    server = hearth.serve.server
    assert server is not None and server.url.startswith("http://127.0.0.1:")
    key = ring.kept[("Hearth", f"connection:{KEY_NAME}")]
    section = dialog.serve_section
    assert section.key.text() == key and section.key.isVisible()
    assert f"at {server.url}" in section.status.text()
    assert 'model="scripted"' in section.usage.toPlainText()
    dialog.close()

    send(qtbot, hearth, "Hello")  # the window's reply starts, held after its first word
    qtbot.waitUntil(lambda: len(backend.turns) == 1, timeout=REPLY_TIMEOUT_MS)
    answers: list[str] = []
    client = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)
    asking = threading.Thread(
        target=lambda: answers.append(
            client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "Hi"}]
            )
            .choices[0]
            .message.content
            or ""
        )
    )
    asking.start()
    qtbot.waitUntil(lambda: server.pending == 1, timeout=REPLY_TIMEOUT_MS)
    assert len(backend.turns) == 1  # the program waits behind the window's reply
    gate.set()
    qtbot.waitUntil(lambda: not asking.is_alive(), timeout=REPLY_TIMEOUT_MS)
    client.close()
    assert answers == ["the program's reply"]
    assert hearth.replies.state == ResponseState.IDLE
    assert "1 request answered" in hearth.serve.status()
    stranger = openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0)
    with stranger, pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_a_new_key_replaces_the_old_one_and_off_stops_it(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    hearth = launch(tmp_path, backend=ScriptedBackend([]))
    ring = MemoryKeyring()
    dialog = _serving(qtbot, hearth, ring)
    old = hearth.serve.key
    dialog.serve_section.new_key.click()
    qtbot.waitUntil(lambda: hearth.serve.key != old, timeout=REPLY_TIMEOUT_MS)
    server = hearth.serve.server
    assert server is not None and server.api_key == hearth.serve.key
    assert dialog.serve_section.key.text() == hearth.serve.key
    assert ring.kept[("Hearth", f"connection:{KEY_NAME}")] == hearth.serve.key
    refused = openai.OpenAI(base_url=server.url, api_key=str(old), max_retries=0)
    with refused, pytest.raises(openai.AuthenticationError):
        refused.models.list()
    with openai.OpenAI(base_url=server.url, api_key=str(hearth.serve.key)) as client:
        assert [m.id for m in client.models.list()] == ["scripted"]
    switch = dialog.findChild(QCheckBox, "setting:serve.enabled")
    assert switch is not None
    switch.click()
    assert hearth.serve.server is None
    assert dialog.serve_section.status.text() == OFF


def test_the_key_is_shown_once_when_made(qtbot: QtBot, launch: Launch, tmp_path: Path) -> None:
    """As a token page on the web: the Settings window open when the key was made shows
    it; a later one says a key exists and offers a new one, never the key itself."""
    hearth = launch(tmp_path, backend=ScriptedBackend([]))
    ring = MemoryKeyring()
    dialog = _serving(qtbot, hearth, ring)
    key = ring.kept[("Hearth", f"connection:{KEY_NAME}")]
    assert dialog.serve_section.key.text() == key
    dialog.close()
    qtbot.waitUntil(lambda: hearth.serve._dialog is None, timeout=REPLY_TIMEOUT_MS)

    hearth.settings_controller.open()
    again = hearth.settings_controller.dialog
    assert again is not None and again is not dialog
    titles = [again.pages.item(i).text() for i in range(again.pages.count())]
    again.pages.setCurrentRow(titles.index("Other programs"))
    section = again.serve_section
    assert section.key.isVisible() and section.key.text() == ""
    assert "Shown once" in section.key.placeholderText()
    assert not section.copy_key.isEnabled()
    assert key not in section.usage.toPlainText() and "YOUR_KEY" in section.usage.toPlainText()
    assert hearth.serve.server is not None and hearth.serve.server.api_key == key  # still kept

    section.new_key.click()  # a new one is shown, in this window
    qtbot.waitUntil(lambda: section.key.text() not in ("", key), timeout=REPLY_TIMEOUT_MS)
    assert section.copy_key.isEnabled()
    assert section.key.text() == ring.kept[("Hearth", f"connection:{KEY_NAME}")]
