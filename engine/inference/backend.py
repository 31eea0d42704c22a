"""The engine boundary: what a chat backend is, for the window and the CLI alike.

A backend takes a ``Turn`` (messages made of parts, thinking and sampling
choices) and yields events: ``ThinkingDelta`` and ``TextDelta`` pieces, then
exactly one ``ReplyDone``. The local llama.cpp session (``engine.inference.local``)
is the first implementation; a remote OpenAI-compatible server and a scripted
backend for tests are others. Nothing above this module asks what kind of
backend it has.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

from engine.types import ContextUsage, Event, ModelInfo, SamplingParams, Turn

__all__ = ["ChatBackend", "sampling_for"]


class ChatBackend(Protocol):
    """A model that answers turns. Used from one thread; others only set ``stop``."""

    @property
    def info(self) -> ModelInfo:
        """The model, as the status bar and the About box name it."""
        ...

    def default_sampling(self, thinking: bool | None) -> SamplingParams:
        """The model's recommended sampling with thinking on, off, or (None) its default."""
        ...

    def context_usage(self, turn: Turn, params: SamplingParams) -> ContextUsage:
        """How much of the context window ``turn``'s prompt plus its reply budget needs."""
        ...

    def stream(
        self, turn: Turn, params: SamplingParams, *, stop: threading.Event
    ) -> Iterator[Event]:
        """The reply to ``turn``. Checks the prompt first (raising ``KnownError``s with
        a sentence), then yields events; ends early, with ``CANCELLED``, once ``stop`` is set."""
        ...

    def warm(
        self,
        turn: Turn,
        *,
        stop: threading.Event,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> tuple[int, int]:
        """Read ``turn``'s conversation ahead of its next reply; (tokens reused, tokens read)."""
        ...

    def close(self) -> None:
        """Free the model. The backend is not used afterwards."""
        ...


def sampling_for(backend: ChatBackend, turn: Turn) -> SamplingParams:
    """The sampling ``turn`` asks for: exactly its own, or the model's defaults with
    the person's overrides on top."""
    if turn.sampling is not None:
        return turn.sampling
    # Field names checked at run time (replace raises TypeError on an unknown one).
    overrides: dict[str, Any] = dict(turn.overrides)
    return replace(backend.default_sampling(turn.thinking), **overrides)
