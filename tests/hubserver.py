"""A Hugging Face Hub stand-in on 127.0.0.1: the real protocol, real bytes, injectable faults.

What huggingface_hub asks of the Hub, answered the way the Hub answers it:

- ``GET  /api/models/{repo}/revision/{rev}``   repo info with siblings (and LFS blobs)
- ``POST /api/models/{repo}/paths-info/{rev}`` sizes and LFS sha256 of given paths
- ``HEAD /{repo}/resolve/{rev}/{file}``        302 to the "CDN" (a second server on another
  port, so huggingface_hub treats it as another host and keeps the token to itself) with
  ``X-Repo-Commit``, ``ETag`` (git blob id), ``X-Linked-Etag`` (sha256), ``X-Linked-Size``;
  or a 200 with the same headers when ``redirect=False``
- ``GET  /{repo}/resolve/{rev}/{file}`` and the CDN URL: the bytes, with ``Range`` support
- errors with ``X-Error-Code`` (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound)

``commit_header = False`` leaves ``X-Repo-Commit`` out (some mirrors do): the client must ask
the API which commit a branch is at.

Faults, each for the next ``times`` matching requests: ``fail`` (any status), ``drop_after``
(send N bytes of the body, then cut the connection), ``flip_byte`` (serve one byte wrong),
``ignore_range`` (answer a Range request with the whole file), and ``rate`` (throttle).

Lies, until changed again: ``tamper`` serves other bytes under a file's name (by default
with an ``ETag``/``X-Linked-Etag``/``X-Linked-Size`` that match them: a self-consistent but
malicious mirror; the API still records the real file), ``misreport`` makes the API record
another sha256 for a file than its bytes have.
``requests`` records every request (method, path, headers) for assertions. ``restart()``
stops and starts both servers on the same ports, like a server restart mid-download.

The real Hub cannot be reached from the test machines; this is the Hub for the tests.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer", "Request"]

_POINTER_SIZE = 134


@dataclass
class _File:
    repo: str
    path: str
    data: bytes
    sha256: str
    blob_id: str
    served: bytes | None = None  # tampered: these bytes go out instead of ``data``
    served_headers: bool = True  # tampered: the headers describe ``served``, not ``data``
    listed_sha256: str | None = None  # misreported: what the API says the sha256 is

    @property
    def body(self) -> bytes:
        return self.data if self.served is None else self.served

    @property
    def header_sha256(self) -> str:
        if self.served is None or not self.served_headers:
            return self.sha256
        return hashlib.sha256(self.served).hexdigest()

    @property
    def header_size(self) -> int:
        return len(self.body if self.served_headers else self.data)

    @property
    def api_sha256(self) -> str:
        return self.listed_sha256 or self.sha256


@dataclass
class _Fault:
    kind: str  # "status", "drop", "flip", "ignore_range"
    method: str  # "GET", "HEAD" or "*"
    path: str | None  # a file name, or None for any file
    times: int
    status: int = 500
    error_code: str | None = None
    after: int = 0  # drop: body bytes sent first; flip: offset of the byte


@dataclass(frozen=True)
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict[str, str]

    @property
    def range_start(self) -> int | None:
        value = self.headers.get("range")
        if not value or not value.startswith("bytes="):
            return None
        return int(value[6:].split("-")[0])


@dataclass
class _Repo:
    commit: str
    files: dict[str, _File] = field(default_factory=dict)
    token: str | None = None  # gated: this bearer token is required


class HubServer:
    def __init__(self, *, redirect: bool = True) -> None:
        self.redirect = redirect
        self.commit_header = True  # send X-Repo-Commit with a file's headers
        self.rate: float | None = None  # bytes per second for file bodies, or unthrottled
        self.requests: list[Request] = []
        self._repos: dict[str, _Repo] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []
        self._ports: dict[str, int] = {"hub": 0, "cdn": 0}

    # -- setup --------------------------------------------------------------------------

    def add_file(
        self, repo: str, path: str, data: bytes, *, commit: str | None = None
    ) -> tuple[str, str]:
        """Publish ``data`` as ``repo``/``path``; returns (commit, sha256)."""
        with self._lock:
            entry = self._repos.setdefault(
                repo, _Repo(commit or hashlib.sha1(repo.encode()).hexdigest())
            )
            if commit:
                entry.commit = commit
            sha = hashlib.sha256(data).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\n"
            blob = hashlib.sha1(pointer.encode()).hexdigest()
            entry.files[path] = _File(repo, path, data, sha, blob)
            return entry.commit, sha

    def commit(self, repo: str) -> str:
        """The commit ``repo``'s files are at (what ``main`` resolves to)."""
        return self._repos[repo].commit

    def tamper(self, repo: str, path: str, data: bytes | None, *, headers: bool = True) -> None:
        """Serve ``data`` as ``repo``/``path`` from now on (None: the real file again); the
        API still lists the real file.

        ``headers=True``: the file's ETag, X-Linked-Etag and X-Linked-Size describe ``data``
        (the response is consistent with itself). ``headers=False``: they describe the real
        file (``data`` should then have the real file's length).
        """
        with self._lock:
            found = self._repos[repo].files[path]
            found.served, found.served_headers = data, headers

    def misreport(self, repo: str, path: str, sha256: str) -> None:
        """From now on the API records ``sha256`` for ``repo``/``path`` (the bytes stay)."""
        with self._lock:
            self._repos[repo].files[path].listed_sha256 = sha256

    def gate(self, repo: str, token: str) -> None:
        """Make ``repo`` gated: only ``Authorization: Bearer <token>`` may resolve its files."""
        self._repos[repo].token = token

    def fail(
        self,
        status: int,
        *,
        method: str = "*",
        path: str | None = None,
        times: int = 1,
        error_code: str | None = None,
    ) -> None:
        self._add(_Fault("status", method, path, times, status=status, error_code=error_code))

    def drop_after(self, n_bytes: int, *, path: str | None = None, times: int = 1) -> None:
        self._add(_Fault("drop", "GET", path, times, after=n_bytes))

    def flip_byte(self, offset: int, *, path: str | None = None, times: int = 1) -> None:
        self._add(_Fault("flip", "GET", path, times, after=offset))

    def ignore_range(self, *, path: str | None = None, times: int = 1) -> None:
        self._add(_Fault("ignore_range", "GET", path, times))

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take(self, kind: str, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.kind == kind
                    and fault.method in ("*", method)
                    and fault.path in (None, path)
                ):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._ports['hub']}"

    @property
    def cdn_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._ports['cdn']}"

    def start(self) -> HubServer:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", self._ports[role]), _handler(self, role))
            server.daemon_threads = True
            self._ports[role] = server.server_address[1]
            self._servers[role] = server
            thread = threading.Thread(
                target=server.serve_forever, args=(0.05,), name=f"hub-{role}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._servers.clear()
        self._threads.clear()

    def restart(self) -> None:
        """Stop both servers and start them again on the same ports."""
        self.stop()
        self.start()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def gets(self, path_suffix: str) -> list[Request]:
        """The GET requests for a file's bytes (hub or CDN), oldest first."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "GET" and (r.path.endswith(path_suffix) or r.server == "cdn")
            ]

    # -- answering ---------------------------------------------------------------------------

    def find(self, repo: str, path: str) -> _File | None:
        entry = self._repos.get(repo)
        return entry.files.get(path) if entry else None

    def by_sha(self, sha: str) -> _File | None:
        for entry in self._repos.values():
            for f in entry.files.values():
                if f.sha256 == sha:
                    return f
        return None


def _handler(hub: HubServer, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test output clean; ``hub.requests`` is the log

        def _record(self) -> None:
            with hub._lock:
                hub.requests.append(
                    Request(
                        role,
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                    )
                )

        def _error(self, status: int, code: str | None = None, message: str = "") -> None:
            body = json.dumps({"error": message or code or "error"}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            if message:
                self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, value: object) -> None:
            body = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._route()

        def do_GET(self) -> None:
            self._route()

        def do_POST(self) -> None:
            self._route()

        def _route(self) -> None:
            self._record()
            path = unquote(urlsplit(self.path).path)
            try:
                if role == "cdn":
                    found = hub.by_sha(path.strip("/").split("/")[-1])
                    self._serve(found) if found else self._error(404, "EntryNotFound")
                elif path.startswith("/api/models/"):
                    self._api(path[len("/api/models/") :])
                elif "/resolve/" in path:
                    self._resolve(path.lstrip("/"))
                else:
                    self._error(404, "RepoNotFound")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a cancel): nothing to answer

        def _fault_status(self, name: str) -> bool:
            fault = hub._take("status", self.command, name)
            if fault is None:
                return False
            self._error(fault.status, fault.error_code, f"injected {fault.status}")
            return True

        def _api(self, rest: str) -> None:
            for marker in ("/revision/", "/paths-info/"):
                if marker in rest:
                    repo, rev = rest.split(marker, 1)
                    break
            else:
                self._error(404, "RepoNotFound")
                return
            entry = hub._repos.get(repo)
            if entry is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return
            if rev not in ("main", entry.commit):
                self._error(404, "RevisionNotFound", "Invalid rev id")
                return
            if marker == "/revision/":
                self._json({"id": repo, "sha": entry.commit, "siblings": [
                    {"rfilename": f.path, "size": len(f.data),
                     "lfs": {"sha256": f.api_sha256, "size": len(f.data),
                             "pointerSize": _POINTER_SIZE}}
                    for f in entry.files.values()
                ]})  # fmt: skip
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            paths = form.get("paths", [])
            self._json([
                {"type": "file", "path": f.path, "size": len(f.data), "oid": f.blob_id,
                 "lfs": {"oid": f.api_sha256, "size": len(f.data), "pointerSize": _POINTER_SIZE}}
                for p in paths if (f := entry.files.get(p)) is not None
            ])  # fmt: skip

        def _resolve(self, path: str) -> None:
            repo, rest = path.split("/resolve/", 1)
            rev, _, name = rest.partition("/")
            if self._fault_status(name):
                return
            entry = hub._repos.get(repo)
            if entry is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return
            if entry.token is not None:
                auth = self.headers.get("Authorization")
                if auth != f"Bearer {entry.token}":
                    self._error(
                        403 if auth else 401, "GatedRepo", "Access to this repo is restricted"
                    )
                    return
            if rev not in ("main", entry.commit):
                self._error(404, "RevisionNotFound", "Invalid rev id")
                return
            found = entry.files.get(name)
            if found is None:
                self._error(404, "EntryNotFound", "Entry not found")
                return
            if hub.redirect:
                self.send_response(302)
                self.send_header("Location", f"{hub.cdn_endpoint}/{repo}/{found.sha256}?sig=x")
                self._file_headers(found, entry.commit)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._serve(found, commit=entry.commit)

        def _file_headers(self, f: _File, commit: str) -> None:
            if hub.commit_header:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{f.blob_id}"')
            self.send_header("X-Linked-Etag", f'"{f.header_sha256}"')
            self.send_header("X-Linked-Size", str(f.header_size))

        def _serve(self, f: _File, *, commit: str | None = None) -> None:
            if self._fault_status(f.path):
                return
            data = f.body
            flip = hub._take("flip", self.command, f.path)
            if flip is not None:
                data = (
                    data[: flip.after] + bytes([data[flip.after] ^ 0xFF]) + data[flip.after + 1 :]
                )
            start = 0
            wanted = self.headers.get("Range")
            if wanted and not hub._take("ignore_range", self.command, f.path):
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self._error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            if commit:
                self._file_headers(f, commit)
            else:
                self.send_header("ETag", f'"{f.header_sha256}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if self.command == "HEAD":
                return
            body = memoryview(data)[start:]
            drop = hub._take("drop", self.command, f.path)
            if drop is not None:
                self.wfile.write(body[: drop.after])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees a cut
                self.close_connection = True
                return
            step = 1 << 16
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                if hub.rate:
                    time.sleep(step / hub.rate)

    return Handler
