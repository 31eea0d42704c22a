"""The engine thread: one long-lived QThread that owns the single ChatSession.

Requests arrive as queued signals (``load_requested``, ``generate_requested``)
and results leave as events. Stop is a ``threading.Event`` set directly from
the GUI thread, because while a reply streams this thread is busy and would
only see a queued "stop" signal after the reply had finished.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Signal, Slot

from engine.errors import ContextFullError, KnownError
from engine.inference.context import drop_oldest_turns
from engine.types import (
    ContextUsage,
    EngineOptions,
    Message,
    ModelInfo,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
)

log = logging.getLogger(__name__)

# Deltas cross threads at most this often (the view repaints on its own timer).
DELTA_INTERVAL_S = 1 / 60
STATS_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """What one reply needs. ``params`` set: use exactly these (tests, CLI);
    otherwise the model's defaults with ``overrides`` applied."""

    conversation: list[Message]
    params: SamplingParams | None = None
    overrides: dict[str, float | int] = field(default_factory=dict)
    thinking: bool | None = None
    # Names the conversation, so that switching chats and back keeps its state.
    conversation_id: int | None = None
    # The last message is a cut-off reply: carry on writing it.
    continue_reply: bool = False


class _DeltaBatch:
    """Coalesces deltas so at most ~60 signals a second cross to the GUI thread,
    and measures tokens/s for the status bar once a second."""

    def __init__(self, worker: EngineWorker, request_id: int) -> None:
        self.worker = worker
        self.request_id = request_id
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.pieces = 0
        self.started = self.last_emit = self.last_stats = time.monotonic()

    def add(self, text: str, *, thinking: bool) -> None:
        (self.thinking if thinking else self.text).append(text)
        self.pieces += 1
        now = time.monotonic()
        if now - self.last_emit >= DELTA_INTERVAL_S:
            self.flush()
            self.last_emit = now
        if now - self.last_stats >= STATS_INTERVAL_S:
            self.worker.speed_measured.emit(self.request_id, self.pieces / (now - self.started))
            self.worker.tokens_streamed.emit(self.request_id, self.pieces)
            self.last_stats = now

    def flush(self) -> None:
        if self.thinking:
            self.worker.thinking_ready.emit(self.request_id, "".join(self.thinking))
            self.thinking.clear()
        if self.text:
            self.worker.delta_ready.emit(self.request_id, "".join(self.text))
            self.text.clear()


