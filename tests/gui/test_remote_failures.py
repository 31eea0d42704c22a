"""A server that fails, end to end in the window (issue 15): a 5xx, a stream Hearth
cannot read, a server that never answers (at all, or after part of a reply), an
endless reply, a name that DNS does not know. Each is one sentence in the window,
the question stays, and what was written so far is kept.

Real parts: the real window, engine thread and SQLite; Hearth's real RemoteBackend
talking HTTP to servers on 127.0.0.1: ``ScriptedServer`` (recorded OpenAI-protocol
exchanges, which no real server here can be made to fail with on demand) and
``SilentServer`` (accepts and never answers). The model on this computer is a
``ScriptedBackend`` (what is tested is the window around the models). The waits for
a silent server are short because the test configures them (``Connections.timeouts``;
a person gets 10 s to connect and 120 s between pieces). The loopback guard is on:
the ``.invalid`` name is refused as DNS would refuse it, and nothing but 127.0.0.1 is
touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.connections import family_of
from app.gui import HearthApp
from engine.endpoints.store import Endpoint
from engine.history.types import MessageStatus
from engine.inference.endpoint import Timeouts
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import Launch, send
from tests.gui.test_connections import MemoryKeyring, chunk, guard, ring
from tests.openai_servers import Exchange, LoopbackGuard, ScriptedServer, SilentServer, sse
from ui.state import ResponseState

__all__ = ["guard", "ring"]  # the fixtures, used by name

WAIT_MS = 30_000
QUICK = Timeouts(connect_s=5.0, read_s=0.5)  # a silent server is said in half a second


def start(launch: Launch, data_dir: Path) -> HearthApp:
    hearth = launch(data_dir, backend=ScriptedBackend(name="Local model"))
    hearth.connections.timeouts = QUICK
    return hearth


def use_server(qtbot: QtBot, hearth: HearthApp, name: str, base_url: str) -> None:
    """Chat through ``base_url``'s model "m" (as Settings → Model or the picker do)."""
    hearth.connections.store.put(Endpoint(name=name, base_url=base_url))
    hearth.models.select(family_of(name), "m")
    qtbot.waitUntil(
        lambda: (
            hearth.engine.model_info is not None
            and hearth.engine.model_info.name == "m"
            and hearth.replies.state == ResponseState.IDLE
        ),
        timeout=WAIT_MS,
    )


def wait_reply(qtbot: QtBot, hearth: HearthApp, text: str) -> None:
    send(qtbot, hearth, text)
    qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)


def load_failure_said(qtbot: QtBot, hearth: HearthApp, name: str, base_url: str) -> str:
    """Switch to a server model that cannot be loaded: the window goes back to the
    model on this computer and says why, in its banner."""
    hearth.connections.store.put(Endpoint(name=name, base_url=base_url))
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=WAIT_MS) as finished:
        hearth.models.select(family_of(name), "m")
    assert finished.args == [False]
    qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=WAIT_MS)
    info = hearth.engine.model_info
    assert info is not None and info.name == "Local model"
    assert not hearth.destination.line.isVisible()  # messages stay on this computer
    banner = hearth.window.error_banner
    assert banner.isVisible()
    return banner.label.text()


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("exchange", "said", "kept"),
    [
        (
            Exchange(status=500, body=[b'{"error": {"message": "CUDA error: out of memory"}}'],
                     headers=JSON),
            'failed to answer (500). It said: "CUDA error: out of memory"',
            "",
        ),
        (
            Exchange(status=503, body=[b'{"error": "loading model"}'],
                     headers={**JSON, "Retry-After": "20"}),
            "is busy (503: unavailable)",
            "",
        ),
        (
            Exchange(body=[*sse(chunk("Half "), chunk("a reply")), b"data: {not json\n\n"]),
            "sent a reply Hearth cannot read",
            "Half a reply",
        ),
        (
            Exchange(body=sse(chunk("Half "), chunk("a reply")), stall=True),
            "stopped sending the reply: nothing came for 0.5 seconds",
            "Half a reply",
        ),
        (Exchange(hang=True), "accepted the request but sent nothing for 0.5 seconds", ""),
    ],
    ids=["500", "503", "malformed-sse", "stops-half-way", "never-answers"],
)  # fmt: skip
def test_a_failing_reply_is_a_sentence_and_what_came_stays(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    ring: MemoryKeyring,
    exchange: Exchange,
    said: str,
    kept: str,
) -> None:
    with ScriptedServer([exchange]) as server:
        hearth = start(launch, data_dir)
        use_server(qtbot, hearth, "box", server.base_url)
        wait_reply(qtbot, hearth, "Hello")
        banner = hearth.window.error_banner
        qtbot.waitUntil(lambda: said in banner.label.text(), timeout=WAIT_MS)
        assert banner.isVisible() and f"127.0.0.1:{server.port}" in banner.label.text()
        conv = hearth.conversations.current_id
        assert conv is not None
        question, answer = hearth.store.messages(conv)[-2:]
        assert question.content == "Hello"  # the question stays
        assert answer.role == "assistant" and answer.status == MessageStatus.FAILED
        assert answer.content == kept
        if kept:
            assert kept in hearth.window.chat_view.toPlainText()
        assert hearth.window.composer.isEnabled()


def test_a_server_that_never_answers_at_all_is_said_and_the_chat_stays_here(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring
) -> None:
    with SilentServer() as silent:
        hearth = start(launch, data_dir)
        said = load_failure_said(qtbot, hearth, "quiet", silent.base_url)
        assert silent.accepted  # it was reached: the connection worked, no answer came
    assert said.startswith("Hearth could not load m on quiet: "), said
    assert f"The server at 127.0.0.1:{silent.port} accepted the request but sent nothing" in said
    assert "It went back to Local model" in said


def test_a_name_dns_does_not_know_is_said_and_the_chat_stays_here(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring, guard: LoopbackGuard
) -> None:
    hearth = start(launch, data_dir)
    said = load_failure_said(qtbot, hearth, "far", "https://gpu-box.invalid/v1")
    assert "The server name in gpu-box.invalid could not be found (DNS)" in said, said
    assert guard.seen and all("gpu-box.invalid" in seen for seen in guard.seen)
    guard.seen.clear()  # the refused lookups were this test's own


def test_an_endless_reply_is_cut_at_the_reply_budget_and_kept(
    qtbot: QtBot, launch: Launch, data_dir: Path, ring: MemoryKeyring
) -> None:
    endless = Exchange(body=sse(chunk("word ")), endless=True)  # and never [DONE]
    with ScriptedServer([endless]) as server:
        hearth = start(launch, data_dir)
        hearth.settings.set("generation.max_tokens", 16)
        hearth.settings_controller.apply_live("generation.max_tokens")
        use_server(qtbot, hearth, "box", server.base_url)
        wait_reply(qtbot, hearth, "Talk forever")
        conv = hearth.conversations.current_id
        assert conv is not None
        answer = hearth.store.messages(conv)[-1]
        assert answer.status == MessageStatus.LENGTH  # cut, as a local model's would be
        assert answer.content.split() == ["word"] * 16
        assert not hearth.window.error_banner.isVisible()
        qtbot.waitUntil(server.client_gone.is_set, timeout=WAIT_MS)  # Hearth hung up
        assert hearth.window.composer.isEnabled()
