"""Split a streamed reply into thinking and answer, as it streams.

Reasoning models write their thinking between ``<think>`` and ``</think>`` and
the answer after it. Two shapes occur:

- the prompt opened the block: Qwen3.5's template ends the prompt with
  ``<think>\\n`` when thinking is on (DeepSeek-R1 distills always do), so the
  model starts *inside* the thinking and only ``</think>`` marks the answer;
- the model opens it: the reply itself starts with ``<think>``.

Where the vocabulary has the tags as single tokens we match token ids (a control
token renders as no text at all); otherwise we match text, holding back at most
the few characters that could be the start of a tag split across tokens. The
thinking's surrounding whitespace and the blank lines before the answer are
dropped, as every chat UI does. Per token this costs one ``rfind`` on a few
characters while thinking, and nothing once the answer has started (the session
stops calling the splitter then).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum

from engine.errors import KnownError

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "ThinkingSplitter",
    "prompt_opens_thinking",
    "thinking_support",
]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class _Mode(Enum):
    START = 0  # nothing seen yet: the reply may open a think block
    THINKING = 1
    ANSWER = 2  # after the thinking, or never thinking


class ThinkingSplitter:
    """Feed it each generated token and its text; it returns (thinking, answer) pieces.

    ``open_id``/``close_id`` are the tags' token ids when the vocabulary has them
    as single tokens, else ``None``. ``start_in_thinking`` is True when the prompt
    already opened the block. ``resumed``: the prompt ends with part of a reply
    (Continue), so the text goes on exactly as it comes: inside the thinking if
    ``start_in_thinking``, else in the answer.
    """

    __slots__ = ("_answer_started", "_close_id", "_mode", "_open_id", "_pending", "_think_started")

    def __init__(
        self,
        *,
        start_in_thinking: bool,
        open_id: int | None = None,
        close_id: int | None = None,
        resumed: bool = False,
    ) -> None:
        self._open_id = open_id
        self._close_id = close_id
        self._mode = _Mode.THINKING if start_in_thinking else _Mode.START
        if resumed and not start_in_thinking:
            self._mode = _Mode.ANSWER
        self._pending = ""  # text held back: a possible tag start, or whitespace
        # Leading whitespace of the thinking is dropped, and so are the blank lines
        # before the answer; not in a continued reply, where they join two words.
        self._think_started = resumed
        self._answer_started = resumed and not start_in_thinking

    @property
    def thinking(self) -> bool:
        """True while the reply is inside the think block."""
        return self._mode is _Mode.THINKING

    @property
    def done(self) -> bool:
        """True once the answer has begun: every later piece is answer text as is."""
        return self._mode is _Mode.ANSWER and self._answer_started

    def feed(self, token: int, text: str) -> tuple[str, str]:
        """The (thinking, answer) text that ``token`` makes final; either may be ""."""
        mode = self._mode
        if mode is _Mode.ANSWER:
            return "", self._answer(text)
        if mode is _Mode.THINKING:
            if token == self._close_id:
                return self._end_thinking(""), ""
            return self._think(text)
        # START: only an opening tag (after optional whitespace) makes this thinking.
        if token == self._open_id and not self._pending.strip():
            self._mode = _Mode.THINKING
            self._pending = ""
            return "", ""
        pending = self._pending + text
        head = pending.lstrip()
        if head.startswith(THINK_OPEN):
            self._mode = _Mode.THINKING
            self._pending = ""
            return self._think(head[len(THINK_OPEN) :])
        if THINK_OPEN.startswith(head):  # still could be the tag (or only whitespace)
            self._pending = pending
            return "", ""
        self._mode = _Mode.ANSWER
        self._answer_started = True  # no think block: the answer is kept exactly
        self._pending = ""
        return "", pending

    def close_thinking(self) -> str:
        """End the think block now (the thinking budget ran out); returns held thinking."""
        if self._mode is not _Mode.THINKING:
            return ""
        return self._end_thinking("")

    def flush(self) -> tuple[str, str]:
        """Whatever is held back when the reply ends."""
        pending, self._pending = self._pending, ""
        if self._mode is _Mode.THINKING:
            return pending.rstrip(), ""
        if self._mode is _Mode.START:
            return "", pending
        return "", ""

    # -- internals -------------------------------------------------------------

    def _think(self, text: str) -> tuple[str, str]:
        buf = self._pending + text
        end = buf.find(THINK_CLOSE)
        if end >= 0:  # the tag spelled out in text, possibly across tokens
            thought = self._end_thinking(buf[:end], held=False)
            return thought, self._answer(buf[end + len(THINK_CLOSE) :])
        if not self._think_started:
            buf = buf.lstrip()
            if not buf:
                self._pending = ""
                return "", ""
            self._think_started = True
        # Hold back a possible start of "</think>" and the whitespace before it:
        # the thinking's trailing blank lines are not shown.
        cut = buf.rfind("<", max(0, len(buf) - len(THINK_CLOSE) + 1))
        if cut < 0 or not THINK_CLOSE.startswith(buf[cut:]):
            cut = len(buf)
        shown = buf[:cut].rstrip()
        self._pending = buf[len(shown) :]
        return shown, ""

    def _end_thinking(self, text: str, *, held: bool = True) -> str:
        thought = ((self._pending if held else "") + text).rstrip()
        if not self._think_started:
            thought = thought.lstrip()
        self._pending = ""
        self._mode = _Mode.ANSWER
        return thought

    def _answer(self, text: str) -> str:
        if self._answer_started:
            return text
        text = text.lstrip()
        if text:
            self._answer_started = True
        return text


def prompt_opens_thinking(prompt: str) -> bool:
    """True when the rendered prompt ends inside an open think block."""
    return prompt.rstrip().endswith(THINK_OPEN)


def thinking_support(
    template: str, render: Callable[[Mapping[str, object]], str]
) -> tuple[bool, bool]:
    """(supports_thinking, thinking_default) for a chat template.

    A template supports thinking when it has an ``enable_thinking`` switch. Its
    default is what it renders when the switch is left undefined, compared with
    the two explicit renderings (Qwen3.5 thinks by default, Qwen3 too).
    ``render`` renders a fixed probe conversation with the given template
    variables; if it fails (``GenerationError``) the template is taken as not thinking.
    """
    if "enable_thinking" not in template:
        return False, False
    try:
        unset = render({})
        on = render({"enable_thinking": True})
        off = render({"enable_thinking": False})
    except KnownError:
        return False, False
    if on == off:  # the switch exists but changes nothing
        return False, False
    return True, unset == on
