"""A chat in the window on a model served by llama-cpp-python's own OpenAI-compatible
server (``llama_cpp.server``, a real server no one here wrote) on the real starter
model, on 127.0.0.1 (issue 15): the answer streams in, Stop closes the stream at once
and keeps what was written, and a server that goes away is a sentence with the reply
kept. The model on this computer is a ``ScriptedBackend`` (what is tested is the window
and the remote path; llama.cpp itself runs in the server). The loopback guard proves
nothing but 127.0.0.1 was touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.connections import family_of
from engine.endpoints.store import Endpoint
from engine.history.types import MessageStatus
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, send
from tests.openai_servers import LlamaServer, LoopbackGuard
from ui.state import ResponseState

STARTER = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def guard() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as g:
        yield g
    assert not g.seen, g.seen


@pytest.fixture
def server(starter_models_dir: Path, tmp_path: Path) -> Iterator[LlamaServer]:
    with LlamaServer(starter_models_dir / STARTER, log=tmp_path / "server.log") as running:
        yield running


@pytest.mark.timeout(900)
def test_a_chat_on_llama_cpp_server_streams_stops_and_survives_the_server_going(
    qtbot: QtBot, launch: Launch, data_dir: Path, server: LlamaServer
) -> None:
    hearth = launch(data_dir, backend=ScriptedBackend(name="Local model"))
    hearth.connections.store.put(Endpoint(name="desk", base_url=server.base_url))
    hearth.models.select(family_of("desk"), server.alias)
    qtbot.waitUntil(
        lambda: (
            hearth.engine.model_info is not None
            and hearth.engine.model_info.name == server.alias
            and hearth.replies.state == ResponseState.IDLE
        ),
        timeout=REPLY_TIMEOUT_MS,
    )
    window = hearth.window
    assert hearth.destination.line.text() == (
        f"⇄ Messages in this chat go to desk ({server.base_url}), model {server.alias}."
    )
    # A short answer, streamed in from the server.
    hearth.settings.set("generation.max_tokens", 24)
    hearth.settings_controller.apply_live("generation.max_tokens")
    send(qtbot, hearth, "Name a colour.")
    qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=REPLY_TIMEOUT_MS)
    conv = hearth.conversations.current_id
    assert conv is not None
    first = hearth.store.messages(conv)[-1]
    assert first.role == "assistant" and first.content.strip()
    assert first.status in (MessageStatus.COMPLETE, MessageStatus.LENGTH)  # (24 tokens)
    assert first.model == f"{server.base_url}/models/{server.alias}"
    assert f"{server.alias} · desk" in window.chat_view.toPlainText()
    # llama-cpp-python's server says nowhere how long its window is (no /props): the
    # meter follows the conversation in tokens, without a share of a guess.
    # (The chat is measured after the reply is saved: the count comes a moment later.)
    meter = window.chat_toolbar.meter
    qtbot.waitUntil(lambda: meter.format() != "0 tokens", timeout=REPLY_TIMEOUT_MS)
    assert meter.format().endswith(" tokens")
    assert int(meter.format().split()[0].replace(",", "")) > 5
    # A long answer, stopped as soon as it has begun: the window is back at once.
    hearth.settings.set("generation.max_tokens", 2048)
    hearth.settings_controller.apply_live("generation.max_tokens")
    with qtbot.waitSignal(hearth.engine.delta_ready, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Write a long story about a lighthouse keeper.")
    qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)  # Stop
    qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=REPLY_TIMEOUT_MS)
    stopped = hearth.store.messages(conv)[-1]
    assert stopped.status == MessageStatus.STOPPED and stopped.content
    assert len(stopped.content) < 2048  # far from the 2,048 tokens it was allowed
    # The server goes away: the next reply is a sentence, the chat stays.
    server.kill()
    send(qtbot, hearth, "Are you there?")
    qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=REPLY_TIMEOUT_MS)
    said = window.error_banner.label.text()
    assert window.error_banner.isVisible() and "127.0.0.1" in said, said
    messages = hearth.store.messages(conv)
    assert [m.content for m in messages if m.role == "user"][-1] == "Are you there?"
    assert messages[-1].status == MessageStatus.FAILED
