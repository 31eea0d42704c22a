"""OpenAI-compatible servers on 127.0.0.1 for the remote backend's tests.

- ``LlamaServer``: llama-cpp-python's own server (``python -m llama_cpp.server``, from
  the ``[server]`` extra in the test dependencies) on the real starter model, in a
  child process: a real server no one here wrote.
- ``ScriptedServer``: a stdlib ``http.server`` that answers each request with the next
  of the exchanges a test gives it, as literal SSE text, for what llama-cpp-python's
  server cannot show (vLLM's and Ollama's reasoning fields, usage in the last chunk,
  429 with Retry-After, malformed streams, a server that never answers).
- ``SilentServer``: accepts connections and never sends a byte.
- ``LoopbackGuard``: an audit hook (the pattern of tests/integration/test_offline.py)
  that proves nothing but loopback is touched while it is on: a connection to another
  address is refused and recorded, and a name lookup of another host fails as DNS
  would (``socket.gaierror``) without reaching a resolver, and is recorded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.waiting import MODEL_STEP_S, wait_until

__all__ = [
    "Exchange",
    "LlamaServer",
    "LoopbackGuard",
    "ScriptedServer",
    "SilentServer",
    "free_port",
    "sse",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- llama-cpp-python's server ----------------------------------------------------------------


class LlamaServer:
    """``python -m llama_cpp.server`` on ``model`` at 127.0.0.1 on a free port, as
    ``alias``; with ``api_key`` it refuses requests without that key."""

    def __init__(
        self, model: Path, *, alias: str = "smollm2", api_key: str | None = None, log: Path
    ) -> None:
        self.port = free_port()
        self.alias = alias
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        args = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model),
            "--model_alias", alias, "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", "2048", "--n_threads", "2", "--verbose", "False",
        ]  # fmt: skip
        if api_key:
            args += ["--api_key", api_key]
        self._log = log.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.endswith("_PROXY")}
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.log_path = log

    def wait_ready(self) -> None:
        wait_until(
            lambda: _accepts(self.port),
            timeout_s=MODEL_STEP_S,
            what="llama_cpp.server to listen",
            fail_if=lambda: (
                None
                if self.process.poll() is None
                else f"it exited: {self.log_path.read_text(errors='replace')[-2000:]}"
            ),
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=MODEL_STEP_S)

    def __enter__(self) -> LlamaServer:
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.kill()
        self._log.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- scripted exchanges -----------------------------------------------------------------------


def sse(*chunks: dict[str, Any] | str) -> list[bytes]:
    """SSE events as a server writes them: ``data: <json>`` and a blank line each."""
    return [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n".encode() for c in chunks]


@dataclass
class Exchange:
    """One answer: a status, headers, and a body written piece by piece.

    ``hang``: send nothing at all (not even headers) until the server closes.
    ``endless``: after ``body``, repeat its last piece until the client hangs up.
    ``drop``: cut the connection after the body instead of ending it properly.
    ``stall``: after the body, send nothing more (the stream left open) until the server closes."""

    status: int = 200
    body: Sequence[bytes] = ()
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/event-stream"})
    hang: bool = False
    endless: bool = False
    drop: bool = False
    stall: bool = False


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class ScriptedServer:
    """Answers requests with the exchanges of ``script`` in order (``GET /v1/models``
    is answered from ``models`` and does not use one up: an id, or a whole entry with a
    server's metadata; ``GET /props`` from ``props``, else 404, as llama-server's and
    other servers' pages). ``seen`` records each request."""

    def __init__(
        self,
        script: Sequence[Exchange] = (),
        *,
        models: Sequence[str | dict[str, Any]] = ("m",),
        props: dict[str, Any] | None = None,
    ) -> None:
        self.script = list(script)
        self.models = list(models)
        self.props = props
        self.seen: list[Seen] = []
        self.closing = threading.Event()
        self.client_gone = threading.Event()  # an endless reply saw its client hang up
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.seen.append(Seen("GET", self.path, dict(self.headers), None))
                listed = [
                    {"id": m, "object": "model"} if isinstance(m, str) else m for m in owner.models
                ]
                data = json.dumps({"object": "list", "data": listed}).encode()
                if self.path.endswith("/props"):
                    data = json.dumps(owner.props).encode()
                    if owner.props is None:
                        self.send_error(404)
                        return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                owner.seen.append(Seen("POST", self.path, dict(self.headers), json.loads(raw)))
                owner._answer(self, owner.script.pop(0))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _answer(self, handler: BaseHTTPRequestHandler, exchange: Exchange) -> None:
        if exchange.hang:
            self.closing.wait()
            handler.close_connection = True
            return
        handler.send_response(exchange.status)
        for name, value in exchange.headers.items():
            handler.send_header(name, value)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def write(piece: bytes) -> None:
            handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            handler.wfile.flush()

        try:
            for piece in exchange.body:
                write(piece)
            while exchange.endless and not self.closing.is_set():
                write(exchange.body[-1])
            if exchange.stall:
                self.closing.wait()
                handler.close_connection = True
                return
            if exchange.drop:
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client hung up (Stop, or the budget ran out)
            self.client_gone.set()
            handler.close_connection = True

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()


class SilentServer:
    """A server on 127.0.0.1 that accepts every connection and never sends a byte (a
    process that hangs, a proxy that swallows what it is sent): what a client sees is a
    connection that works and an answer that never comes."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # how often the accepting thread looks for close
        self.port = int(self._listener.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.accepted: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read, never answered

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._thread.join()
        for conn in self.accepted:
            conn.close()
        self._listener.close()


# -- the loopback guard -----------------------------------------------------------------------


def _loopback(host: object) -> bool:
    if not isinstance(host, str | bytes):
        return False
    name = host.decode() if isinstance(host, bytes) else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


class LoopbackGuard:
    """While ``on``: every connection to, and name lookup of, anything but loopback is
    recorded in ``seen`` and refused (the lookup as a DNS failure). Audit hooks cannot be
    removed, so one guard is installed per process and switched on per test."""

    _installed: LoopbackGuard | None = None

    def __init__(self) -> None:
        self.on = False
        self.seen: list[str] = []

    @classmethod
    def get(cls) -> LoopbackGuard:
        if cls._installed is None:
            cls._installed = LoopbackGuard()
            sys.addaudithook(cls._installed)
        return cls._installed

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.on or not event.startswith("socket."):
            return
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[1]
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
                self.seen.append(f"{event} {address!r}")
                raise ConnectionRefusedError(f"loopback guard: refused {address!r}")
        elif event in (
            "socket.getaddrinfo",
            "socket.gethostbyname",
            "socket.gethostbyname_ex",
        ) and not _loopback(args[0]):
            self.seen.append(f"{event} {args[0]!r}")
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    @contextlib.contextmanager
    def watching(self) -> Iterator[LoopbackGuard]:
        self.seen.clear()
        self.on = True
        try:
            yield self
        finally:
            self.on = False
