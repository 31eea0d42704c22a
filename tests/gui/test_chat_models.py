"""Each chat's model (issue 15): the toolbar's picker switches the open chat between a
model on this computer and a server's, a chat remembers the model that last wrote in
it, and opening a chat that was on another model offers it (never switches by
surprise) while the window says where the next message goes.

Real parts: the real window, engine thread, SQLite; the server is Hearth's real
RemoteBackend talking HTTP to ``ScriptedServer`` on 127.0.0.1 (recorded OpenAI
exchanges). The model on this computer is a ``ScriptedBackend`` standing in for the
real starter file (its path is that file, so it can be picked like any model file);
what is tested is the window around the models, not llama.cpp. Loopback guard on.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.connections import family_of
from engine.endpoints.store import Endpoint
from engine.history.turns import ChatModel, chat_settings
from engine.models.service import label
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import Launch, send
from tests.gui.test_connections import MemoryKeyring, guard, reply, ring
from tests.openai_servers import ScriptedServer
from ui.state import ResponseState

__all__ = ["guard", "ring"]  # the fixtures, used by name

WAIT_MS = 30_000
STARTER = "SmolLM2-135M-Instruct.Q4_1.gguf"


def pick(qtbot: QtBot, hearth: object, name: str) -> None:
    """Open the toolbar's model menu and choose ``name``, as a person would."""
    models = hearth.chat_models  # type: ignore[attr-defined]
    menu = models.picker.menu_

    def listed() -> bool:
        menu.aboutToShow.emit()  # what opening it does (a popup would wait offscreen)
        return any(a.text() == name and a.isEnabled() for a in menu.actions())

    qtbot.waitUntil(listed, timeout=WAIT_MS)
    next(a for a in menu.actions() if a.text() == name).trigger()


def test_a_chat_remembers_its_model_and_offers_it_when_opened(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring
) -> None:
    starter = str(data_dir / "models" / STARTER)
    local = ScriptedBackend(["Local one.", "Local two."], name="Local model", path=starter)
    with ScriptedServer([reply("Remote ", "one.")], models=("big-model",)) as server:
        hearth = launch(data_dir, backend=local, model_path=starter)
        hearth.connections.store.put(Endpoint(name="box", base_url=server.base_url))
        window, picker = hearth.window, hearth.chat_models.picker
        notice, line = hearth.chat_models.notice, hearth.destination.line
        entry = hearth.models.service.entry_for_path(starter)  # the starter is the catalog's
        assert entry is not None
        named = label(entry)  # as the Model page names it: "SmolLM2 135M Instruct Q4_1"
        assert picker.isVisible() and picker.text() == named
        # Chat A: a local reply, then the picker moves it to the server's model.
        send(qtbot, hearth, "Hello here")
        qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)
        chat_a = hearth.conversations.current_id
        assert chat_a is not None
        here = ChatModel(entry.family, entry.quantization, named)
        assert chat_settings(hearth.store, chat_a).model == here
        pick(qtbot, hearth, "big-model")
        qtbot.waitUntil(
            lambda: picker.text() == "big-model on box" and not hearth.engine.loading,
            timeout=WAIT_MS,
        )
        on_box = ChatModel(family_of("box"), "big-model", "big-model on box")
        assert chat_settings(hearth.store, chat_a).model == on_box
        assert line.isVisible() and "go to box" in line.text()
        assert not notice.isVisible()
        send(qtbot, hearth, "Hello there")
        qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)
        # Chat B: new, and back on this computer through the picker.
        qtbot.mouseClick(window.new_chat_button, Qt.MouseButton.LeftButton)
        pick(qtbot, hearth, named)
        qtbot.waitUntil(lambda: picker.text() == named, timeout=WAIT_MS)
        assert not line.isVisible()
        send(qtbot, hearth, "Only here")
        qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)
        chat_b = hearth.conversations.current_id
        assert chat_b is not None and chat_b != chat_a
        assert chat_settings(hearth.store, chat_b).model == here
        # Opening A offers its server model and says where the next message goes now.
        hearth.conversations.open_conversation(chat_a)
        assert notice.isVisible() and not line.isVisible()
        assert notice.text() == (
            f"This chat last used big-model on box; your next message goes to {named} "
            "and stays on this computer."
        )
        assert notice.switch_button.text() == "Use big-model"
        assert hearth.engine.remote is None  # nothing switched by itself
        qtbot.mouseClick(notice.switch_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: line.isVisible() and not hearth.engine.loading, timeout=WAIT_MS)
        assert not notice.isVisible() and picker.text() == "big-model on box"
        # Opening B now offers this computer's model; "Keep" keeps the server's.
        hearth.conversations.open_conversation(chat_b)
        assert notice.isVisible() and line.isVisible()
        assert notice.text() == (
            f"This chat last used {named}; your next message goes to big-model on box "
            f"at {server.base_url}."
        )
        qtbot.mouseClick(notice.keep_button, Qt.MouseButton.LeftButton)
        assert not notice.isVisible()
        hearth.conversations.open_conversation(chat_a)
        hearth.conversations.open_conversation(chat_b)
        assert not notice.isVisible()  # closed for this chat until its model changes
        assert [s.method for s in server.seen].count("POST") == 1
