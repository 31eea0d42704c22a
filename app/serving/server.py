"""Hearth's local OpenAI-compatible API: ``GET /v1/models``, ``POST /v1/chat/completions``
(streamed as server-sent events or whole), served from the model Hearth has loaded.

The server is the standard library's ``ThreadingHTTPServer``: maintained with Python
itself, no new dependency to freeze into the app, no second event loop beside Qt's, and
one thread per connection is what this server needs anyway, since every request waits
for the one engine thread (``engine_queue``). A request's thread blocks on its queue,
writes SSE chunks as they come (all that arrived since the last write, in one write),
and notices a client that hung up (its socket reads as closed, or a write fails), which
cancels the reply.

Safety on one computer: it listens on 127.0.0.1 unless asked otherwise; on loopback it
answers only requests addressed to a loopback name (a web page that rebinds its DNS name
to 127.0.0.1 is refused) and never a web page's cross-origin request (``Origin``); with a
key, every request must carry it (``Authorization: Bearer``).

Waiting: requests run one at a time, in the order they came, between the window's own
replies. A response says how long it waited (``X-Hearth-Queue-Wait-Ms``); past
``max_pending`` requests waiting or running, a new one gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from app.serving.engine_queue import Generation, Runner, no_model
from app.serving.protocol import (
    ApiError,
    ChatRequest,
    Reply,
    StopScanner,
    chunk,
    completion,
    finish_reason,
    models_body,
    parse_chat_request,
    usage_chunk,
)
from engine.types import GenerationStats, ModelInfo, ReplyDone, TextDelta, ThinkingDelta

__all__ = ["ApiServer", "is_loopback", "model_id"]

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
DEFAULT_PORT = 8765
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """True for an address only this computer can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def model_id(info: ModelInfo) -> str:
    """The name clients use for the loaded model: its file's name without ``.gguf``."""
    return Path(info.path).stem or info.name


def _names_of(info: ModelInfo) -> set[str]:
    return {model_id(info), Path(info.path).name, info.name}


