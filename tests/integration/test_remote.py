"""The remote backend against a real OpenAI-compatible server no one here wrote:
llama-cpp-python's own ``llama_cpp.server`` (the ``[server]`` extra of the test
dependencies) serving the real starter model on 127.0.0.1, in a child process.

What this server cannot show (vLLM's and Ollama's reasoning fields, usage in the last
chunk, 429, malformed streams, a server that never answers, a real 404 for an unknown
model: this one serves its default model under any name) is in
tests/unit/test_remote_protocol.py, against scripted exchanges. The loopback guard is
on for every test here: nothing but 127.0.0.1 is touched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import EndpointError, GenerationError, KnownError
from engine.inference.endpoint import check_connection, list_models
from engine.inference.remote import RemoteBackend
from engine.types import Event, FinishReason, Message, ReplyDone, SamplingParams, TextDelta, Turn
from tests.openai_servers import LlamaServer, LoopbackGuard

STARTER = "SmolLM2-135M-Instruct.Q4_1.gguf"
KEY = "test-key-7f3a"
TURN = Turn(messages=(Message("user", "Write a long story about a dragon."),))


@pytest.fixture(autouse=True)
def guard() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as g:
        yield g
    assert g.seen == [], g.seen


@pytest.fixture(scope="module")
def server(
    starter_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with LlamaServer(starter_models_dir / STARTER, log=log) as running:
        yield running


def test_streams_a_reply_with_usage(server: LlamaServer) -> None:
    backend = RemoteBackend.connect(server.base_url)  # the server's only model
    assert backend.info.name == "smollm2"
    assert backend.info.extra["where"] == f"127.0.0.1:{server.port}"
    events = list(
        backend.stream(TURN, SamplingParams(max_tokens=12, seed=3), stop=threading.Event())
    )
    backend.close()
    pieces = [e for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.reason is FinishReason.LENGTH
    assert len(pieces) == 12 and "".join(p.text for p in pieces).strip()
    # This server sends no usage while streaming: the pieces are counted.
    assert done.stats.completion_tokens == 12
    assert done.stats.tokens_per_s > 0 and 0 < done.stats.ttft_s <= done.stats.elapsed_s


def test_the_server_decides_the_end(server: LlamaServer) -> None:
    backend = RemoteBackend.connect(server.base_url, "smollm2")
    turn = Turn(messages=(Message("user", "What is 2+2? Answer with one number."),))
    params = SamplingParams(max_tokens=100, temperature=0.0)
    events = list(backend.stream(turn, params, stop=threading.Event()))
    backend.close()
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.reason is FinishReason.STOP
    assert 0 < done.stats.completion_tokens < 100


def test_stop_mid_stream_closes_the_stream(server: LlamaServer) -> None:
    backend = RemoteBackend.connect(server.base_url, "smollm2")
    stop = threading.Event()
    events: list[Event] = []
    for event in backend.stream(TURN, SamplingParams(max_tokens=400), stop=stop):
        events.append(event)
        if len(events) == 3:
            stop.set()
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.reason is FinishReason.CANCELLED
    assert len(events) == 4  # three pieces, then the end: nothing after Stop
    # The server is free again at once: the next reply is answered.
    again = list(backend.stream(TURN, SamplingParams(max_tokens=2), stop=threading.Event()))
    backend.close()
    assert isinstance(again[-1], ReplyDone) and again[-1].reason is FinishReason.LENGTH


def test_models_and_check(server: LlamaServer) -> None:
    assert [m.id for m in list_models(server.base_url)] == ["smollm2"]
    assert check_connection(server.base_url) == (
        f"Connected to 127.0.0.1:{server.port}: 1 model (smollm2)."
    )
    assert "no model named" in check_connection(server.base_url, model="qwen")


def test_unknown_model(server: LlamaServer) -> None:
    # This server would answer with its default model under any name; Hearth asks its
    # list first and says so, before anything is sent.
    with pytest.raises(EndpointError, match=r'has no model named "qwen3\.5-27b"\. It has: smollm2'):
        RemoteBackend.connect(server.base_url, "qwen3.5-27b")


def test_a_wrong_key(starter_models_dir: Path, tmp_path: Path) -> None:
    with LlamaServer(
        starter_models_dir / STARTER, api_key=KEY, log=tmp_path / "server.log"
    ) as keyed:
        with pytest.raises(EndpointError, match="did not accept the API key") as refused:
            RemoteBackend.connect(keyed.base_url, api_key="wrong")
        assert KEY not in str(refused.value) and "wrong" not in str(refused.value)
        assert "did not accept" in check_connection(keyed.base_url)
        backend = RemoteBackend.connect(keyed.base_url, api_key=KEY)
        events = list(backend.stream(TURN, SamplingParams(max_tokens=3), stop=threading.Event()))
        backend.close()
    assert isinstance(events[-1], ReplyDone) and events[-1].reason is FinishReason.LENGTH


def test_server_killed_mid_stream(starter_models_dir: Path, tmp_path: Path) -> None:
    with LlamaServer(starter_models_dir / STARTER, log=tmp_path / "server.log") as doomed:
        backend = RemoteBackend.connect(doomed.base_url)
        events: list[Event] = []
        with pytest.raises(KnownError) as failed:
            for event in backend.stream(
                TURN, SamplingParams(max_tokens=400), stop=threading.Event()
            ):
                events.append(event)
                if len(events) == 3:
                    doomed.kill()
        backend.close()
    # The pieces that came stand; the failure is a sentence.
    assert len(events) >= 3 and all(isinstance(e, TextDelta) for e in events)
    assert isinstance(failed.value, GenerationError)
    assert "broke off in the middle of the reply" in failed.value.message
    # Afterwards, nothing answers there.
    with pytest.raises(EndpointError, match=r"Nothing answers at 127\.0\.0\.1"):
        RemoteBackend.connect(doomed.base_url)
