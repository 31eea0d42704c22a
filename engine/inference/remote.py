"""The remote backend: a model on an OpenAI-compatible server (vLLM, llama.cpp's
``llama-server`` or llama-cpp-python's server, Ollama, LM Studio, hosted services).

``RemoteBackend`` is a ``ChatBackend`` (engine.inference.backend) that sends a
turn to ``POST {base}/chat/completions`` with ``stream: true`` and reads the
reply as server-sent events (engine.inference.sse). What servers differ in, and
what is read from each:

- thinking: a ``reasoning_content`` delta (llama-server, vLLM before 0.10,
  DeepSeek), a ``reasoning`` delta (Ollama, vLLM 0.10+, OpenRouter), or ``<think>``
  tags the model writes into the content (a server without a reasoning parser),
  split by the same ``ThinkingSplitter`` as a local model's;
- usage: the server's own token counts, from the chunk that carries ``usage``
  (the last one, with ``stream_options.include_usage``); a server that reports
  none (llama-cpp-python's) gets Hearth's count of the pieces it sent;
- sampling: the OpenAI fields, plus llama.cpp's and vLLM's (``top_k``, ``min_p``,
  the repeat penalty, ``chat_template_kwargs.enable_thinking``) until a strict
  server (OpenAI's own) refuses them with a 400; then it gets the OpenAI fields only.

The HTTP exchange runs on a reader thread of its own, so that Stop ends the reply
at once whatever the network does; the reader then shuts the socket, which
tells the server to stop generating. The reply budget is applied here too (a
server that ignores ``max_tokens`` cannot send an endless reply), and every
failure is a ``KnownError`` sentence (engine.inference.remote_errors) raised
after the events already yielded, which stand.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from engine.errors import EndpointError, GenerationError, KnownError
from engine.inference.context import reply_budget
from engine.inference.endpoint import (
    DEFAULT_CONTEXT,
    Timeouts,
    capped_body,
    fetch_models,
    new_client,
    normalize_base_url,
    request_headers,
    where_of,
)
from engine.inference.remote_errors import (
    broke_off,
    malformed,
    server_message,
    status_error,
    transport_error,
)
from engine.inference.sse import SseTooLong, sse_events
from engine.inference.thinking import ThinkingSplitter
from engine.types import (
    ContextUsage,
    Event,
    FinishReason,
    GenerationStats,
    ModelInfo,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
    Turn,
)

__all__ = ["RemoteBackend"]

# How often a reply waiting for the network looks at its stop event.
_STOP_POLL_S = 0.05
# Past this many characters per token of budget a reply is not text but a flood.
_MAX_CHARS_PER_TOKEN = 64
# The sampling fields only llama.cpp, vLLM and their kin know; a strict server's 400
# naming one of them makes this backend send the OpenAI fields only.
_EXTENDED_FIELDS = (
    "top_k",
    "min_p",
    "repeat_penalty",
    "repetition_penalty",
    "chat_template_kwargs",
    "continue_final_message",
    "add_generation_prompt",
)


# -- one streamed exchange ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Failed:
    """The server answered with an error status."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _End:
    """The stream ended: with ``[DONE]`` (done=True) or by the server closing it."""

    def __init__(self, *, done: bool) -> None:
        self.done = done


_Item = dict[str, Any] | _Failed | _End | KnownError | httpx2.TransportError


