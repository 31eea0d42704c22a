"""ReplyRecorder: saves a reply while it streams, so a kill -9 loses at most ~1 s."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.history.types import MessageStatus
from engine.types import Part, TextPart, ToolCallPart, ToolResultPart

if TYPE_CHECKING:
    from engine.history.messages import MessageStore


class _Text:
    """Appended pieces, joined lazily: one join per read, not per piece (no O(n^2))."""

    def __init__(self, start: str = "") -> None:
        self._text = start
        self._pending: list[str] = []
        self.unsaved = False

    def add(self, piece: str) -> None:
        if piece:
            self._pending.append(piece)
            self.unsaved = True

    @property
    def value(self) -> str:
        if self._pending:
            self._text += "".join(self._pending)
            self._pending.clear()
        return self._text


class ReplyRecorder:
    """Saves a streaming reply (answer and thinking) at most every `interval` s and at the end.

    The message must already exist (typically added empty with status STREAMING).
    Answer and thinking are saved together, in one UPDATE. Used from the store's
    thread. If a save fails the text stays pending here, the ``StoreError``
    propagates, and the next flush (at the next interval) tries again.

    ``thinking_ms`` counts the time from a thinking piece to the next answer
    piece (or the end), summed if the model thinks more than once.
    """

    def __init__(
        self,
        store: MessageStore,
        message_id: int,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        text: str = "",
        thinking: str = "",
        thinking_ms: int = 0,
    ) -> None:
        self._store = store
        self._message_id = message_id
        self._interval = interval
        self._clock = clock
        self._answer = _Text(text)
        self._thinking = _Text(thinking)
        self._thinking_ms = thinking_ms
        self._thinking_since: float | None = None  # thinking right now, since then
        self._last_flush = clock()
        self._finished = False
        self._parts: list[Part] = []
        self._parts_text_at = 0  # how much of the answer the parts hold already

    @classmethod
    def resume(cls, store: MessageStore, message_id: int, **kwargs: Any) -> ReplyRecorder:
        """Continue a saved reply (one that was cut off): new text is appended to it.

        Marks the message STREAMING again. Raises ``KeyError`` if it does not exist.
        """
        msg = store.message(message_id)
        if msg is None:
            raise KeyError(f"no message with id {message_id}")
        store.update_message(message_id, msg.content, MessageStatus.STREAMING)
        return cls(
            store,
            message_id,
            text=msg.content,
            thinking=msg.thinking,
            thinking_ms=msg.thinking_ms,
            **kwargs,
        )

    @property
    def message_id(self) -> int:
        return self._message_id

    @property
    def text(self) -> str:
        return self._answer.value

    @property
    def thinking(self) -> str:
        return self._thinking.value

    @property
    def thinking_ms(self) -> int:
        if self._thinking_since is None:
            return self._thinking_ms
        return self._thinking_ms + round((self._clock() - self._thinking_since) * 1000)

    def append(self, text: str) -> None:
        """Add a piece of the answer (saved if `interval` has passed)."""
        self._check_open()
        if text and self._thinking_since is not None:  # thinking is over: save its time
            self._thinking_ms = self.thinking_ms
            self._thinking_since = None
            self._thinking.unsaved = True
        self._answer.add(text)
        self._maybe_flush()

    def append_part(self, part: ToolCallPart | ToolResultPart) -> None:
        """Add a tool call or result after the answer so far (saved with the next write)."""
        self._check_open()
        text = self._answer.value
        if text[self._parts_text_at :]:
            self._parts.append(TextPart(text[self._parts_text_at :]))
        self._parts_text_at = len(text)
        self._parts.append(part)
        self._answer.unsaved = True
        self._maybe_flush()

    def parts(self) -> tuple[Part, ...]:
        """The reply's parts when it called tools (its text, calls and results in
        order); () otherwise."""
        if not self._parts:
            return ()
        rest = self._answer.value[self._parts_text_at :]
        return (*self._parts, TextPart(rest)) if rest else tuple(self._parts)

    def append_thinking(self, text: str) -> None:
        """Add a piece of the model's thinking (saved with the answer, in the same UPDATE)."""
        self._check_open()
        if text and self._thinking_since is None:
            self._thinking_since = self._clock()
        self._thinking.add(text)
        self._maybe_flush()

    def flush(self) -> None:
        """Write what was appended since the last write, if anything."""
        # Restart the interval even if the write fails, so a full disk is not
        # retried on every token.
        self._last_flush = self._clock()
        if self._thinking.unsaved:
            self._store.update_message(
                self._message_id,
                self.text,
                thinking=self.thinking,
                thinking_ms=self.thinking_ms,
                **self._parts_if_any(),
            )
        elif self._answer.unsaved:
            self._store.update_message(self._message_id, self.text, **self._parts_if_any())
        else:
            return
        self._answer.unsaved = self._thinking.unsaved = False

    def finish(self, status: MessageStatus, *, thinking_ms: int | None = None) -> None:
        """Write the whole reply with its final status.

        ``thinking_ms`` overrides the recorder's own measure (e.g. the engine's).
        """
        if status is MessageStatus.STREAMING:
            raise ValueError("finish() needs a final status, not STREAMING")
        if thinking_ms is not None:
            self._thinking_ms, self._thinking_since = thinking_ms, None
        elif self._thinking_since is not None:
            self._thinking_ms, self._thinking_since = self.thinking_ms, None
        if self.thinking or self._thinking_ms:
            self._store.update_message(
                self._message_id,
                self.text,
                status,
                thinking=self.thinking,
                thinking_ms=self._thinking_ms,
                **self._parts_if_any(),
            )
        else:
            self._store.update_message(self._message_id, self.text, status, **self._parts_if_any())
        self._answer.unsaved = self._thinking.unsaved = False
        self._finished = True

    def _parts_if_any(self) -> dict[str, Any]:
        # Nothing leaves the column as it is: a reply without tools never writes it.
        parts = self.parts()
        return {"parts": parts} if parts else {}

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("append() after finish()")

    def _maybe_flush(self) -> None:
        if self._clock() - self._last_flush >= self._interval:
            self.flush()
