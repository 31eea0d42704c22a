"""Server-sent events, as OpenAI-compatible servers stream a chat reply.

Only what a chat stream needs of the SSE format (html.spec.whatwg.org, "server-sent
events"): ``data:`` lines, joined by newlines until a blank line ends the event;
``event:`` names it; lines starting with ``:`` are comments (llama.cpp's Python
server sends ``: ping`` every 15 s while it reads a long prompt); ``id:`` and
``retry:`` are ignored (nothing here reconnects). Lines end in LF, CRLF or CR.

The framing is done here over raw bytes, not by the HTTP client's line iterator,
so that one line cannot grow without bound: a server that sends a megabyte with
no line break is a broken server, and is said so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["MAX_LINE_BYTES", "SseEvent", "SseTooLong", "sse_events"]

# The longest line accepted. A chat chunk is a few hundred bytes; a final chunk
# with usage and timings a few kilobytes.
MAX_LINE_BYTES = 1 << 20


class SseTooLong(ValueError):
    """A line longer than ``MAX_LINE_BYTES``: not a chat stream."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" unless the server named it
    data: str


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        if b"\r" in chunk:  # rare: CRLF or CR line ends
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        pending += chunk
        if b"\n" not in chunk:
            if len(pending) > MAX_LINE_BYTES:
                raise SseTooLong(f"a line of more than {MAX_LINE_BYTES} bytes")
            continue
        *lines, pending = pending.split(b"\n")
        yield from lines
        if len(pending) > MAX_LINE_BYTES:
            raise SseTooLong(f"a line of more than {MAX_LINE_BYTES} bytes")
    if pending:
        yield pending


def sse_events(chunks: Iterable[bytes]) -> Iterator[SseEvent]:
    """The events in a byte stream (as the HTTP client hands it over, in any pieces).
    An event still open when the stream ends is given too: some servers close the
    connection right after their last ``data:`` line. ``UnicodeDecodeError`` for
    bytes that are not UTF-8, ``SseTooLong`` for a line without end."""
    data: list[str] = []
    event = ""
    for raw in _lines(chunks):
        if not raw:
            if data:
                yield SseEvent(event or "message", "\n".join(data))
            data, event = [], ""
            continue
        line = raw.decode("utf-8")
        if line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SseEvent(event or "message", "\n".join(data))
