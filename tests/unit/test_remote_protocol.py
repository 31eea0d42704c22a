"""The remote backend against the protocol differences of servers that cannot run here.

These exchanges are literal SSE text served by a stdlib HTTP server on 127.0.0.1
(tests/openai_servers.py: ``ScriptedServer``). They are not captured from live servers
(vLLM needs a GPU, Ollama and hosted APIs are not reachable here); each is written in the
shape the server's documentation and source give, and says which server it stands for.
What a real server does is tested against llama-cpp-python's own server in
tests/integration/test_remote.py. A loopback guard is on for every test here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from engine.errors import ContextFullError, EndpointError, GenerationError, KnownError
from engine.inference.endpoint import (
    Timeouts,
    check_connection,
    normalize_base_url,
    plain_http_warning,
    where_of,
)
from engine.inference.remote import RemoteBackend
from engine.inference.remote_errors import retry_after_s
from engine.inference.sse import sse_events
from engine.types import (
    Event,
    FinishReason,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
    Turn,
)
from tests.openai_servers import Exchange, LoopbackGuard, ScriptedServer, sse

TURN = Turn(messages=(Message("user", "Hi"),))
PARAMS = SamplingParams(max_tokens=64, max_thinking_tokens=64, seed=1)
# Short waits: these servers answer at once or never, and the test should not wait long.
QUICK = Timeouts(connect_s=5.0, read_s=0.5)


@pytest.fixture(autouse=True)
def guard() -> Iterator[LoopbackGuard]:
    with LoopbackGuard.get().watching() as g:
        yield g
    assert g.seen == [] or g.seen[0].startswith("socket.getaddrinfo 'no-such-host"), g.seen


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1750000000,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def run(
    server: ScriptedServer,
    *,
    turn: Turn = TURN,
    params: SamplingParams = PARAMS,
    stop: threading.Event | None = None,
    timeouts: Timeouts = QUICK,
) -> tuple[list[Event], KnownError | None]:
    backend = RemoteBackend(server.base_url, "m", timeouts=timeouts)
    events: list[Event] = []
    try:
        for event in backend.stream(turn, params, stop=stop or threading.Event()):
            events.append(event)
    except KnownError as exc:
        return events, exc
    finally:
        backend.close()
    return events, None


def text(events: list[Event], kind: type[TextDelta] | type[ThinkingDelta] = TextDelta) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))


def done(events: list[Event]) -> ReplyDone:
    last = events[-1]
    assert isinstance(last, ReplyDone), events
    return last


# -- servers' dialects ------------------------------------------------------------------------


def test_vllm_reasoning_content_and_usage_in_the_last_chunk() -> None:
    # vLLM with --reasoning-parser (before 0.10): thinking as delta.reasoning_content, and
    # with stream_options.include_usage a last chunk with empty choices and the usage.
    body = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "The user"}),
        chunk({"reasoning_content": " greets me."}),
        chunk({"content": "Hello"}),
        chunk({"content": "!"}),
        chunk({"content": ""}, "stop"),
        {**chunk({}), "choices": [], "usage": {
            "prompt_tokens": 12, "total_tokens": 30, "completion_tokens": 18,
            "completion_tokens_details": {"reasoning_tokens": 14},
            "prompt_tokens_details": {"cached_tokens": 8},
        }},
        "[DONE]",
    )  # fmt: skip
    with ScriptedServer([Exchange(body=body)]) as server:
        events, error = run(server, turn=Turn(messages=TURN.messages, thinking=True))
        sent = server.seen[-1].body
    assert error is None
    assert text(events, ThinkingDelta) == "The user greets me."
    assert text(events) == "Hello!"
    end = done(events)
    assert end.reason is FinishReason.STOP
    stats = end.stats
    assert (stats.prompt_tokens, stats.completion_tokens, stats.thinking_tokens) == (12, 18, 14)
    assert (stats.reused_tokens, stats.evaluated_tokens, stats.context_tokens) == (8, 4, 30)
    assert sent is not None
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}
    assert sent["max_tokens"] == 128  # answer and thinking budgets: the server caps the sum


def test_ollama_reasoning_field() -> None:
    # Ollama's /v1/chat/completions with thinking on: delta.reasoning (vLLM 0.10+ and
    # OpenRouter use the same name), content "" alongside it.
    body = sse(
        chunk({"role": "assistant", "content": "", "reasoning": "Okay,"}),
        chunk({"role": "assistant", "content": "", "reasoning": " a greeting."}),
        chunk({"role": "assistant", "content": "Hi there"}),
        chunk({"role": "assistant", "content": ""}, "stop"),
        {**chunk({}), "choices": [], "usage": {
            "prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}},
        "[DONE]",
    )  # fmt: skip
    with ScriptedServer([Exchange(body=body)]) as server:
        events, error = run(server)
    assert error is None
    assert text(events, ThinkingDelta) == "Okay, a greeting."
    assert text(events) == "Hi there"
    assert done(events).stats.completion_tokens == 9
    assert done(events).stats.thinking_s >= 0


def test_think_tags_in_the_content_are_thinking() -> None:
    # A server without a reasoning parser: the model's <think> block arrives as content,
    # split across chunks as tokens are.
    body = sse(
        chunk({"content": "<th"}),
        chunk({"content": "ink>\nLet me"}),
        chunk({"content": " think.</thi"}),
        chunk({"content": "nk>\n\nDone."}),
        chunk({}, "stop"),
        "[DONE]",
    )
    with ScriptedServer([Exchange(body=body)]) as server:
        events, error = run(server)
    assert error is None
    assert text(events, ThinkingDelta) == "Let me think."
    assert text(events) == "Done."


def test_without_usage_the_pieces_are_counted() -> None:
    body = sse(chunk({"content": "a"}), chunk({"content": " b"}), chunk({}, "length"), "[DONE]")
    with ScriptedServer([Exchange(body=body)]) as server:
        events, _ = run(server)
    end = done(events)
    assert end.reason is FinishReason.LENGTH
    assert end.stats.completion_tokens == 2
    assert end.stats.prompt_tokens > 0  # estimated from the text


def test_a_strict_server_gets_the_openai_fields_only() -> None:
    # OpenAI's own API refuses fields it does not know with a 400 naming the field.
    refusal = Exchange(
        status=400,
        headers={"Content-Type": "application/json"},
        body=[b'{"error": {"message": "Unrecognized request argument supplied: top_k",'
              b' "type": "invalid_request_error", "param": null, "code": null}}'],
    )  # fmt: skip
    ok = Exchange(body=sse(chunk({"content": "Hi"}), chunk({}, "stop"), "[DONE]"))
    with ScriptedServer([refusal, ok]) as server:
        events, error = run(server, params=SamplingParams(top_k=20, min_p=0.05))
        first, second = (s.body for s in server.seen)
    assert error is None and text(events) == "Hi"
    assert first is not None and second is not None
    assert first["top_k"] == 20 and first["min_p"] == 0.05
    assert "top_k" not in second and "min_p" not in second
    assert second["temperature"] == first["temperature"]


# -- failures ---------------------------------------------------------------------------------


def test_429_with_retry_after() -> None:
    busy = Exchange(
        status=429,
        headers={"Content-Type": "application/json", "Retry-After": "20"},
        body=[b'{"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}'],
    )
    with ScriptedServer([busy]) as server:
        events, error = run(server)
    assert events == []
    assert isinstance(error, EndpointError)
    assert error.retry_after == 20
    assert "busy (429" in error.message and "Send again in 20 seconds" in error.message
    assert "Rate limit reached" in error.message


def test_retry_after_as_a_date() -> None:
    headers = {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}
    assert retry_after_s(headers, now=1792567650.0) == pytest.approx(30.0)
    assert retry_after_s({"retry-after": "soon"}) is None


def test_unknown_model_404_as_vllm_says_it() -> None:
    missing = Exchange(
        status=404,
        headers={"Content-Type": "application/json"},
        body=[b'{"object": "error", "message": "The model `big` does not exist.",'
              b' "type": "NotFoundError", "param": null, "code": 404}'],
    )  # fmt: skip
    with ScriptedServer([missing]) as server:
        _, error = run(server)
    assert isinstance(error, EndpointError)
    assert 'has no model named "m"' in error.message and "does not exist" in error.message


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "did not accept the API key"),
        (403, "does not let this API key use m"),
        (500, "failed to answer (500)"),
        (502, "failed to answer (502)"),
    ],
)
def test_error_statuses(status: int, words: str) -> None:
    refusal = Exchange(status=status, headers={"Content-Type": "text/plain"}, body=[b"nope"])
    with ScriptedServer([refusal]) as server:
        _, error = run(server)
    assert isinstance(error, EndpointError)
    assert words in error.message and 'It said: "nope"' in error.message


def test_context_too_long_is_a_context_error() -> None:
    # llama-server's words when the prompt does not fit its n_ctx.
    refusal = Exchange(
        status=400,
        headers={"Content-Type": "application/json"},
        body=[b'{"error": {"code": 400, "message": "the request exceeds the available context'
              b' size, try increasing it", "type": "exceed_context_size_error"}}'],
    )  # fmt: skip
    with ScriptedServer([refusal]) as server:
        _, error = run(server)
    assert isinstance(error, ContextFullError)


def test_malformed_sse_keeps_the_partial_reply() -> None:
    body = [*sse(chunk({"content": "Half"})), b"data: {not json\n\n"]
    with ScriptedServer([Exchange(body=body)]) as server:
        events, error = run(server)
    assert text(events) == "Half"
    assert isinstance(error, GenerationError)
    assert "cannot read" in error.message and "What was written so far is kept" in error.message


def test_an_error_chunk_mid_stream() -> None:
    # vLLM and llama-server report a failure after the headers as a data chunk.
    body = sse(chunk({"content": "Par"}), {"error": {"message": "CUDA out of memory"}})
    with ScriptedServer([Exchange(body=body)]) as server:
        events, error = run(server)
    assert text(events) == "Par"
    assert isinstance(error, GenerationError) and "CUDA out of memory" in error.message


def test_a_stream_cut_half_way() -> None:
    body = sse(chunk({"content": "One"}), chunk({"content": " two"}))
    with ScriptedServer([Exchange(body=body, drop=True)]) as server:
        events, error = run(server)
    assert text(events) == "One two"
    assert isinstance(error, GenerationError) and "broke off" in error.message


def test_a_stream_that_ends_without_done_or_finish() -> None:
    body = sse(chunk({"content": "One"}))
    with ScriptedServer([Exchange(body=body)]) as server:
        events, error = run(server)
    assert text(events) == "One"
    assert isinstance(error, GenerationError) and "broke off" in error.message


def test_a_server_that_never_answers() -> None:
    with ScriptedServer([Exchange(hang=True)]) as server:
        events, error = run(server)
    assert events == []
    assert isinstance(error, EndpointError)
    assert "sent nothing for 0.5 seconds" in error.message


def test_a_server_that_stalls_mid_reply() -> None:
    body = sse(chunk({"content": "Slow"}))
    with ScriptedServer([Exchange(body=body, stall=True)]) as server:
        events, error = run(server)
    assert text(events) == "Slow"
    assert isinstance(error, GenerationError) and "nothing came for 0.5 seconds" in error.message


def test_an_endless_reply_is_cut_at_the_budget() -> None:
    # A server that ignores max_tokens: the budget is applied here too.
    with ScriptedServer([Exchange(body=sse(chunk({"content": " word"})), endless=True)]) as server:
        events, error = run(server, params=SamplingParams(max_tokens=5))
        assert server.client_gone.wait(10)  # the connection was dropped: the server stops
    assert error is None
    assert text(events) == " word" * 5
    assert done(events).reason is FinishReason.LENGTH


def test_stop_while_the_server_is_silent() -> None:
    stop = threading.Event()
    with ScriptedServer([Exchange(hang=True)]) as server:
        backend = RemoteBackend(server.base_url, "m", timeouts=Timeouts(read_s=600))
        stream = backend.stream(TURN, PARAMS, stop=stop)
        stop.set()  # before the first piece: the reply ends at once, with nothing
        events = list(stream)
        backend.close()
    assert [type(e) for e in events] == [ReplyDone]
    assert done(events).reason is FinishReason.CANCELLED


def test_stop_while_the_server_stalls_mid_reply() -> None:
    # The read is blocked on a silent socket (for up to read_s = 10 minutes): Stop wakes it.
    stop = threading.Event()
    events: list[Event] = []
    body = sse(chunk({"content": "Slow"}))
    with ScriptedServer([Exchange(body=body, stall=True)]) as server:
        backend = RemoteBackend(server.base_url, "m", timeouts=Timeouts(read_s=600))
        for event in backend.stream(TURN, PARAMS, stop=stop):
            events.append(event)
            stop.set()
        backend.close()
    assert text(events) == "Slow"
    assert done(events).reason is FinishReason.CANCELLED


def test_plain_http_to_a_closed_port_and_tls_to_a_plain_server() -> None:
    with ScriptedServer() as server:
        port = server.port
        tls = RemoteBackend(f"https://127.0.0.1:{port}/v1", "m", timeouts=QUICK)
        _, error = _collect(tls)
    assert isinstance(error, EndpointError) and "secure (TLS) connection" in error.message
    closed = RemoteBackend(f"http://127.0.0.1:{port}/v1", "m", timeouts=QUICK)
    _, error = _collect(closed)
    assert isinstance(error, EndpointError) and "Nothing answers at 127.0.0.1" in error.message


def test_a_name_that_does_not_resolve(guard: LoopbackGuard) -> None:
    # The guard answers the lookup as a failed DNS query would: no resolver is asked.
    backend = RemoteBackend("http://no-such-host.invalid:8000", "m", timeouts=QUICK)
    _, error = _collect(backend)
    assert isinstance(error, EndpointError) and "could not be found (DNS)" in error.message
    assert guard.seen == ["socket.getaddrinfo 'no-such-host.invalid'"]
    assert "no-such-host" in check_connection("http://no-such-host.invalid:8000")
    guard.seen.clear()


def _collect(backend: RemoteBackend) -> tuple[list[Event], KnownError | None]:
    events: list[Event] = []
    try:
        events.extend(backend.stream(TURN, PARAMS, stop=threading.Event()))
    except KnownError as exc:
        return events, exc
    finally:
        backend.close()
    return events, None


# -- addresses and framing --------------------------------------------------------------------


def test_addresses() -> None:
    assert normalize_base_url("http://gpu-box:8000") == "http://gpu-box:8000/v1"
    assert normalize_base_url(" https://api.x.ai/v1/ ") == "https://api.x.ai/v1"
    assert normalize_base_url("http://h:1/v1/chat/completions") == "http://h:1/v1"
    with pytest.raises(ValueError, match="not a server address"):
        normalize_base_url("gpu-box:8000")
    assert where_of("http://user:secret@gpu-box:8000/v1") == "gpu-box:8000"
    assert where_of("http://[::1]:8000/v1") == "[::1]:8000"
    assert plain_http_warning("http://127.0.0.1:8000/v1") is None
    assert plain_http_warning("http://localhost:8000/v1") is None
    assert plain_http_warning("https://gpu-box/v1") is None
    warning = plain_http_warning("http://gpu-box:8000/v1")
    assert warning is not None and "not encrypted" in warning


def test_sse_framing() -> None:
    raw = [b"data: a\r\n", b"da", b"ta: b\r\n\r\n: ping\n\nevent: error\ndata: {}\n\ndata: tail"]
    events = list(sse_events(raw))
    assert [(e.event, e.data) for e in events] == [
        ("message", "a\nb"),
        ("error", "{}"),
        ("message", "tail"),
    ]


def test_the_api_key_is_sent_and_never_shown() -> None:
    with ScriptedServer([Exchange(body=sse(chunk({}, "stop"), "[DONE]"))]) as server:
        backend = RemoteBackend(server.base_url, "m", api_key="sk-secret", timeouts=QUICK)
        list(backend.stream(TURN, PARAMS, stop=threading.Event()))
        backend.close()
        assert server.seen[-1].headers["Authorization"] == "Bearer sk-secret"
    assert "sk-secret" not in repr(backend)


@pytest.mark.parametrize(
    ("models", "props", "n_ctx", "asked_props"),
    [
        # vLLM: the window it serves, in the list of models.
        ([{"id": "m", "object": "model", "max_model_len": 32768}], None, 32768, False),
        # llama-server: the list has the training length; /props has its own window.
        ([{"id": "m", "meta": {"n_ctx_train": 262144}}],
         {"default_generation_settings": {"n_ctx": 8192}, "total_slots": 1}, 8192, True),
        # An older llama-server without /props: the training length is the best known.
        ([{"id": "m", "meta": {"n_ctx_train": 262144}}], None, 262144, True),
        # llama-cpp-python's server, Ollama: nothing said anywhere.
        (["m"], None, None, True),
    ],
    ids=["vllm", "llama-server", "llama-server-no-props", "silent"],
)  # fmt: skip
def test_the_context_window_as_the_server_states_it(
    models: list[Any], props: dict[str, Any] | None, n_ctx: int | None, asked_props: bool
) -> None:
    with ScriptedServer(models=models, props=props) as server:
        backend = RemoteBackend.connect(server.base_url, "m", timeouts=QUICK)
        backend.close()
    info = backend.info
    assert info.extra["context"] == ("reported" if n_ctx else "assumed")
    assert info.n_ctx == (n_ctx or 131_072)  # unknown: large, never dropping turns early
    assert any(s.path == "/props" for s in server.seen) == asked_props
