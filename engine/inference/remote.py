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
from collections.abc import Callable, Iterator
from typing import Any

import httpx2

from engine.errors import EndpointError, KnownError
from engine.inference.context import reply_budget
from engine.inference.endpoint import (
    DEFAULT_CONTEXT,
    Timeouts,
    capped_body,
    fetch_models,
    fetch_served_context,
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
from engine.inference.remote_reply import RemoteReply
from engine.inference.sse import SseTooLong, sse_events
from engine.inference.tool_messages import openai_messages
from engine.types import (
    ContextUsage,
    Event,
    FinishReason,
    ModelInfo,
    SamplingParams,
    Turn,
)

__all__ = ["RemoteBackend"]

# How often a reply waiting for the network looks at its stop event.
_STOP_POLL_S = 0.05
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


class _Exchange:
    """One ``POST /chat/completions``: sent, and its headers awaited, on a thread of its
    own, so that Stop never waits for a slow server to start answering; the body is
    then read by the caller itself (no hand-over between threads per token), while a
    watcher shuts the socket once ``stop`` is set, which wakes a read blocked on a
    silent server and tells the server to stop generating."""

    def __init__(self, client: httpx2.Client, request: httpx2.Request, stop: threading.Event):
        self._stop = stop
        self._result: queue.SimpleQueue[httpx2.Response | Exception] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._abandoned = False
        self._finished = False
        self._response: httpx2.Response | None = None
        threading.Thread(
            target=self._send, args=(client, request), name="remote-request", daemon=True
        ).start()

    def _send(self, client: httpx2.Client, request: httpx2.Request) -> None:
        try:
            response = client.send(request, stream=True)
        except Exception as exc:  # handed to the caller, who raises it
            self._result.put(exc)
            return
        with self._lock:
            abandoned = self._abandoned
            if not abandoned:
                self._result.put(response)
        if abandoned:  # Stop came first: nobody reads it
            response.close()

    def response(self) -> httpx2.Response | None:
        """The response once its headers are in; None once ``stop`` is set (the request
        is then dropped). Raises the HTTP client's error if it could not be sent."""
        while True:
            if self._stop.is_set():
                self.close()
                return None
            try:
                item = self._result.get(timeout=_STOP_POLL_S)
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                raise item
            self._response = item
            stream = item.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                threading.Thread(
                    target=self._watch, args=(sock,), name="remote-stop", daemon=True
                ).start()
            return item

    def _watch(self, sock: socket.socket) -> None:
        while not self._stop.wait(_STOP_POLL_S):
            if self._finished:
                return
        with self._lock:
            if self._finished:
                return
            # shutdown, not close: it wakes the caller blocked in recv() on this socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._finished = True
            self._abandoned = True
        if self._response is not None:
            self._response.close()


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
            # "device": where it runs, as the status bar shows it after the model's name;
            # "context": "assumed" when the server does not say how long its window is
            # (the meter then counts tokens and shows no share of a guess).
            extra={
                "endpoint": self._base,
                "where": self._where,
                "device": f"on {self._where}",
                "context": "reported" if n_ctx else "assumed",
            },
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
        if entry is not None and (n_ctx is None or entry.context_is_training):
            n_ctx = fetch_served_context(client, base, api_key) or n_ctx
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
            "messages": [d for m in turn.messages for d in openai_messages(m)],
            "stream": True,
            "stream_options": {"include_usage": True},
            # The server's cap is the whole reply; Hearth counts answer and thinking apart.
            "max_tokens": reply_budget(params, thinking=turn.thinking is not False),
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if turn.tools:
            body["tools"] = [t.for_template() for t in turn.tools]
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

    def _request(self, turn: Turn, params: SamplingParams) -> httpx2.Request:
        return self._client.build_request(
            "POST",
            f"{self._base}/chat/completions",
            json=self._body(turn, params),
            headers=request_headers(self._api_key, stream=True),
        )

    def _refuses_extensions(self, status: int, body: bytes) -> bool:
        if status not in (400, 422) or not self._extended:
            return False
        text = server_message(body)
        return any(f in text for f in _EXTENDED_FIELDS)

    def _transport_error(self, exc: httpx2.TransportError, *, started: bool) -> KnownError:
        timeouts = self._timeouts
        return transport_error(
            exc,
            where=self._where,
            connect_s=timeouts.connect_s,
            read_s=timeouts.read_s,
            started=started,
        )

    # -- the reply -----------------------------------------------------------------------

    def _stream(self, turn: Turn, params: SamplingParams, stop: threading.Event) -> Iterator[Event]:
        started = time.perf_counter()
        reply = RemoteReply(turn, params, where=self._where)
        while True:
            exchange = _Exchange(self._client, self._request(turn, params), stop)
            try:
                response = exchange.response()
            except httpx2.TransportError as exc:
                raise self._transport_error(exc, started=False) from exc
            if response is None:
                yield reply.done(FinishReason.CANCELLED, started, self._estimate_prompt(turn))
                return
            if response.status_code < 400:
                break
            try:
                status, body = response.status_code, capped_body(response)
            except httpx2.TransportError as exc:
                raise self._transport_error(exc, started=False) from exc
            finally:
                exchange.close()
            if not self._refuses_extensions(status, body):
                raise status_error(
                    status, response.headers, body, where=self._where, model=self._model
                )
            self._extended = False  # a strict server: OpenAI's fields only, and ask again
        try:
            yield from self._read(response, reply, stop)
        except httpx2.TransportError as exc:
            if not stop.is_set():
                raise self._transport_error(exc, started=reply.started) from exc
        except (SseTooLong, UnicodeDecodeError) as exc:
            raise malformed(self._where, str(exc)) from exc
        finally:
            exchange.close()
        prompt = self._estimate_prompt(turn)
        if stop.is_set():
            yield reply.done(FinishReason.CANCELLED, started, prompt)
        elif reply.over_budget:
            yield reply.done(FinishReason.LENGTH, started, prompt)
        else:
            yield from reply.flush()
            if reply.usage_prompt:
                self._chars_per_token = max(1.0, self._chars(turn) / reply.usage_prompt)
            yield reply.done(reply.finish or FinishReason.STOP, started, prompt)

    def _read(
        self, response: httpx2.Response, reply: RemoteReply, stop: threading.Event
    ) -> Iterator[Event]:
        """The events of the reply's body, until ``[DONE]``, Stop or the budget."""
        for event in sse_events(response.iter_bytes()):
            if stop.is_set():
                return
            if event.data == "[DONE]":
                return
            try:
                chunk = json.loads(event.data)
            except ValueError:
                raise malformed(self._where, f"not JSON: {event.data[:80]!r}") from None
            if not isinstance(chunk, dict):
                raise malformed(self._where, f"not a chunk: {event.data[:80]!r}")
            if event.event == "error" and "error" not in chunk:
                chunk = {"error": chunk}
            yield from reply.read(chunk)
            if reply.over_budget:
                return
        if not stop.is_set() and reply.finish is None:
            raise broke_off(self._where, detail="the stream ended without [DONE]")
