"""EngineClient on the real engine thread, with a ScriptedBackend standing in for a
loaded model (what is tested is the client: requests, cancel events, the model it owns)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.engine_client import EngineClient
from engine.history.turns import status_for
from engine.history.types import MessageStatus
from engine.types import EngineOptions, Message, ModelInfo, ReplyDone, Turn
from tests.fakes.scripted import ScriptedBackend, scripted_opener

WAIT_MS = 10_000


@pytest.fixture
def gate() -> threading.Event:
    return threading.Event()


@pytest.fixture
def backend(gate: threading.Event) -> ScriptedBackend:
    return ScriptedBackend(["one two three four"], gate=gate)


@pytest.fixture
def client(qtbot: QtBot, backend: ScriptedBackend, tmp_path: Path) -> Iterator[EngineClient]:
    engine = EngineClient(tmp_path, open_backend=scripted_opener(backend))
    with qtbot.waitSignal(engine.model_changed, timeout=WAIT_MS) as changed:
        engine.load("scripted.gguf", EngineOptions(n_ctx=2048))
    info, error = changed.args
    assert isinstance(info, ModelInfo) and error == ""
    yield engine
    engine.close()


def _turn(*texts: str) -> Turn:
    return Turn(messages=tuple(Message("user", t) for t in texts), cache_key=1)


def test_it_owns_the_loaded_model_and_its_path(client: EngineClient, tmp_path: Path) -> None:
    assert client.model_path == "scripted.gguf" and not client.loading
    assert client.model_info is not None and client.model_info.name == "Scripted model"
    client.rename_model("Catalog name")
    assert client.model_info.name == "Catalog name"
    client.set_path(str(tmp_path / "a.gguf"))
    moved = tmp_path / "moved"
    client.relocate(moved)  # the models folder moved: the file went with it
    assert client.model_path == str(moved / "a.gguf") and client.models_dir == moved


def test_stop_cancels_only_the_request_it_names(
    qtbot: QtBot, client: EngineClient, backend: ScriptedBackend, gate: threading.Event
) -> None:
    ends: dict[int, ReplyDone] = {}
    warmed: list[tuple[int, int, int]] = []
    client.reply_finished.connect(lambda rid, done: ends.__setitem__(rid, done))
    client.warm_finished.connect(lambda rid, reused, read: warmed.append((rid, reused, read)))
    reply = client.generate(_turn("Tell me"))
    qtbot.waitUntil(lambda: len(backend.turns) == 1, timeout=WAIT_MS)  # held at the gate
    warm = client.warm(_turn("Tell me", "more words here"))  # queued behind the reply
    client.stop(reply)
    qtbot.waitUntil(lambda: reply in ends and bool(warmed), timeout=WAIT_MS)
    assert status_for(ends[reply].reason) is MessageStatus.STOPPED
    # The warm-up queued behind it was not cancelled: it read the conversation.
    ((warm_id, _reused, read),) = warmed
    assert warm_id == warm and read > 0
    gate.set()


def test_close_cancels_a_reply_in_progress(
    qtbot: QtBot, client: EngineClient, backend: ScriptedBackend
) -> None:
    client.generate(_turn("Tell me"))
    qtbot.waitUntil(lambda: len(backend.turns) == 1, timeout=WAIT_MS)  # held at the gate
    client.close()  # returns: the held reply saw its cancel event
    assert client.closed and backend.closed
    assert client.generate(_turn("again")) > 0  # asking afterwards is harmless
