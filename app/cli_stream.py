"""A reply streamed to the terminal, the same for a local model and a server's:
the thinking on stderr (dim on a terminal), the answer on stdout, each piece saved
as it comes (no Qt here)."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, TextIO

from engine.errors import KnownError
from engine.history.turns import status_for
from engine.history.types import MessageStatus
from engine.types import GenerationStats, ReplyDone, TextDelta, ThinkingDelta

if TYPE_CHECKING:
    from engine.history.recorder import ReplyRecorder
    from engine.inference.backend import ChatBackend
    from engine.types import SamplingParams, Turn


class ThinkingOutput:
    """The model's thinking on stderr, dim on a terminal, so stdout is the answer only."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._open = False

    def write(self, text: str) -> None:
        if not self._open:
            self._open = True
            self._stream.write("\x1b[2m" if self._tty else "[thinking] ")
        self._stream.write(text)
        self._stream.flush()

    def end(self) -> None:
        if self._open:
            self._open = False
            self._stream.write("\x1b[0m\n" if self._tty else "\n")
            self._stream.flush()


def stream_reply(
    backend: ChatBackend,
    turn: Turn,
    params: SamplingParams,
    *,
    stop: threading.Event,
    recorder: ReplyRecorder,
) -> GenerationStats | None:
    """Stream ``backend``'s reply to ``turn`` to the terminal and into ``recorder``.

    Ctrl+C (KeyboardInterrupt) keeps what was written as a stopped reply and is
    raised on; a ``KnownError`` keeps it as a failed one and is raised on, so the
    caller says the sentence. Returns the reply's figures."""
    thinking_out = ThinkingOutput(sys.stderr)
    stats: GenerationStats | None = None
    try:
        for event in backend.stream(turn, params, stop=stop):
            if isinstance(event, ThinkingDelta):
                thinking_out.write(event.text)
                recorder.append_thinking(event.text)
            elif isinstance(event, TextDelta):
                thinking_out.end()
                sys.stdout.write(event.text)
                sys.stdout.flush()
                recorder.append(event.text)
            elif isinstance(event, ReplyDone):
                thinking_out.end()
                recorder.finish(status_for(event.reason))
                stats = event.stats
    except KeyboardInterrupt:
        recorder.finish(MessageStatus.STOPPED)
        raise
    except KnownError:
        thinking_out.end()
        recorder.finish(MessageStatus.FAILED)
        sys.stdout.write("\n")
        raise
    sys.stdout.write("\n")
    return stats
