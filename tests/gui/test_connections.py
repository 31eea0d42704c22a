"""Settings → Connections and remote models in the window (issue 15).

Real parts: the real window, engine thread, SQLite and Settings window; the remote
model is Hearth's real RemoteBackend talking HTTP to servers on 127.0.0.1:
``ScriptedServer`` (tests/openai_servers.py, a stdlib http.server answering with
recorded OpenAI-protocol exchanges: 401, 429, a stream cut half way, which no real
server here can be made to do on demand). The model on this computer is a
``ScriptedBackend`` (what is tested is the window around the models, not llama.cpp);
tests/gui/test_remote_chat.py does the same against llama-cpp-python's real server.
The keyring is an in-memory keyring backend (this machine has no Secret Service).
Every test runs with the loopback guard on: nothing but 127.0.0.1 is touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.connections import family_of
from app.gui import HearthApp
from app.paths import resolve_paths
from engine.endpoints.store import Endpoint, EndpointStore
from engine.history.types import MessageStatus
from engine.settings import Settings
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import Launch, answer_next_dialog, send
from tests.openai_servers import Exchange, LoopbackGuard, ScriptedServer, free_port, sse
from ui.settings_connections import ConnectionsPanel
from ui.settings_dialog import SettingsDialog
from ui.state import ResponseState

WAIT_MS = 30_000


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring (keyring ships none; this machine has no Secret Service)."""

    priority = 1

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


@pytest.fixture(autouse=True)
def guard() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as g:
        yield g
    assert not g.seen, g.seen


@pytest.fixture
def ring() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    yield memory
    keyring.set_keyring(before)


def chunk(
    text: str = "", *, finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    body: dict[str, Any] = {"choices": [choice]}
    if usage is not None:
        body = {"choices": [], "usage": usage}
    return body


def reply(*words: str) -> Exchange:
    pieces = [chunk(w) for w in words]
    usage = {"prompt_tokens": 40, "completion_tokens": len(words), "total_tokens": 40 + len(words)}
    return Exchange(body=sse(*pieces, chunk(finish="stop"), chunk(usage=usage), "[DONE]"))


def open_connections(qtbot: QtBot, hearth: HearthApp) -> tuple[SettingsDialog, ConnectionsPanel]:
    hearth.settings_controller.open()
    dialog = hearth.settings_controller.dialog
    assert dialog is not None
    titles = [dialog.pages.item(i).text() for i in range(dialog.pages.count())]
    dialog.pages.setCurrentRow(titles.index("Connections"))
    panel = dialog.findChild(ConnectionsPanel)
    assert panel is not None and panel.isVisible()
    return dialog, panel


def add_connection(
    qtbot: QtBot, panel: ConnectionsPanel, name: str, url: str, key: str = ""
) -> None:
    panel.start_new()
    qtbot.keyClicks(panel.name_edit, name)
    qtbot.keyClicks(panel.url_edit, url)
    if key:
        qtbot.keyClicks(panel.key_edit, key)
    qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)


def use_remote(
    qtbot: QtBot, hearth: HearthApp, dialog: SettingsDialog, name: str, model: str
) -> None:
    """Settings → Model: the connection in the model list, then its model, as a person."""
    titles = [dialog.pages.item(i).text() for i in range(dialog.pages.count())]
    dialog.pages.setCurrentRow(titles.index("Model"))
    combo = dialog.family_combo
    index = combo.findData(family_of(name))
    assert index >= 0, [combo.itemText(i) for i in range(combo.count())]
    combo.setCurrentIndex(index)
    combo.activated.emit(index)
    qtbot.waitUntil(lambda: dialog.quants.topLevelItemCount() > 0, timeout=WAIT_MS)
    items = [dialog.quants.topLevelItem(i) for i in range(dialog.quants.topLevelItemCount())]
    item = next(i for i in items if i is not None and i.text(0) == model)
    dialog.quants.setCurrentItem(item)
    assert dialog.use_quant.text() == "Use this model"
    qtbot.mouseClick(dialog.use_quant, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: (
            hearth.engine.model_info is not None
            and hearth.engine.model_info.name == model
            and hearth.replies.state == ResponseState.IDLE
        ),
        timeout=WAIT_MS,
    )


