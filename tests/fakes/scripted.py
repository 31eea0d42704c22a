"""``ScriptedBackend``: a ``ChatBackend`` that plays replies written by the test.

It stands in for a loaded model (``engine.inference.local.LocalBackend`` on
llama.cpp) in the fast tier, where what is tested is Hearth around the model:
the engine thread, the window, the store. What the model itself does (templates,
tokens, the KV cache, Stop inside llama.cpp) is tested on the real starter model
in the ``model`` tier. Nothing here imports llama.cpp.

A reply is a string (streamed a word at a time) or a list of pieces: a ``str``
is a ``TextDelta``; ``TextDelta``, ``ThinkingDelta`` and ``ReplyDone`` events go
out as they are; an exception is raised at that point (a ``GenerationError``
mid-reply, say). A reply without its own ``ReplyDone`` ends with ``STOP``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from engine.errors import ContextFullError, KnownError, ModelLoadError
from engine.inference.context import reply_budget
from engine.types import (
    ContextUsage,
    Event,
    FinishReason,
    GenerationStats,
    ModelInfo,
    ReplyDone,
    SamplingParams,
    TextDelta,
    Turn,
)

if TYPE_CHECKING:  # (the fake itself needs no Qt: a CLI test can use it too)
    from app.worker import LoadRequest, OpenBackend

__all__ = ["Piece", "Reply", "ScriptedBackend", "failing_opener", "scripted_opener"]

Piece = str | Event | Exception
Reply = str | Sequence[Piece]

# How often a reply held at the gate looks at its stop event.
_GATE_POLL_S = 0.005


class ScriptedBackend:
    """Plays ``replies`` in order, one per ``stream`` call.

    ``n_ctx``: the context window, counted in words (a message's words are its
    tokens here). ``gate``: when given, every piece after a reply's first waits
    until the gate is set (or the reply's stop is), so a test can act while a
    reply is under way; clear it again to hold the next piece.

    What the backend was given is recorded: ``turns`` and ``params`` (one per
    ``stream``), ``warmed`` (one turn per ``warm``); ``closed`` once closed.
    """

    def __init__(
        self,
        replies: Sequence[Reply] = (),
        *,
        n_ctx: int = 4096,
        gate: threading.Event | None = None,
        sampling: SamplingParams | None = None,
        path: str = "scripted.gguf",
        name: str = "Scripted model",
        supports_thinking: bool = False,
        vision: bool = False,
    ) -> None:
        """``vision``: the model "can see" (its info says so; images in a turn are
        recorded like the rest of it)."""
        self._replies = list(replies)
        self._n_ctx = n_ctx
        self._gate = gate
        self._sampling = sampling or SamplingParams()
        self._info = ModelInfo(
            path=path,
            name=name,
            architecture="scripted",
            quantization="none",
            file_size=0,
            n_ctx=n_ctx,
            n_ctx_train=n_ctx,
            has_chat_template=True,
            template_source="scripted",
            supports_thinking=supports_thinking,
            vision=vision,
        )
        self.turns: list[Turn] = []
        self.params: list[SamplingParams] = []
        self.warmed: list[Turn] = []
        self.closed = False

    # -- ChatBackend ------------------------------------------------------------

    @property
    def info(self) -> ModelInfo:
        return self._info

    def default_sampling(self, thinking: bool | None) -> SamplingParams:
        return self._sampling

    def context_usage(self, turn: Turn, params: SamplingParams) -> ContextUsage:
        budget = reply_budget(params, thinking=self._thinks(turn))
        return ContextUsage(self._tokens(turn), budget, self._n_ctx)

    def stream(
        self, turn: Turn, params: SamplingParams, *, stop: threading.Event
    ) -> Iterator[Event]:
        self._check_open()
        prompt = self._tokens(turn)
        if prompt >= self._n_ctx:
            raise ContextFullError(
                f"This conversation is longer than the model's context window ({self._n_ctx} "
                "tokens). Start a new chat or drop the oldest messages."
            )
        if not self._replies:
            raise AssertionError(
                f"ScriptedBackend has no reply left for turn {len(self.turns) + 1}"
            )
        self.turns.append(turn)
        self.params.append(params)
        return self._play(self._replies.pop(0), prompt, stop)

    def warm(
        self,
        turn: Turn,
        *,
        stop: threading.Event,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> tuple[int, int]:
        self._check_open()
        self.warmed.append(turn)
        if stop.is_set():
            return 0, 0
        tokens = self._tokens(turn)
        if on_progress is not None:
            on_progress(tokens, tokens)
        return 0, tokens

    def close(self) -> None:
        self.closed = True

    # -- the play ------------------------------------------------------------------

    def _play(self, reply: Reply, prompt: int, stop: threading.Event) -> Iterator[Event]:
        pieces: Sequence[Piece] = _words(reply) if isinstance(reply, str) else reply
        written = 0
        reason = FinishReason.STOP
        for index, piece in enumerate(pieces):
            if index and self._gate is not None:
                while not (self._gate.is_set() or stop.is_set()):
                    self._gate.wait(_GATE_POLL_S)
            if stop.is_set():
                reason = FinishReason.CANCELLED
                break
            if isinstance(piece, Exception):
                raise piece
            if isinstance(piece, ReplyDone):
                yield piece
                return
            written += 1
            yield TextDelta(piece) if isinstance(piece, str) else piece
        stats = GenerationStats(
            prompt_tokens=prompt,
            completion_tokens=written,
            ttft_s=0.0,
            tokens_per_s=0.0,
            elapsed_s=0.0,
            evaluated_tokens=prompt,
            context_tokens=prompt + written,
        )
        yield ReplyDone(reason, stats)

    def _tokens(self, turn: Turn) -> int:
        return sum(len(m.content.split()) + len(m.thinking.split()) for m in turn.messages)

    def _thinks(self, turn: Turn) -> bool:
        return self._info.supports_thinking and bool(
            self._info.thinking_default if turn.thinking is None else turn.thinking
        )

    def _check_open(self) -> None:
        if self.closed:
            raise AssertionError("ScriptedBackend used after close()")


def _words(text: str) -> list[Piece]:
    """``text`` in pieces of one word each, with the space before it."""
    pieces: list[Piece] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]


def scripted_opener(backends: ScriptedBackend | Mapping[str, ScriptedBackend]) -> OpenBackend:
    """An ``OpenBackend`` that "loads" ``backends``: always the one, or the one
    for the request's path (another path fails as a missing file would).
    A backend loaded again after ``close()`` is open again."""

    def open_backend(request: LoadRequest) -> ScriptedBackend:
        if isinstance(backends, ScriptedBackend):
            backend = backends
        elif request.path in backends:
            backend = backends[request.path]
        else:
            raise ModelLoadError(f"{request.path} does not exist. Choose another model file.")
        backend.closed = False
        return backend

    return open_backend


def failing_opener(error: KnownError) -> OpenBackend:
    """An ``OpenBackend`` whose every load fails with ``error`` (a bad file, no memory)."""

    def open_backend(request: LoadRequest) -> ScriptedBackend:
        raise error

    return open_backend