class ApiServer:
    """The API on ``host:port`` (port 0: any free one), answering from ``runner``."""

    def __init__(
        self,
        runner: Runner,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        max_pending: int = 8,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.runner = runner
        self.api_key = api_key or None
        self.max_pending = max_pending
        self._on_change = on_change
        self._lock = threading.Lock()
        self.served = 0  # chat completions answered in full
        self.pending = 0  # waiting or running now
        self._live: set[threading.Event] = set()
        self.started = int(time.time())
        self.loopback = is_loopback(host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_Server", (_HttpServer,), {"address_family": family})
        # Binding raises OSError (port in use, no such address): the caller says so.
        self._http = server_class((host, port), _Handler)
        self._http.api = self
        self.host = host
        self.port = int(self._http.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL a client is given (``…/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> ApiServer:
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="hearth-api", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening and cancel every request (each ends at once)."""
        with self._lock:
            for cancel in self._live:
                cancel.set()
        if self._thread is not None:
            stopping = threading.Thread(target=self._http.shutdown, name="hearth-api-stop")
            stopping.start()
            self._wake()
            stopping.join()
            self._thread.join()
            self._thread = None
        self._http.server_close()

    def _wake(self) -> None:
        """Connect once, so the serving loop notices the shutdown now rather than at
        its next poll (half a second: closing Settings or quitting would wait for it)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        # If it fails, the loop still notices at its next poll.
        with contextlib.suppress(OSError):
            socket.create_connection((host, self.port), timeout=1.0).close()

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (``hearth serve``: Ctrl+C)."""
        self._http.serve_forever()

    # -- bookkeeping, from the request threads --
    def _admit(self, cancel: threading.Event) -> None:
        with self._lock:
            if self.pending >= self.max_pending:
                raise ApiError(
                    503,
                    f"Hearth is busy: {self.pending} requests are waiting for the model. "
                    "Try again in a few seconds.",
                    kind="server_error",
                    code="queue_full",
                    retry_after=5,
                )
            self.pending += 1
            self._live.add(cancel)
        self._changed()

    def _release(self, cancel: threading.Event, *, served: bool) -> None:
        with self._lock:
            self.pending -= 1
            self._live.discard(cancel)
            self.served += served
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: ApiServer

    def handle_error(self, request: object, client_address: object) -> None:
        # socketserver prints tracebacks to stderr; a client that hangs up is routine.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("client %s left: %s", client_address, exc)
        else:
            log.exception("API request from %s crashed", client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "Hearth"
    # Each SSE chunk leaves at once: Nagle's algorithm would hold a small write back
    # until the last one is acknowledged (tens of ms with delayed ACKs).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    @property
    def api(self) -> ApiServer:
        return self.server.api

    # -- routes --
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            self._check_caller()
            if path in ("/v1/models", "/models"):
                info = self.api.runner.model()
                self._json(200, models_body(model_id(info) if info else None, self.api.started))
            elif path in ("/health", "/v1/health"):
                self._json(200, {"status": "ok" if self.api.runner.model() else "loading"})
            else:
                raise _not_found(path)
        except ApiError as exc:
            self._error(exc)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            self._check_caller()
            raw = self._body()
            if path not in ("/v1/chat/completions", "/chat/completions"):
                raise _not_found(path)
            request = parse_chat_request(raw)
            self._chat(request)
        except ApiError as exc:
            self._error(exc)
        except ConnectionError:
            log.debug("client left")
            self.close_connection = True

    def do_OPTIONS(self) -> None:
        # A web page's preflight: no CORS headers, so the browser sends nothing more.
        self._error(
            ApiError(403, "Hearth's local API does not answer web pages.", code="forbidden")
        )

    # -- checks --
    def _check_caller(self) -> None:
        if self.api.loopback:
            host = (self.headers.get("Host") or "").strip().lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if host and name not in _LOOPBACK_NAMES:
                raise ApiError(
                    403,
                    f"Hearth's local API answers requests to 127.0.0.1 or localhost, not "
                    f"{host!r}. Use {self.api.url}.",
                    code="forbidden",
                )
        origin = self.headers.get("Origin")
        if origin is not None and not any(
            origin.lower().startswith(f"http://{n}:{self.api.port}") for n in _LOOPBACK_NAMES
        ):
            raise ApiError(
                403,
                f"Hearth's local API does not answer web pages (this request came from {origin}).",
                code="forbidden",
            )
        key = self.api.api_key
        if key is not None:
            given = self.headers.get("Authorization") or ""
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), key.encode()
            ):
                raise ApiError(
                    401,
                    "The API key is missing or wrong. Send the key Hearth made (shown once in "
                    "Settings → Other programs, where New key makes another; or the key file "
                    "of hearth serve) as 'Authorization: Bearer KEY'.",
                    code="invalid_api_key",
                )

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                raise ApiError(411, "Send the request with a Content-Length header.")
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ApiError(400, "The Content-Length header is not a number.") from None
        if size > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, f"The request is larger than {MAX_BODY // 2**20} MiB.")
        return self.rfile.read(size)

    def _model(self, request: ChatRequest) -> ModelInfo:
        info = self.api.runner.model()
        if info is None:
            raise no_model()
        if request.model not in _names_of(info):
            raise ApiError(
                404,
                f"The model {request.model!r} is not loaded in Hearth; it serves "
                f"{model_id(info)!r}. Use that name (GET /v1/models lists it), or load the "
                "model you want in Hearth.",
                code="model_not_found",
                param="model",
            )
        return info

    # -- one chat completion --
    def _chat(self, request: ChatRequest) -> None:
        info = self._model(request)
        generation = Generation(request.turn, answer_budget_given="max_tokens" in request.overrides)
        self.api._admit(generation.cancel)
        served = False
        try:
            self.api.runner.submit(generation.run, generation.cancel)
            waited = generation.wait_start(self._gone)
            reply = Reply(model=model_id(info))
            if request.stream:
                served = self._stream(request, generation, reply, waited)
            else:
                served = self._whole(request, generation, reply, waited)
        finally:
            generation.cancel.set()  # whatever ended this, the engine stops writing
            self.api._release(generation.cancel, served=served)

    def _whole(
        self, request: ChatRequest, generation: Generation, reply: Reply, waited: float
    ) -> bool:
        scanner = StopScanner(request.stops)
        text: list[str] = []
        thinking: list[str] = []
        done: ReplyDone | None = None
        for batch in generation.events(self._gone):
            for event in batch:
                if isinstance(event, TextDelta):
                    if not scanner.hit:
                        text.append(scanner.feed(event.text))
                        if scanner.hit:
                            generation.cancel.set()
                elif isinstance(event, ThinkingDelta):
                    thinking.append(event.text)
                elif isinstance(event, ReplyDone):
                    done = event
        if done is None:
            raise ApiError(500, "The reply ended without its figures.", kind="server_error")
        text.append(scanner.flush())
        finish = finish_reason(done.reason, stopped=scanner.hit)
        body = completion(reply, "".join(text), "".join(thinking), finish, done.stats)
        self._json(200, body, waited=waited)
        return True

    def _stream(
        self, request: ChatRequest, generation: Generation, reply: Reply, waited: float
    ) -> bool:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Hearth-Queue-Wait-Ms", str(round(waited * 1000)))
        self.end_headers()
        scanner = StopScanner(request.stops)
        usage = request.include_usage
        write = self._chunk_writer()
        write([chunk(reply, {"role": "assistant", "content": ""}, usage=usage)])
        stats: GenerationStats | None = None
        try:
            for batch in generation.events(self._gone):
                out: list[dict[str, Any]] = []
                for event in batch:
                    if isinstance(event, TextDelta):
                        if scanner.hit:
                            continue
                        piece = scanner.feed(event.text)
                        if scanner.hit:
                            generation.cancel.set()
                        if piece:
                            out.append(chunk(reply, {"content": piece}, usage=usage))
                    elif isinstance(event, ThinkingDelta):
                        out.append(chunk(reply, {"reasoning_content": event.text}, usage=usage))
                    elif isinstance(event, ReplyDone):
                        rest = scanner.flush()
                        if rest:
                            out.append(chunk(reply, {"content": rest}, usage=usage))
                        finish = finish_reason(event.reason, stopped=scanner.hit)
                        out.append(chunk(reply, {}, finish=finish, usage=usage))
                        stats = event.stats
                if out:
                    write(out)
        except ApiError as exc:  # after the headers: the error goes in the stream
            write([exc.body()])
        except (ConnectionError, OSError):
            self.close_connection = True
            return False
        if stats is not None and usage:
            write([usage_chunk(reply, stats)])
        self._write_raw(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        return stats is not None

    def _chunk_writer(self) -> Callable[[list[dict[str, Any]]], None]:
        def write(objects: list[dict[str, Any]]) -> None:
            data = "".join(
                f"data: {json.dumps(o, ensure_ascii=False, separators=(',', ':'))}\n\n"
                for o in objects
            )
            self._write_raw(data.encode())

        return write

    def _write_raw(self, data: bytes) -> None:
        # One chunk of the chunked body; a client that left makes this raise.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _gone(self) -> bool:
        """True when the client closed its end (a readable socket with nothing to read)."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- plain responses --
    def _json(
        self,
        status: int,
        body: dict[str, Any],
        *,
        waited: float | None = None,
        retry_after: int | None = None,
    ) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if waited is not None:
            self.send_header("X-Hearth-Queue-Wait-Ms", str(round(waited * 1000)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, exc: ApiError) -> None:
        log.info("API request refused (%d): %s", exc.status, exc.message)
        try:
            self._json(exc.status, exc.body(), retry_after=exc.retry_after)
        except OSError:
            self.close_connection = True


def _not_found(path: str) -> ApiError:
    if path.endswith("/completions"):
        message = (
            "Hearth serves chat models: send the prompt as messages to "
            "POST /v1/chat/completions (the legacy /v1/completions is not offered)."
        )
    else:
        message = (
            f"Hearth's local API has no {path or '/'}. It offers GET /v1/models and "
            "POST /v1/chat/completions."
        )
    return ApiError(404, message, code="not_found")