def test_a_connection_is_added_checked_listed_and_removed(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring
) -> None:
    with ScriptedServer(models=("alpha", "beta")) as server:
        hearth = launch(data_dir, backend=ScriptedBackend())
        dialog, panel = open_connections(qtbot, hearth)
        assert panel.empty.isVisible()
        add_connection(qtbot, panel, "box", f"http://127.0.0.1:{server.port}", key="sk-secret-1")
        qtbot.waitUntil(lambda: "2 models" in panel.result.text(), timeout=WAIT_MS)
        assert panel.result.text() == (
            f"Connected to 127.0.0.1:{server.port}: 2 models (alpha, beta)."
        )
        assert panel.key_edit.text() == ""  # the key never stays on screen after Save
        # The key went to the keyring, nowhere else (the file, the log).
        assert ring.entries == {("Hearth", "connection:box"): "sk-secret-1"}
        saved = (hearth.paths.config_dir / "connections.json").read_text()
        assert json.loads(saved)["connections"] == [
            {"name": "box", "base_url": f"http://127.0.0.1:{server.port}/v1", "model": ""}
        ]
        assert "sk-secret-1" not in saved
        assert "sk-secret-1" not in (hearth.paths.log_dir / "hearth.log").read_text()
        # The server was asked with the key.
        gets = [s for s in server.seen if s.method == "GET"]
        headers = {k.lower(): v for k, v in gets[-1].headers.items()}
        assert headers["authorization"] == "Bearer sk-secret-1"
        qtbot.waitUntil(lambda: "Models on box: alpha, beta" in panel.models.text())
        qtbot.waitUntil(lambda: "key is saved" in panel.key_status.text(), timeout=WAIT_MS)
        # Check: one sentence.
        panel.show_result("")
        qtbot.mouseClick(panel.check_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "Connected to" in panel.result.text(), timeout=WAIT_MS)
        # "Forget key" is there for a saved key only.
        assert panel.forget_key.isVisibleTo(panel)
        qtbot.mouseClick(panel.forget_key, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "No API key saved" in panel.key_status.text(), timeout=WAIT_MS)
        assert not ring.entries and not panel.forget_key.isVisibleTo(panel)
        # Remove asks first; then the connection and its key are gone.
        answer_next_dialog(qtbot, "Remove")
        qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.result.text() == "Removed box.", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: not ring.entries, timeout=WAIT_MS)
        assert panel.list.count() == 0 and panel.empty.isVisible()
        dialog.reject()


def test_bad_input_gets_a_sentence_and_saves_nothing(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring
) -> None:
    hearth = launch(data_dir, backend=ScriptedBackend())
    dialog, panel = open_connections(qtbot, hearth)
    add_connection(qtbot, panel, "box", "gpu-box:8000")
    assert "is not a server address. Write it like http://gpu-box:8000/v1" in panel.result.text()
    add_connection(qtbot, panel, "", "http://127.0.0.1:9/v1")
    assert "A connection's name is a short word" in panel.result.text()
    assert not (hearth.paths.config_dir / "connections.json").exists()
    # An address where nothing listens: saved, and the check says so in a sentence.
    port = free_port()
    add_connection(qtbot, panel, "down", f"http://127.0.0.1:{port}/v1")
    qtbot.waitUntil(lambda: "could not" in panel.result.text().lower(), timeout=WAIT_MS)
    assert f"127.0.0.1:{port}" in panel.result.text()
    dialog.reject()


def test_plain_http_to_another_computer_is_saved_only_after_a_warning(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring, guard: LoopbackGuard
) -> None:
    hearth = launch(data_dir, backend=ScriptedBackend())
    dialog, panel = open_connections(qtbot, hearth)
    asked = answer_next_dialog(qtbot, "Cancel")
    add_connection(qtbot, panel, "gpu-box", "http://gpu-box.invalid:8000/v1")
    assert asked and "plain http://, not encrypted" in asked[0]
    assert panel.result.text().startswith("Not saved.")
    assert hearth.connections.all() == []
    asked = answer_next_dialog(qtbot, "Save anyway")
    add_connection(qtbot, panel, "gpu-box", "http://gpu-box.invalid:8000/v1")
    assert asked
    assert [e.name for e in hearth.connections.all()] == ["gpu-box"]
    # Its check cannot reach the name (the guard answers as DNS would): a sentence.
    qtbot.waitUntil(lambda: "Asking" not in panel.result.text(), timeout=WAIT_MS)
    assert "gpu-box.invalid" in panel.result.text()
    qtbot.waitUntil(lambda: hearth.connections.models_of("gpu-box") is not None, timeout=WAIT_MS)
    # The refused lookups were this test's own: the check and the list of models.
    assert guard.seen and all("gpu-box.invalid" in seen for seen in guard.seen)
    guard.seen.clear()
    dialog.reject()


