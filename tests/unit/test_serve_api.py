"""Hearth's local API (app/serving) around a scripted model: the real server on
127.0.0.1, read by the official ``openai`` client and by plain HTTP.

Fake: the model (``ScriptedBackend``), so that the protocol's corners (thinking, a
stop string split across pieces, a reply held half-way while a client leaves, a full
queue) happen on cue in the fast tier. The same server on the real starter model is
tests/integration/test_serve.py.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from app.serving.engine_queue import Job, ThreadRunner
from app.serving.protocol import StopScanner
from app.serving.server import ApiServer
from engine.types import ModelInfo, ThinkingDelta
from tests.fakes.scripted import ScriptedBackend
from tests.openai_servers import LoopbackGuard
from tests.waiting import QUICK_S, wait_until

MODEL = "scripted"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(autouse=True)
def guard() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as g:
        yield g
    assert g.seen == [], g.seen


class Api:
    def __init__(self, backend: ScriptedBackend, **kwargs: Any) -> None:
        self.backend = backend
        self.runner = ThreadRunner(backend)
        self.server = ApiServer(self.runner, port=0, **kwargs).start()
        self.clients: list[openai.OpenAI] = []

    def client(self, key: str = "any") -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.server.url, api_key=key, max_retries=0)
        self.clients.append(client)
        return client

    def http(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=QUICK_S)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), json.loads(response.read())
        finally:
            conn.close()

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.server.close()
        self.runner.close()


@pytest.fixture
def make_api() -> Iterator[Any]:
    made: list[Api] = []

    def make(backend: ScriptedBackend, **kwargs: Any) -> Api:
        made.append(Api(backend, **kwargs))
        return made[-1]

    yield make
    for api in made:
        api.close()


def test_stop_scanner_holds_back_what_may_start_a_stop_string() -> None:
    scanner = StopScanner(["END", "\n\n"])
    assert scanner.feed("Hello E") == "Hello "  # "E" may start END
    assert scanner.feed("N") == ""
    assert scanner.feed("D of it") == "" and scanner.hit
    other = StopScanner(["END"])
    assert other.feed("An E") == "An " and other.feed("ast") == "East" and not other.hit
    assert other.feed(" E") == " " and other.flush() == "E"


def test_thinking_comes_back_as_reasoning_content(make_api: Any) -> None:
    backend = ScriptedBackend(
        [[ThinkingDelta("Let me think."), "Hi", " there"]] * 2, supports_thinking=True
    )
    api = make_api(backend)
    client = api.client()
    whole = client.chat.completions.create(
        model=MODEL, messages=HI, extra_body={"chat_template_kwargs": {"enable_thinking": True}}
    )
    message = whole.choices[0].message
    assert message.content == "Hi there"
    assert message.model_extra == {"reasoning_content": "Let me think."}
    deltas = [
        c.choices[0].delta
        for c in client.chat.completions.create(
            model=MODEL, messages=HI, reasoning_effort="none", stream=True
        )
        if c.choices
    ]
    assert [d.model_extra.get("reasoning_content") for d in deltas[1:2]] == ["Let me think."]
    assert "".join(d.content or "" for d in deltas) == "Hi there"
    assert [t.thinking for t in backend.turns] == [True, False]


def test_sampling_reaches_the_model_as_overrides(make_api: Any) -> None:
    backend = ScriptedBackend(["Yes"])
    api = make_api(backend)
    api.client().chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        max_tokens=50,
        temperature=0.2,
        top_p=0.5,
        seed=7,
        extra_body={"top_k": 5, "repetition_penalty": 1.2},
    )
    (params,) = backend.params
    assert (params.max_tokens, params.temperature, params.top_p, params.seed) == (50, 0.2, 0.5, 7)
    assert (params.top_k, params.repeat_penalty) == (5, 1.2)
    assert params.max_thinking_tokens == 50  # thinking gets at most the answer's budget again
    (turn,) = backend.turns
    assert [(m.role, m.content) for m in turn.messages] == [("system", "Be brief."), ("user", "Hi")]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"model": MODEL, "messages": HI, "tools": [{"type": "function"}]}, "does not run tools"),
        ({"model": MODEL, "messages": HI, "n": 2}, "one reply per request"),
        ({"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}, "the role 'tool'"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "text parts only",
        ),
        ({"model": MODEL, "messages": HI, "temperature": 9}, "'temperature' must be between"),
        ({"model": MODEL, "messages": HI, "max_tokens": 0}, "'max_tokens' must be a whole"),
        ({"messages": HI}, "Name the model in 'model'"),
    ],
)
def test_a_request_hearth_cannot_answer_gets_a_sentence(
    make_api: Any, body: dict[str, Any], says: str
) -> None:
    api = make_api(ScriptedBackend())
    status, _, answer = api.http("POST", "/v1/chat/completions", json.dumps(body).encode())
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    assert says in answer["error"]["message"]


def test_unknown_paths_say_what_is_offered(make_api: Any) -> None:
    api = make_api(ScriptedBackend())
    status, _, answer = api.http("POST", "/v1/completions", b"{}")
    assert status == 404 and "POST /v1/chat/completions" in answer["error"]["message"]
    status, _, answer = api.http("GET", "/v1/embeddings")
    assert status == 404 and "GET /v1/models" in answer["error"]["message"]


def test_a_key_is_required_when_set(make_api: Any) -> None:
    api = make_api(ScriptedBackend(["Hello"]), api_key="s3cret")
    with pytest.raises(openai.AuthenticationError):
        api.client("wrong").models.list()
    status, _, _ = api.http("GET", "/v1/models")
    assert status == 401
    reply = api.client("s3cret").chat.completions.create(model=MODEL, messages=HI)
    assert reply.choices[0].message.content == "Hello"


def test_web_pages_and_rebound_names_are_refused(make_api: Any) -> None:
    api = make_api(ScriptedBackend())
    status, _, answer = api.http("GET", "/v1/models", Host="evil.example:80")
    assert status == 403 and "127.0.0.1 or localhost" in answer["error"]["message"]
    status, _, answer = api.http("GET", "/v1/models", Origin="https://evil.example")
    assert status == 403 and "does not answer web pages" in answer["error"]["message"]
    status, _, _ = api.http("GET", "/v1/models", Host=f"localhost:{api.server.port}")
    assert status == 200


def test_a_client_that_leaves_stops_its_reply_and_the_next_is_served(make_api: Any) -> None:
    gate = threading.Event()  # holds the reply after its first piece
    backend = ScriptedBackend(["one two three four", "next"], gate=gate)
    api = make_api(backend)
    client = api.client()
    stream = client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    wait_until(lambda: api.server.pending == 0, timeout_s=QUICK_S, what="the reply to stop")
    gate.set()
    reply = client.chat.completions.create(model=MODEL, messages=HI)
    assert reply.choices[0].message.content == "next"
    assert api.server.served == 1


def test_a_full_queue_answers_503_with_retry_after(make_api: Any) -> None:
    gate = threading.Event()
    api = make_api(ScriptedBackend(["held reply", "b"], gate=gate), max_pending=1)
    held = threading.Thread(
        target=lambda: api.client().chat.completions.create(model=MODEL, messages=HI)
    )
    held.start()
    wait_until(lambda: api.server.pending == 1, timeout_s=QUICK_S, what="the first request")
    body = json.dumps({"model": MODEL, "messages": HI}).encode()
    status, headers, answer = api.http("POST", "/v1/chat/completions", body)
    assert status == 503 and headers["Retry-After"] == "5"
    assert "Hearth is busy" in answer["error"]["message"]
    gate.set()
    held.join(QUICK_S)
    status, headers, answer = api.http("POST", "/v1/chat/completions", body)
    assert status == 200 and int(headers["X-Hearth-Queue-Wait-Ms"]) >= 0
    assert answer["choices"][0]["message"]["content"] == "b"


class _NoModel:
    """A runner whose engine has no model loaded (the window while one loads)."""

    def submit(self, job: Job, cancel: threading.Event) -> None:
        job(None)

    def model(self) -> ModelInfo | None:
        return None


def test_no_model_loaded_is_503_with_a_sentence() -> None:
    server = ApiServer(_NoModel(), port=0).start()
    try:
        with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client:
            assert list(client.models.list()) == []
            with pytest.raises(openai.InternalServerError) as busy:
                client.chat.completions.create(model=MODEL, messages=HI)
        assert busy.value.status_code == 503
        assert busy.value.response.headers["Retry-After"] == "5"
        assert "no model loaded" in str(busy.value)
    finally:
        server.close()