class EngineWorker(QObject):
    model_loading = Signal(str)  # path
    model_loaded = Signal(object)  # ModelInfo
    model_load_failed = Signal(str)  # sentence
    delta_ready = Signal(int, str)  # request id, text
    thinking_ready = Signal(int, str)  # request id, thinking text
    speed_measured = Signal(int, float)  # request id, tokens/s so far
    tokens_streamed = Signal(int, int)  # request id, tokens of the reply so far (once a second)
    prompt_measured = Signal(int, object)  # request id, ContextUsage of its prompt
    reply_finished = Signal(int, object)  # request id, ReplyDone
    reply_failed = Signal(int, str)  # request id, sentence
    # The reply was not started: the conversation leaves it no room. Request id,
    # ContextUsage, how many messages (after the system prompt) would have to go.
    context_exceeded = Signal(int, object, int)
    usage_measured = Signal(int, object)  # conversation id, ContextUsage
    warm_progress = Signal(int, int)  # tokens read so far, of how many
    warm_finished = Signal(int, int)  # tokens reused, tokens read (0, 0: nothing to do)

    def __init__(self, stop_event: threading.Event, models_dir: Path) -> None:
        super().__init__()
        self._usage: ContextUsage | None = None  # the last reply's prompt, for the meter
        self._stop = stop_event
        self._models_dir = models_dir
        self._session: object | None = None  # engine.inference.session.ChatSession, imported lazily
        self._supports_thinking_kw = False

    @Slot(str, object)
    def load(self, path: str, options: EngineOptions) -> None:
        """Load ``path``; an empty path means "the starter model" (installing it first)."""
        self.model_loading.emit(path)
        self._close_session()
        try:
            from engine.inference.session import ChatSession
            from engine.models.catalog import catalog_entry_for, install_starter_model

            model_path = Path(path) if path else install_starter_model(self._models_dir)
            entry = catalog_entry_for(model_path)
            presets = entry.sampling_presets() if entry is not None else None
            session = ChatSession(model_path, options, sampling_presets=presets)
        except KnownError as exc:
            log.warning("model load failed: %s", exc, exc_info=True)
            self.model_load_failed.emit(exc.message)
            return
        except Exception:
            log.exception("model load crashed")
            self.model_load_failed.emit(
                "Hearth could not load the model because of an internal error. "
                "The details are in the log file."
            )
            return
        self._session = session
        self._supports_thinking_kw = "thinking" in inspect.signature(session.stream).parameters
        info: ModelInfo = session.info
        if entry is not None:  # GGUF names are often build tags; the catalog's is for people
            info = replace(info, name=entry.name)
        log.info("loaded %s (%s, %s)", info.name, info.architecture, info.quantization)
        self.model_loaded.emit(info)

    def set_models_dir(self, folder: Path) -> None:
        """Where the starter model is installed from now on (the folder was moved).
        Read only when a load starts, on this thread; a Path is replaced atomically."""
        self._models_dir = folder

    @Slot(int, object)
    def generate(self, request_id: int, request: ReplyRequest) -> None:
        session = self._session
        if session is None:
            self.reply_failed.emit(
                request_id, "No model is loaded yet. Wait for it to load, then send again."
            )
            return
        batch = _DeltaBatch(self, request_id)
        try:
            params = request.params or self._params_for(session, request)
            kwargs: dict[str, object] = {"stop": self._stop}
            if request.thinking is not None and self._supports_thinking_kw:
                kwargs["thinking"] = request.thinking
            if request.conversation_id is not None:
                kwargs["cache_key"] = request.conversation_id
            if request.continue_reply:
                kwargs["continue_reply"] = True
            dropped = self._must_drop(session, request, params)
            if dropped:
                self.context_exceeded.emit(request_id, dropped[0], dropped[1])
                return
            if self._usage is not None:  # the meter grows from this as the reply streams
                self.prompt_measured.emit(request_id, self._usage)
            for event in session.stream(request.conversation, params, **kwargs):  # type: ignore[attr-defined]
                if isinstance(event, TextDelta):
                    batch.add(event.text, thinking=False)
                elif isinstance(event, ThinkingDelta):
                    batch.add(event.text, thinking=True)
                elif isinstance(event, ReplyDone):
                    batch.flush()
                    self.reply_finished.emit(request_id, event)
        except KnownError as exc:
            log.warning("generation failed: %s", exc, exc_info=True)
            batch.flush()
            self.reply_failed.emit(request_id, exc.message)
        except Exception:
            log.exception("generation crashed")
            batch.flush()
            self.reply_failed.emit(
                request_id,
                "The reply stopped because of an internal error. What was written so far is "
                "kept; the details are in the log file.",
            )

    def _must_drop(
        self, session: object, request: ReplyRequest, params: SamplingParams
    ) -> tuple[ContextUsage, int] | None:
        """(usage, messages to drop) when the conversation leaves the reply no room
        and dropping its oldest turns would; None to go ahead (if even the last
        turn alone is too long, the session says so in a sentence)."""
        self._usage = None
        usage_of = getattr(session, "context_usage", None)
        if usage_of is None:
            return None

        def usage(messages: list[Message]) -> ContextUsage:
            return usage_of(  # type: ignore[no-any-return]
                messages, params, thinking=request.thinking, continue_reply=request.continue_reply
            )

        now = self._usage = usage(request.conversation)
        if now.has_room:
            return None
        try:
            _, dropped = drop_oldest_turns(request.conversation, lambda m: usage(list(m)).has_room)
        except ContextFullError:
            return None
        return (now, len(dropped)) if dropped else None

    @Slot(int, object)
    def measure(self, conversation_id: int, request: ReplyRequest) -> None:
        """How full ``request``'s conversation makes the context window (for the meter)."""
        session = self._session
        usage_of = getattr(session, "context_usage", None)
        if usage_of is None:
            return
        try:
            params = request.params or self._params_for(session, request)
            usage = usage_of(request.conversation, params, thinking=request.thinking)
        except KnownError as exc:  # e.g. the template rejects it: the meter stays as it was
            log.info("could not measure the context use: %s", exc)
            return
        self.usage_measured.emit(conversation_id, usage)

    @Slot(object)
    def warm(self, request: ReplyRequest) -> None:
        """Read ``request``'s conversation into the model before its next turn."""
        warm = getattr(self._session, "warm", None)
        if warm is None:
            self.warm_finished.emit(0, 0)
            return
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= STATS_INTERVAL_S / 4 or done >= total:
                last[0] = now
                self.warm_progress.emit(done, total)

        try:
            reused, evaluated = warm(
                request.conversation,
                thinking=request.thinking,
                stop=self._stop,
                cache_key=request.conversation_id,
                on_progress=progress,
            )
        except KnownError as exc:  # e.g. longer than the context: the next turn says so
            log.info("did not read the conversation ahead: %s", exc)
            reused = evaluated = 0
        except Exception:
            log.exception("reading the conversation ahead crashed")
            reused = evaluated = 0
        self.warm_finished.emit(reused, evaluated)

    @staticmethod
    def _params_for(session: object, request: ReplyRequest) -> SamplingParams:
        """The model's recommended sampling, with what the person set on top."""
        defaults = getattr(session, "default_sampling", None)
        # None = the model's default for thinking; the preset must match the template.
        base = defaults(request.thinking) if callable(defaults) else SamplingParams()
        return replace(base, **request.overrides)

    @Slot()
    def shutdown(self) -> None:
        self._close_session()

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()  # type: ignore[attr-defined]
            self._session = None


class EngineThread:
    """Starts the worker on its own QThread and stops it cleanly."""

    live: ClassVar[weakref.WeakSet[EngineThread]] = weakref.WeakSet()  # tests check for leaks

    def __init__(self, models_dir: Path) -> None:
        self.stop_event = threading.Event()
        self.thread = QThread()
        self.thread.setObjectName("engine")
        self.worker = EngineWorker(self.stop_event, models_dir)
        self.worker.moveToThread(self.thread)
        self.thread.start()
        EngineThread.live.add(self)

    def close(self) -> None:
        if not self.thread.isRunning():
            return
        self.stop_event.set()
        # Runs on the engine thread after any reply in progress has stopped.
        QMetaObject.invokeMethod(
            self.worker, "shutdown", Qt.ConnectionType.BlockingQueuedConnection
        )
        self.thread.quit()
        self.thread.wait()
        EngineThread.live.discard(self)