def test_a_chat_moves_to_a_server_model_and_back(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring
) -> None:
    local = ScriptedBackend(["Local answer one.", "Local answer two."], name="Local model")
    script = [reply("Remote ", "answer.")]
    with ScriptedServer(script, models=("big-model",)) as server:
        hearth = launch(data_dir, backend=local)
        window = hearth.window
        assert not hearth.destination.line.isVisible()  # nothing says "goes to" locally
        send(qtbot, hearth, "Hello here")
        qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)
        dialog, panel = open_connections(qtbot, hearth)
        add_connection(qtbot, panel, "box", server.base_url)
        qtbot.waitUntil(lambda: "1 model" in panel.result.text(), timeout=WAIT_MS)
        use_remote(qtbot, hearth, dialog, "box", "big-model")
        dialog.reject()
        line = hearth.destination.line
        assert line.isVisible()
        assert line.text() == (
            f"⇄ Messages in this chat go to box ({server.base_url}), model big-model."
        )
        assert hearth.settings["model.remote_connection"] == "box"
        assert "on 127.0.0.1" in window.status_model.text()
        send(qtbot, hearth, "Hello there")
        qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)
        post = [s for s in server.seen if s.method == "POST"][-1]
        assert post.body is not None
        # The whole conversation went: the local model's earlier reply included.
        assert [m["content"] for m in post.body["messages"]][-3:] == [
            "Hello here",
            "Local answer one.",
            "Hello there",
        ]
        conv = hearth.conversations.current_id
        assert conv is not None
        replies = [m for m in hearth.store.messages(conv) if m.role == "assistant"]
        assert [r.content for r in replies] == ["Local answer one.", "Remote answer."]
        assert replies[1].model == f"{server.base_url}/models/big-model"
        text = window.chat_view.toPlainText()
        # Each reply's header names the model that wrote it (the local one by its file).
        assert "scripted\nLocal answer one." in text
        assert "big-model · box\nRemote answer." in text
        # The server does not say how long its context window is: the meter counts the
        # tokens in use (from the server's own figures) and shows no share of a guess.
        meter = window.chat_toolbar.meter
        qtbot.waitUntil(lambda: re.fullmatch(r"[1-9][\d,]* tokens", meter.format()) is not None)
        # The speed is what arrived over the network, and says so.
        assert window.status_speed.text().endswith(" tokens/s received")
        assert "127.0.0.1" in window.status_speed.toolTip()
        # Back to the model on this computer: the line goes, the chat goes on here.
        hearth.models.switch_to("Local model", Path("scripted.gguf"), "qwen3.5-9b", "auto")
        qtbot.waitUntil(
            lambda: (
                hearth.engine.model_info is not None
                and hearth.engine.model_info.name == "Local model"
            ),
            timeout=WAIT_MS,
        )
        assert not line.isVisible()
        assert hearth.settings["model.remote_connection"] == ""
        qtbot.waitUntil(lambda: meter.format().startswith("Context "), timeout=WAIT_MS)
        send(qtbot, hearth, "And here?")
        qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)
        assert local.turns[-1].messages[-1].content == "And here?"
        assert len([s for s in server.seen if s.method == "POST"]) == 1


@pytest.mark.parametrize(
    ("exchange", "said"),
    [
        (
            Exchange(status=401, body=[b'{"error": {"message": "bad key"}}'],
                     headers={"Content-Type": "application/json"}),
            "did not accept the API key",
        ),
        (
            Exchange(status=429, body=[b'{"error": {"message": "slow down"}}'],
                     headers={"Content-Type": "application/json", "Retry-After": "30"}),
            "30 seconds",
        ),
        (Exchange(body=sse(chunk("Half "), chunk("a reply")), drop=True), "kept"),
    ],
    ids=["401", "429", "cut"],
)  # fmt: skip
def test_a_failing_server_is_a_sentence_and_the_partial_reply_stays(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    ring: MemoryKeyring,
    exchange: Exchange,
    said: str,
) -> None:
    with ScriptedServer([exchange], models=("m",)) as server:
        hearth = launch(data_dir, backend=ScriptedBackend())
        dialog, panel = open_connections(qtbot, hearth)
        add_connection(qtbot, panel, "box", server.base_url)
        qtbot.waitUntil(lambda: "1 model" in panel.result.text(), timeout=WAIT_MS)
        use_remote(qtbot, hearth, dialog, "box", "m")
        dialog.reject()
        send(qtbot, hearth, "Hello")
        qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)
        banner = hearth.window.error_banner
        qtbot.waitUntil(lambda: said in banner.label.text(), timeout=WAIT_MS)
        assert banner.isVisible()
        conv = hearth.conversations.current_id
        assert conv is not None
        last = hearth.store.messages(conv)[-1]
        assert last.role == "assistant" and last.status == MessageStatus.FAILED
        if exchange.drop:
            assert last.content == "Half a reply"
            assert "Half a reply" in hearth.window.chat_view.toPlainText()
        assert hearth.window.composer.isEnabled()


def test_a_server_chosen_for_chats_that_cannot_be_reached_at_start_falls_back(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring
) -> None:
    """The server model chosen last time is tried first; where nothing listens, the
    model on this computer loads instead, with a sentence, and the choice stays."""
    port = free_port()  # nothing listens there
    config = resolve_paths(data_dir).config_dir
    EndpointStore(config / "connections.json").put(
        Endpoint(name="box", base_url=f"http://127.0.0.1:{port}/v1")
    )
    settings = Settings(config / "settings.json")  # as Settings → Model saves the choice
    settings.update({"model.remote_connection": "box", "model.remote_model": "m"})
    hearth = launch(data_dir, backend=ScriptedBackend(name="Local model"))
    qtbot.waitUntil(
        lambda: (
            hearth.engine.model_info is not None and hearth.engine.model_info.name == "Local model"
        ),
        timeout=WAIT_MS,
    )
    said = hearth.window.error_banner.label.text()
    assert f"127.0.0.1:{port}" in said and "the model on this computer for now" in said, said
    assert not hearth.destination.line.isVisible()
    assert hearth.settings["model.remote_connection"] == "box"  # tried again next time
