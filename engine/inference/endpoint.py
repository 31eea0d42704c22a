"""Where a remote model lives: an OpenAI-compatible server's address, its list of
models, and a one-sentence check of a connection (the Connections page and
``hearth endpoints check`` say it). ``RemoteBackend`` (engine.inference.remote)
chats through what is here."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2

from engine.errors import KnownError
from engine.inference.remote_errors import malformed, status_error, transport_error

__all__ = [
    "DEFAULT_CONTEXT",
    "RemoteModel",
    "Timeouts",
    "capped_body",
    "check_connection",
    "fetch_models",
    "fetch_served_context",
    "is_loopback",
    "list_models",
    "new_client",
    "normalize_base_url",
    "plain_http_warning",
    "request_headers",
    "where_of",
]

# The context window assumed when the server does not say (llama-cpp-python's and
# Ollama's model lists do not): large, so that Hearth never drops turns the server
# would have taken; a server that runs out says so (a 400), and that is a sentence.
DEFAULT_CONTEXT = 131_072


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """How long a person waits for a server. ``read_s`` is between two pieces of the
    reply, the first included: a large model reading a long conversation on a busy
    server can take a minute before its first token."""

    connect_s: float = 10.0
    read_s: float = 120.0


@dataclass(frozen=True, slots=True)
class RemoteModel:
    """A model a server lists at ``/v1/models``."""

    id: str
    context_length: int | None = None  # when the server says (vLLM, llama-server, hosted)
    owned_by: str = ""
    # ``context_length`` is what the model was trained on (llama-server's
    # ``meta.n_ctx_train``), not what the server gives it: ask ``/props`` for that.
    context_is_training: bool = False


# -- addresses ---------------------------------------------------------------------------------


def normalize_base_url(url: str) -> str:
    """The API's base address, as the OpenAI client takes it: ``http://host:port/v1``.
    A bare ``http://host:port`` gets ``/v1``; a pasted ``…/chat/completions`` loses it.
    ``ValueError`` with a sentence for what is not an http(s) address."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not a server address. Write it like http://gpu-box:8000/v1.")
    path = parts.path.rstrip("/")
    for tail in ("/chat/completions", "/completions", "/models"):
        if path.endswith(tail):
            path = path[: -len(tail)]
    if not path:
        path = "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def where_of(base_url: str) -> str:
    """The server as sentences name it: its host and port, never a password."""
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def is_loopback(base_url: str) -> bool:
    """True for this computer itself (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_warning(base_url: str) -> str | None:
    """A sentence when messages would cross a network unencrypted; None otherwise."""
    if urlsplit(base_url).scheme != "http" or is_loopback(base_url):
        return None
    return (
        f"The connection to {where_of(base_url)} is plain http://, not encrypted: anyone on "
        "the network between here and the server can read the messages and the API key. "
        "Use https:// where the server offers it."
    )


# -- the HTTP client ---------------------------------------------------------------------------


def new_client(timeouts: Timeouts) -> httpx2.Client:
    timeout = httpx2.Timeout(
        connect=timeouts.connect_s, read=timeouts.read_s, write=timeouts.read_s, pool=None
    )
    # Redirects are not followed: a POST with an API key is not re-sent elsewhere.
    return httpx2.Client(timeout=timeout, follow_redirects=False)


def request_headers(api_key: str | None, *, stream: bool) -> dict[str, str]:
    headers = {"Accept": "text/event-stream" if stream else "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def capped_body(response: httpx2.Response, limit: int = 64 * 1024) -> bytes:
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit]


def _positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _context_length(entry: Mapping[str, Any]) -> tuple[int | None, bool]:
    """The context window a ``/models`` entry states, and whether it is only the
    model's training length (llama-server: its own window is in ``/props``)."""
    meta = entry.get("meta")
    served = _positive(entry.get("max_model_len")) or _positive(  # vLLM
        entry.get("context_length")  # OpenRouter, LM Studio
    )
    if served is not None:
        return served, False
    trained = _positive(meta.get("n_ctx_train")) if isinstance(meta, Mapping) else None
    return trained, trained is not None


def _model(entry: Mapping[str, Any]) -> RemoteModel:
    length, training = _context_length(entry)
    return RemoteModel(str(entry["id"]), length, str(entry.get("owned_by") or ""), training)


def fetch_served_context(client: httpx2.Client, base_url: str, api_key: str | None) -> int | None:
    """The context window llama.cpp's ``llama-server`` gives its model (``GET /props``,
    beside ``/v1``), or None where a server has no such page or does not answer it:
    an extra that is asked for, never one a connection depends on."""
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    try:
        with client.stream(
            "GET", f"{root}/props", headers=request_headers(api_key, stream=False)
        ) as response:
            if response.status_code != 200:
                return None
            data = json.loads(capped_body(response, limit=1 << 20))
    except (httpx2.HTTPError, ValueError):
        return None
    if not isinstance(data, Mapping):
        return None
    settings = data.get("default_generation_settings")
    nested = settings.get("n_ctx") if isinstance(settings, Mapping) else None
    return _positive(data.get("n_ctx")) or _positive(nested)


def fetch_models(
    client: httpx2.Client, base_url: str, api_key: str | None, timeouts: Timeouts
) -> list[RemoteModel] | int:
    """The server's models, or the HTTP status it answered ``/models`` with."""
    where = where_of(base_url)
    try:
        with client.stream(
            "GET", f"{base_url}/models", headers=request_headers(api_key, stream=False)
        ) as response:
            body = capped_body(response, limit=16 << 20)
            if response.status_code >= 400:
                if response.status_code in (404, 405, 501):
                    return response.status_code
                raise status_error(
                    response.status_code, response.headers, body, where=where, model="a model"
                )
    except httpx2.TransportError as exc:
        raise transport_error(
            exc, where=where, connect_s=timeouts.connect_s, read_s=timeouts.read_s, started=False
        ) from exc
    try:
        data = json.loads(body)
        entries = data["data"] if isinstance(data, dict) else data
        return [_model(e) for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise malformed(where, "its list of models is not OpenAI's format") from exc


def list_models(
    base_url: str, api_key: str | None = None, *, timeouts: Timeouts | None = None
) -> list[RemoteModel]:
    """The models the server at ``base_url`` lists (``GET /models``); ``KnownError``
    with a sentence when it cannot be asked."""
    base = normalize_base_url(base_url)
    timeouts = timeouts or Timeouts()
    with new_client(timeouts) as client:
        found = fetch_models(client, base, api_key, timeouts)
    if isinstance(found, int):
        raise status_error(found, {}, b"", where=where_of(base), model="a model")
    return found


def check_connection(
    base_url: str,
    api_key: str | None = None,
    *,
    model: str | None = None,
    timeouts: Timeouts | None = None,
) -> str:
    """One sentence on whether Hearth can chat through ``base_url`` (and ``model``)."""
    try:
        where = where_of(normalize_base_url(base_url))
        models = list_models(base_url, api_key, timeouts=timeouts)
    except (KnownError, ValueError) as exc:
        return str(exc)
    names = [m.id for m in models]
    listed = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    if not names:
        return f"Connected to {where}, but it lists no models. Load a model on the server."
    if model and model not in names:
        return f'Connected to {where}, but it has no model named "{model}"; it has {listed}.'
    count = f"{len(names)} model{'s' if len(names) != 1 else ''}"
    return f"Connected to {where}: {count} ({listed})."
