"""``hearth serve`` on the real starter model, in a child process on 127.0.0.1, used by
the official ``openai`` client, by plain HTTP and by Hearth's own RemoteBackend.

The loopback guard is on for every test: nothing but 127.0.0.1 is touched.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from engine.inference.remote import RemoteBackend
from engine.types import FinishReason, Message, ReplyDone, SamplingParams, TextDelta, Turn
from tests.openai_servers import LoopbackGuard
from tests.waiting import MODEL_STEP_S, wait_until

MODEL = "SmolLM2-135M-Instruct.Q4_1"
STORY = [{"role": "user", "content": "Write a long story about a dragon."}]


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str, key: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.key = key
        self.log = log
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.clients: list[openai.OpenAI] = []

    def client(self, key: str | None = None) -> openai.OpenAI:
        """An openai client (closed with the server: its connections are not left to GC)."""
        client = openai.OpenAI(base_url=self.url, api_key=key or self.key, max_retries=0)
        self.clients.append(client)
        return client


@pytest.fixture(scope="module")
def served(starter_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("hearth-serve")
    (root / "models").mkdir()
    for item in starter_models_dir.iterdir():
        os.link(item, root / "models" / item.name)
    key_file = root / "key.txt"
    env = {**os.environ, "HEARTH_DATA_DIR": str(root)}
    env = {k: v for k, v in env.items() if not k.endswith("_PROXY")}
    args = [sys.executable, "-m", "app", "serve", "--port", "0", "--token-file", str(key_file)]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:  # until it says where it listens (or exits)
        lines.append(line)
        if line.startswith("Hearth serves"):
            break
    assert lines and lines[-1].startswith("Hearth serves"), "".join(lines)
    assert lines[0].startswith(f"A new API key is in {key_file}")
    url = lines[-1].split(" at ", 1)[1].split(" ", 1)[0]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    # The rest of its output is drained so it never blocks on a full pipe.
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    served = Served(process, url, key_file.read_text().strip(), root / "logs" / "hearth.log")
    try:
        yield served
    finally:
        for client in served.clients:
            client.close()
        process.terminate()
        process.wait(timeout=MODEL_STEP_S)
        drain.join(MODEL_STEP_S)
        process.stdout.close()


@pytest.fixture(autouse=True)
def guard() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as g:
        yield g
    assert g.seen == [], g.seen


def test_lists_the_loaded_model(served: Served) -> None:
    assert [m.id for m in served.client().models.list()] == [MODEL]


def test_a_whole_reply_with_usage(served: Served) -> None:
    reply = served.client().chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=16, temperature=0.0
    )
    assert reply.model == MODEL and reply.object == "chat.completion"
    (choice,) = reply.choices
    assert choice.finish_reason == "length" and choice.message.content
    assert reply.usage is not None and reply.usage.completion_tokens == 16
    assert reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 16


def test_a_streamed_reply_reads_like_the_whole_one(served: Served) -> None:
    """Greedy sampling: the streamed pieces add up to the reply that was not streamed."""
    client = served.client()
    whole = client.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=24, temperature=0.0
    )
    pieces: list[str] = []
    finish = None
    usage = None
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=STORY,
        max_tokens=24,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) > 5
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 24


def test_a_stop_string_ends_the_reply_before_it(served: Served) -> None:
    client = served.client()
    messages = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    whole = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=60, temperature=0.0
    )
    text = whole.choices[0].message.content or ""
    assert "5" in text, text
    stopped = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=60, temperature=0.0, stop=["5"]
    )
    assert stopped.choices[0].message.content == text[: text.index("5")]
    assert stopped.choices[0].finish_reason == "stop"


def test_a_client_that_closes_mid_stream_stops_the_reply(served: Served) -> None:
    stream = served.client().chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=2000, stream=True
    )
    got = 0
    for chunk in stream:
        got += bool(chunk.choices and chunk.choices[0].delta.content)
        if got == 3:
            break
    stream.close()
    # The engine stopped long before its 2000 tokens, and said so in the log.
    wait_until(
        lambda: "API reply stopped after" in served.log.read_text(),
        timeout_s=MODEL_STEP_S,
        what="the server to stop the reply",
    )
    line = next(ln for ln in served.log.read_text().splitlines() if "API reply stopped after" in ln)
    assert int(line.split("stopped after ")[1].split()[0]) < 2000
    # And it answers the next request.
    again = served.client().chat.completions.create(model=MODEL, messages=STORY, max_tokens=4)
    assert again.usage is not None and again.usage.completion_tokens == 4


def test_two_clients_take_turns(served: Served) -> None:
    """Two streams at once: the second starts only after the first has ended (their
    chunks never interleave), and both are whole."""
    order: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def ask(name: str) -> None:
        try:
            for chunk in served.client().chat.completions.create(
                model=MODEL, messages=STORY, max_tokens=20, stream=True
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    with lock:
                        order.append(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(MODEL_STEP_S)
    assert not errors, errors
    first = order[0]
    split = order.index("b" if first == "a" else "a")
    assert set(order[:split]) == {first} and first not in order[split:], order
    assert len(order) >= 30  # both replies came in full (about 20 pieces each)


def test_a_bad_request_gets_an_error_sentence(served: Served) -> None:
    client = served.client()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[])
    assert "'messages' must be a list with at least one message" in str(bad.value)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=STORY)
    assert f"it serves '{MODEL}'" in str(unknown.value)
    # Plain HTTP: the body is OpenAI's error JSON.
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=MODEL_STEP_S)
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=b'{"model": "x", "messages": [',
        headers={"Authorization": f"Bearer {served.key}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    error = json.loads(response.read())["error"]
    conn.close()
    assert response.status == 400 and error["type"] == "invalid_request_error"
    assert error["message"].startswith("The request body is not valid JSON")


def test_a_wrong_key_is_refused(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        served.client("not-the-key").models.list()
    assert refused.value.status_code == 401
    assert "The API key is missing or wrong" in str(refused.value)


def test_hearths_own_remote_backend_reads_it(served: Served) -> None:
    """The round trip: Hearth's remote backend (what a second Hearth would use) on
    Hearth's server, with the sampling fields only llama.cpp-like servers know."""
    backend = RemoteBackend.connect(served.url, api_key=served.key)
    assert backend.info.name == MODEL
    events = list(
        backend.stream(
            Turn(messages=(Message("user", "What is 2+2? Answer with one number."),)),
            SamplingParams(max_tokens=100, temperature=0.0, top_k=40, repeat_penalty=1.1),
            stop=threading.Event(),
        )
    )
    backend.close()
    done = events[-1]
    # The model ended its turn: the stream's last chunks (finish, usage) were read.
    assert isinstance(done, ReplyDone) and done.reason is FinishReason.STOP
    assert "4" in "".join(e.text for e in events if isinstance(e, TextDelta))
    # The server's usage figures, not the backend's estimate from the characters (about
    # 10 tokens here): SmolLM2's template adds its own system prompt of 20-odd tokens.
    assert done.stats.prompt_tokens > 20
    assert 0 < done.stats.completion_tokens < 100