class _Exchange:
    """One ``POST /chat/completions``, read on a thread of its own into a queue of
    parsed chunks, so that the reading side can give up at once (``abort``)."""

    def __init__(
        self, client: httpx2.Client, url: str, headers: dict[str, str], body: dict[str, Any],
        where: str,
    ) -> None:  # fmt: skip
        self.items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._aborted = threading.Event()
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._where = where
        self._thread = threading.Thread(
            target=self._read, args=(client, url, headers, body), name="remote-reply", daemon=True
        )
        self._thread.start()

    def _read(
        self, client: httpx2.Client, url: str, headers: dict[str, str], body: dict[str, Any]
    ) -> None:
        put = self.items.put
        try:
            with client.stream("POST", url, json=body, headers=headers) as response:
                self._keep_socket(response)
                if response.status_code >= 400:
                    put(_Failed(response.status_code, response.headers, capped_body(response)))
                    return
                for event in sse_events(response.iter_bytes()):
                    if self._aborted.is_set():
                        return
                    if event.data == "[DONE]":
                        put(_End(done=True))
                        return
                    try:
                        chunk = json.loads(event.data)
                    except ValueError:
                        put(malformed(self._where, f"not JSON: {event.data[:80]!r}"))
                        return
                    if not isinstance(chunk, dict):
                        put(malformed(self._where, f"not a chunk: {event.data[:80]!r}"))
                        return
                    if event.event == "error" and "error" not in chunk:
                        chunk = {"error": chunk}
                    put(chunk)
            put(_End(done=False))
        except (SseTooLong, UnicodeDecodeError) as exc:
            put(malformed(self._where, str(exc)))
        except httpx2.TransportError as exc:
            if not self._aborted.is_set():
                put(exc)
        except Exception as exc:  # a bug here must still end the reply, with its traceback
            if not self._aborted.is_set():
                put(GenerationError(
                    "The reply stopped because of an internal error. What was written so far "
                    "is kept; send again to retry. The details are in the log file.",
                    detail=repr(exc),
                ))  # fmt: skip

    def _keep_socket(self, response: httpx2.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
            aborted = self._aborted.is_set()
        if aborted:
            self._shut()

    def next(self, stop: threading.Event) -> _Item | None:
        """The next item; None once ``stop`` is set."""
        while True:
            if stop.is_set():
                return None
            try:
                return self.items.get(timeout=_STOP_POLL_S)
            except queue.Empty:
                continue

    def abort(self) -> None:
        """Stop reading and drop the connection: the server sees it closed and stops."""
        with self._lock:
            if self._aborted.is_set():
                return
            self._aborted.set()
        self._shut()

    def _shut(self) -> None:
        with self._lock:
            sock = self._socket
        if sock is not None:
            # shutdown, not close: it wakes the reader blocked in recv() on this socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# -- the backend -------------------------------------------------------------------------------


class RemoteBackend:
    """A ``ChatBackend`` on one model of one OpenAI-compatible server. Used from one
    thread; other threads only set a reply's ``stop``. ``RemoteBackend.connect``
    asks the server first; the constructor does not touch the network."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        n_ctx: int | None = None,
        timeouts: Timeouts | None = None,
        client: httpx2.Client | None = None,
    ) -> None:
        self._base = normalize_base_url(base_url)
        self._where = where_of(self._base)
        self._model = model
        self._api_key = api_key
        self._timeouts = timeouts or Timeouts()
        self._client = client or new_client(self._timeouts)
        self._extended = True
        # Characters per prompt token: refined from the server's usage figures, for a
        # context meter that needs no request of its own.
        self._chars_per_token = 4.0
        self._closed = False
        context = n_ctx or DEFAULT_CONTEXT
        self._info = ModelInfo(
            path=f"{self._base}/models/{model}",
            name=model,
            architecture="remote",
            quantization="",
            file_size=0,
            n_ctx=context,
            n_ctx_train=n_ctx or 0,
            has_chat_template=True,
            template_source="server",
            extra={"endpoint": self._base, "where": self._where},
        )

    def __repr__(self) -> str:  # never the key
        return f"RemoteBackend({self._base!r}, {self._model!r})"

    @classmethod
    def connect(
        cls,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
    ) -> RemoteBackend:
        """Ask the server at ``base_url`` for its models, then a backend on ``model``
        (None: the server's only one). ``KnownError`` with a sentence when the server
        cannot be reached, refuses the key, or has no such model; ``ValueError`` for
        an address that is not one."""
        base = normalize_base_url(base_url)
        where = where_of(base)
        timeouts = timeouts or Timeouts()
        client = new_client(timeouts)
        try:
            found = fetch_models(client, base, api_key, timeouts)
        except BaseException:
            client.close()
            raise
        models = [] if isinstance(found, int) else found
        names = [m.id for m in models]
        listed = ", ".join(names[:8])
        if model is None:
            if len(names) != 1:
                client.close()
                if not names:
                    raise EndpointError(
                        f"The server at {where} lists no models. Name the model to use."
                    )
                raise EndpointError(
                    f"The server at {where} has {len(names)} models. Name the one to use: {listed}."
                )
            model = names[0]
        elif names and model not in names:
            client.close()
            raise EndpointError(
                f'The server at {where} has no model named "{model}". It has: {listed}.'
            )
        entry = next((m for m in models if m.id == model), None)
        n_ctx = entry.context_length if entry else None
        return cls(base, model, api_key=api_key, n_ctx=n_ctx, timeouts=timeouts, client=client)

    # -- ChatBackend ---------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo:
        return self._info

    def default_sampling(self, thinking: bool | None) -> SamplingParams:
        # The server knows the model's recommended sampling; Hearth does not. These are
        # Hearth's defaults, and the person's overrides go on top as for a local model.
        return SamplingParams()

    def context_usage(self, turn: Turn, params: SamplingParams) -> ContextUsage:
        budget = reply_budget(params, thinking=bool(turn.thinking))
        return ContextUsage(self._estimate_prompt(turn), budget, self._info.n_ctx)

    def stream(
        self, turn: Turn, params: SamplingParams, *, stop: threading.Event
    ) -> Iterator[Event]:
        if self._closed:
            raise RuntimeError("RemoteBackend used after close()")
        return self._stream(turn, params, stop)

    def warm(
        self,
        turn: Turn,
        *,
        stop: threading.Event,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> tuple[int, int]:
        # The server keeps its own cache (vLLM's prefix cache, llama-server's slots).
        return 0, 0

    def close(self) -> None:
        self._closed = True
        self._client.close()

    # -- the request ---------------------------------------------------------------------

    def _chars(self, turn: Turn) -> int:
        return sum(len(m.content) + 8 for m in turn.messages)  # 8: role and markers

    def _estimate_prompt(self, turn: Turn) -> int:
        return math.ceil(self._chars(turn) / self._chars_per_token)

    def _body(self, turn: Turn, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in turn.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            # The server's cap is the whole reply; Hearth counts answer and thinking apart.
            "max_tokens": reply_budget(params, thinking=turn.thinking is not False),
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if params.seed is not None:
            body["seed"] = params.seed
        if not self._extended:
            return body
        if params.top_k > 0:
            body["top_k"] = params.top_k
        if params.min_p > 0:
            body["min_p"] = params.min_p
        if params.repeat_penalty != 1.0:
            body["repeat_penalty"] = params.repeat_penalty  # llama.cpp
            body["repetition_penalty"] = params.repeat_penalty  # vLLM
        if turn.thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": turn.thinking}
        if turn.continue_reply and turn.messages and turn.messages[-1].role == "assistant":
            body["continue_final_message"] = True  # vLLM; llama-server continues by itself
            body["add_generation_prompt"] = False
        return body

    def _open(self, turn: Turn, params: SamplingParams) -> _Exchange:
        return _Exchange(
            self._client,
            f"{self._base}/chat/completions",
            request_headers(self._api_key, stream=True),
            self._body(turn, params),
            self._where,
        )

    def _refuses_extensions(self, failed: _Failed) -> bool:
        if failed.status not in (400, 422) or not self._extended:
            return False
        text = server_message(failed.body)
        return any(f in text for f in _EXTENDED_FIELDS)

    # -- the reply -----------------------------------------------------------------------

    def _stream(self, turn: Turn, params: SamplingParams, stop: threading.Event) -> Iterator[Event]:
        started = time.perf_counter()
        exchange = self._open(turn, params)
        reply = _Reply(turn, params, where=self._where)
        try:
            while True:
                item = exchange.next(stop)
                if item is None:
                    yield reply.done(FinishReason.CANCELLED, started, self._estimate_prompt(turn))
                    return
                if isinstance(item, _Failed):
                    if not reply.started and self._refuses_extensions(item):
                        self._extended = False  # a strict server: OpenAI's fields only
                        exchange = self._open(turn, params)
                        continue
                    raise status_error(
                        item.status, item.headers, item.body, where=self._where, model=self._model
                    )
                if isinstance(item, _End):
                    if not (item.done or reply.finish is not None):
                        raise broke_off(self._where, detail="the stream ended without [DONE]")
                    break
                if isinstance(item, KnownError):
                    raise item
                if isinstance(item, httpx2.TransportError):
                    raise transport_error(
                        item,
                        where=self._where,
                        connect_s=self._timeouts.connect_s,
                        read_s=self._timeouts.read_s,
                        started=reply.started,
                    ) from item
                yield from reply.read(item, started)
                if reply.over_budget:
                    yield reply.done(FinishReason.LENGTH, started, self._estimate_prompt(turn))
                    return
            yield from reply.flush()
            done = reply.done(
                reply.finish or FinishReason.STOP, started, self._estimate_prompt(turn)
            )
            if reply.usage_prompt:
                self._chars_per_token = max(1.0, self._chars(turn) / reply.usage_prompt)
            yield done
        finally:
            exchange.abort()


class _Reply:
    """What one reply has streamed so far: thinking and answer split, budget counted."""

    def __init__(self, turn: Turn, params: SamplingParams, *, where: str) -> None:
        self._where = where
        self._params = params
        self._resumed = turn.continue_reply
        self._splitter: ThinkingSplitter | None = None
        self._reasoning_seen = False
        self.answer_pieces = 0
        self.thinking_pieces = 0
        self._chars = 0
        self._max_chars = _MAX_CHARS_PER_TOKEN * (params.max_tokens + params.max_thinking_tokens)
        self.first_at: float | None = None
        self.thinking_ended_at: float | None = None
        self.finish: FinishReason | None = None
        self.usage_prompt = 0
        self.usage_completion = 0
        self.usage_thinking = 0
        self.usage_cached = 0

    @property
    def started(self) -> bool:
        return self.first_at is not None

    @property
    def over_budget(self) -> bool:
        """The reply used its budget (answer, or answer and thinking together) and the
        server has not ended it: it is cut here, as a local model's would be."""
        params = self._params
        return self.finish is None and (
            self.answer_pieces >= params.max_tokens
            or self.answer_pieces + self.thinking_pieces
            >= params.max_tokens + params.max_thinking_tokens
            or self._chars > self._max_chars
        )

    def read(self, chunk: dict[str, Any], started: float) -> Iterator[Event]:
        if "error" in chunk and not chunk.get("choices"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise GenerationError(
                f'The server at {self._where} stopped the reply with an error: "{message}". '
                "What was written so far is kept; send again to retry.",
                detail=json.dumps(chunk)[:2000],
            )
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._read_usage(usage)
        choices = chunk.get("choices")
        if not choices:
            return
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise malformed(self._where, "choices is not a list of objects")
        choice = choices[0]
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise malformed(self._where, "delta is not an object")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        content = delta.get("content")
        if reasoning is not None and not isinstance(reasoning, str):
            raise malformed(self._where, "reasoning is not text")
        if content is not None and not isinstance(content, str):
            raise malformed(self._where, "content is not text")
        if reasoning:
            self._reasoning_seen = True
            self._mark(started, len(reasoning))
            self.thinking_pieces += 1
            yield ThinkingDelta(reasoning)
        if content:
            self._mark(started, len(content))
            yield from self._content(content, started)
        reason = choice.get("finish_reason")
        if reason:
            self.finish = FinishReason.LENGTH if reason == "length" else FinishReason.STOP

    def _mark(self, started: float, chars: int) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter() - started
        self._chars += chars

    def _content(self, text: str, started: float) -> Iterator[Event]:
        if self._reasoning_seen or self._resumed:
            # The server splits thinking from the answer: the content is all answer.
            if self.thinking_ended_at is None and self.thinking_pieces:
                self.thinking_ended_at = time.perf_counter() - started
            self.answer_pieces += 1
            yield TextDelta(text)
            return
        if self._splitter is None:
            self._splitter = ThinkingSplitter(start_in_thinking=False)
        thought, answer = self._splitter.feed(-1, text)
        # One chunk is one token on the servers that matter (llama.cpp, vLLM, Ollama).
        if answer or not (thought or self._splitter.thinking):
            self.answer_pieces += 1
        else:
            self.thinking_pieces += 1
        if thought:
            yield ThinkingDelta(thought)
        if answer:
            if self.thinking_pieces and self.thinking_ended_at is None:
                self.thinking_ended_at = time.perf_counter() - started
            yield TextDelta(answer)

    def flush(self) -> Iterator[Event]:
        if self._splitter is None:
            return
        thought, answer = self._splitter.flush()
        if thought:
            yield ThinkingDelta(thought)
        if answer:
            yield TextDelta(answer)

    def _read_usage(self, usage: Mapping[str, Any]) -> None:
        def number(value: object) -> int:
            return value if isinstance(value, int) and value >= 0 else 0

        self.usage_prompt = number(usage.get("prompt_tokens"))
        self.usage_completion = number(usage.get("completion_tokens"))
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict):
            self.usage_thinking = number(details.get("reasoning_tokens"))
        cached = usage.get("prompt_tokens_details")
        if isinstance(cached, dict):
            self.usage_cached = number(cached.get("cached_tokens"))

    def done(self, reason: FinishReason, started: float, estimated_prompt: int) -> ReplyDone:
        elapsed = time.perf_counter() - started
        ttft = self.first_at if self.first_at is not None else elapsed
        completion = self.usage_completion or self.answer_pieces + self.thinking_pieces
        thinking = self.usage_thinking or self.thinking_pieces
        prompt = self.usage_prompt or estimated_prompt
        generating = elapsed - ttft
        thought_s = 0.0
        if self.thinking_pieces:
            thought_s = (self.thinking_ended_at or elapsed) - ttft
        stats = GenerationStats(
            prompt_tokens=prompt,
            completion_tokens=completion,
            ttft_s=ttft,
            tokens_per_s=(completion - 1) / generating
            if completion > 1 and generating > 0
            else 0.0,
            elapsed_s=elapsed,
            reused_tokens=self.usage_cached,
            evaluated_tokens=max(prompt - self.usage_cached, 0),
            thinking_tokens=thinking,
            thinking_s=max(thought_s, 0.0),
            context_tokens=prompt + completion,
        )
        return ReplyDone(reason, stats)
