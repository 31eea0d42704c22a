"""What went wrong with a remote server, in sentences a person can act on.

``RemoteBackend`` (engine.inference.remote) hands every failure here: an HTTP
status with the server's own message, or the HTTP client's transport error with
the operating system's cause underneath (DNS, refused, TLS, timeouts). Each
sentence names the server as the person wrote it (host and port) and says what
to do. The server's own words are kept short and quoted, since they are often
the only clue (vLLM and llama.cpp say exactly which limit was hit).
"""

from __future__ import annotations

import email.utils
import json
import socket
import ssl
import time
from collections.abc import Mapping

import httpx2

from engine.errors import ContextFullError, EndpointError, GenerationError, KnownError

__all__ = [
    "broke_off",
    "malformed",
    "retry_after_s",
    "server_message",
    "status_error",
    "transport_error",
]

# The server's own message is quoted up to this many characters.
_QUOTE_CHARS = 300


def server_message(body: bytes) -> str:
    """The message in an error body, in the shapes servers use: OpenAI's and vLLM's
    ``{"error": {"message": ...}}``, llama.cpp's and Ollama's ``{"error": "..."}``,
    FastAPI's ``{"detail": ...}`` (llama-cpp-python's server); else the text itself."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    found: object = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            found = error.get("message")
        elif error:
            found = error
        found = found or data.get("detail") or data.get("message")
        if isinstance(found, list) and found and isinstance(found[0], dict):  # pydantic
            found = found[0].get("msg")
    message = str(found) if found else text
    message = " ".join(message.split())
    if len(message) > _QUOTE_CHARS:
        message = message[: _QUOTE_CHARS - 1] + "…"
    return message


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for: seconds, or an HTTP date."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _wait_words(seconds: float) -> str:
    if seconds < 90:
        whole = max(1, round(seconds))
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _seconds(value: float) -> str:
    """A configured wait as a sentence says it: "1 second", "0.5 seconds", "120 seconds"."""
    return f"{value:g} second{'' if value == 1 else 's'}"


def _quoted(message: str) -> str:
    return f' It said: "{message}"' if message else ""


_CONTEXT_WORDS = (
    "context length",
    "context size",
    "context window",
    "maximum context",
    "n_ctx",
    "too long",
)


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, *, where: str, model: str
) -> KnownError:
    """The error for an HTTP error status from the server at ``where``."""
    message = server_message(body)
    said = _quoted(message)
    detail = f"HTTP {status}: {message}"
    if status == 401:
        return EndpointError(
            f"The server at {where} did not accept the API key (401 Unauthorized).{said} "
            "Check the key saved for this connection, or add one if the server needs it.",
            detail=detail,
        )
    if status == 403:
        return EndpointError(
            f"The server at {where} does not let this API key use {model} (403 Forbidden)."
            f"{said} Check the key's permissions on the server.",
            detail=detail,
        )
    if status == 404:
        if "model" in message.lower():
            return EndpointError(
                f'The server at {where} has no model named "{model}".{said} '
                "Choose one of the models it lists.",
                detail=detail,
            )
        return EndpointError(
            f"The server at {where} has no OpenAI-compatible API at this address (404 Not "
            "Found). Check the address: it usually ends in /v1.",
            detail=detail,
        )
    if status in (429, 503):
        wait = retry_after_s(headers)
        busy = "too many requests" if status == 429 else "unavailable"
        after = (
            f"Send again in {_wait_words(wait)}, when it asks to be tried again."
            if wait is not None
            else "Wait a little, then send again."
        )
        return EndpointError(
            f"The server at {where} is busy ({status}: {busy}).{said} {after}",
            detail=detail,
            retry_after=wait,
        )
    if status in (400, 413, 422) and any(w in message.lower() for w in _CONTEXT_WORDS):
        return ContextFullError(
            f"The conversation is too long for {model} on {where}.{said} "
            "Start a new chat or drop the oldest messages.",
            detail=detail,
        )
    if status >= 500:
        return EndpointError(
            f"The server at {where} failed to answer ({status}).{said} Try again; if it keeps "
            "failing, the server's log says why.",
            detail=detail,
        )
    return EndpointError(
        f"The server at {where} refused the request ({status}).{said} "
        "Check the connection's settings and the model's name.",
        detail=detail,
    )


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def transport_error(
    exc: httpx2.TransportError,
    *,
    where: str,
    connect_s: float,
    read_s: float,
    started: bool,
) -> KnownError:
    """The error for a failed connection or exchange with ``where``. ``started``: part
    of the reply had arrived (the failure broke it off; what came is kept)."""
    causes = _causes(exc)
    if isinstance(exc, httpx2.ConnectTimeout):
        return EndpointError(
            f"The server at {where} did not answer within {_seconds(connect_s)}. Check that it "
            "is running and that this computer can reach it (network, VPN, firewall).",
            detail=repr(exc),
        )
    if isinstance(exc, httpx2.ReadTimeout):
        if started:
            return GenerationError(
                f"The server at {where} stopped sending the reply: nothing came for "
                f"{_seconds(read_s)}. What was written so far is kept; send again to retry.",
                detail=repr(exc),
            )
        return EndpointError(
            f"The server at {where} accepted the request but sent nothing for "
            f"{_seconds(read_s)}. It may be overloaded or stuck; try again later, or check the "
            "server.",
            detail=repr(exc),
        )
    if isinstance(exc, httpx2.TimeoutException):  # writing the request, or the pool
        return EndpointError(
            f"The server at {where} stopped responding. Check that it is running, then send again.",
            detail=repr(exc),
        )
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
        return EndpointError(
            f"The server at {where} showed a TLS certificate this computer does not trust. "
            "If it is your own server, install its certificate in the system's trust store; "
            "otherwise check the address.",
            detail=repr(exc),
        )
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return EndpointError(
            f"A secure (TLS) connection to {where} could not be set up. If the server speaks "
            "plain HTTP, use an http:// address; otherwise check the server's TLS settings.",
            detail=repr(exc),
        )
    if any(isinstance(c, socket.gaierror) for c in causes):
        return EndpointError(
            f"The server name in {where} could not be found (DNS). Check the address for "
            "typing mistakes, and that this computer is on the right network or VPN.",
            detail=repr(exc),
        )
    if isinstance(exc, httpx2.ConnectError) or any(
        isinstance(c, ConnectionRefusedError) for c in causes
    ):
        return EndpointError(
            f"Nothing answers at {where}: the connection was refused or could not be made. "
            "Check that the server is running and listening on that port.",
            detail=repr(exc),
        )
    if isinstance(exc, httpx2.ProxyError):
        return EndpointError(
            f"The proxy refused the connection to {where}. Check the proxy settings "
            "(HTTPS_PROXY, NO_PROXY).",
            detail=repr(exc),
        )
    if started:
        return broke_off(where, detail=repr(exc))
    return EndpointError(
        f"The connection to {where} failed before the reply began. Check that the server is "
        "running, then send again.",
        detail=repr(exc),
    )


def broke_off(where: str, *, detail: str = "") -> GenerationError:
    """The reply stream ended before the server said it was done."""
    return GenerationError(
        f"The connection to {where} broke off in the middle of the reply. What was written "
        "so far is kept; send again to retry.",
        detail=detail,
    )


def malformed(where: str, what: str) -> GenerationError:
    """The server sent something that is not an OpenAI-compatible stream."""
    return GenerationError(
        f"The server at {where} sent a reply Hearth cannot read ({what}). What was written "
        "so far is kept. Check that the address points at an OpenAI-compatible API.",
        detail=what,
    )
