"""The local backend: a GGUF file run in this process by llama.cpp.

``LocalBackend`` is the ``ChatBackend`` (``engine.inference.backend``) that the
window and the command line get for a model file. It reads a ``Turn`` into what
``ChatSession`` needs: the messages (their parts become template content in
``engine.inference.chat_template.template_message``), the thinking switch, a
cut-off reply to continue, and the conversation's cache key. What a catalog
knows about the file (its name for people, its makers' sampling presets) is
handed in by whoever opens it: inference does not read the catalog.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from engine.inference.session import ChatSession
from engine.types import ContextUsage, EngineOptions, Event, ModelInfo, SamplingParams, Turn

__all__ = ["LocalBackend"]


class LocalBackend:
    """A ``ChatBackend`` on one loaded GGUF model. Not thread-safe: one thread
    owns it for its whole life; other threads only set a request's ``stop``."""

    def __init__(
        self,
        path: str | Path,
        options: EngineOptions,
        *,
        name: str | None = None,
        sampling_presets: Mapping[str, Mapping[str, float]] | None = None,
        extra: Mapping[str, str] | None = None,
        projector: str | Path | None = None,
    ) -> None:
        """Load ``path`` (``KnownError`` with a sentence when it cannot be).
        ``name``: what people call the model (a GGUF's own name is often a build
        tag); ``sampling_presets``: see ``ChatSession``; ``extra``: added to
        ``info.extra`` (how the load went: ``device_note``); ``projector``: the
        model's vision file, which lets it see images (``info.vision``)."""
        self._session = ChatSession(
            path, options, sampling_presets=sampling_presets, projector=projector
        )
        info = self._session.info
        if name:
            info = replace(info, name=name)
        if extra:
            info = replace(info, extra={**info.extra, **extra})
        self._info = info

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def session(self) -> ChatSession:
        """The llama.cpp session underneath, for benchmarks and engine tests."""
        return self._session

    def default_sampling(self, thinking: bool | None) -> SamplingParams:
        return self._session.default_sampling(thinking)

    def context_usage(self, turn: Turn, params: SamplingParams) -> ContextUsage:
        return self._session.context_usage(
            turn.messages,
            params,
            thinking=turn.thinking,
            continue_reply=turn.continue_reply,
            tools=turn.tools,
        )

    def stream(
        self, turn: Turn, params: SamplingParams, *, stop: threading.Event
    ) -> Iterator[Event]:
        return self._session.stream(
            turn.messages,
            params,
            stop=stop,
            thinking=turn.thinking,
            continue_reply=turn.continue_reply,
            cache_key=turn.cache_key,
            tools=turn.tools,
        )

    def warm(
        self,
        turn: Turn,
        *,
        stop: threading.Event,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> tuple[int, int]:
        return self._session.warm(
            turn.messages,
            thinking=turn.thinking,
            stop=stop,
            cache_key=turn.cache_key,
            on_progress=on_progress,
            tools=turn.tools,
        )

    def close(self) -> None:
        self._session.close()
