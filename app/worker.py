"""The engine thread: one long-lived QThread that owns the single chat backend.

Requests arrive as queued slots (``load``, ``generate``, ``measure``, ``warm``)
and results leave as signals that carry the request's id. Each request comes
with its own cancel ``threading.Event``, created on the GUI side: it is set
directly from the GUI thread, because while a reply streams this thread is busy
and would only see a queued "stop" after the reply had finished. Stop sets only
the event of the request it names; this thread never clears one.

The worker knows backends only as ``ChatBackend`` (engine.inference.backend);
``open_local`` is the default way to get one, and tests pass their own.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import ClassVar

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Signal, Slot

from app.backends import LoadRequest, OpenBackend, open_local, with_remote
from app.tool_questions import PermissionQuestion
from app.tools_service import ToolsService
from engine.errors import ContextFullError, KnownError
from engine.inference.backend import ChatBackend, sampling_for
from engine.inference.context import drop_oldest_turns
from engine.tools.loop import ToolLoop
from engine.tools.permissions import Answer
from engine.types import (
    Event,
    Message,
    PromptProgress,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
    ToolCallEvent,
    ToolCallPart,
    ToolResultEvent,
    ToolSpec,
    Turn,
)

__all__ = [
    "EngineThread",
    "EngineWorker",
    "LoadRequest",
    "OpenBackend",
    "open_local",
    "with_remote",
]

log = logging.getLogger(__name__)

# Deltas cross threads at most this often (the view repaints on its own timer).
DELTA_INTERVAL_S = 1 / 60
STATS_INTERVAL_S = 1.0


class _Cancels:
    """The cancel events of requests handed out and not yet finished, so that
    ``EngineThread.cancel_all`` and ``close`` reach a request still queued behind
    another. Shared by the GUI thread and the engine thread, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Weak: an event whose request never reached the worker is not kept.
        self._live: weakref.WeakSet[threading.Event] = weakref.WeakSet()
        self._closed = False

    def new(self) -> threading.Event:
        event = threading.Event()
        with self._lock:
            if self._closed:
                event.set()
            self._live.add(event)
        return event

    @contextmanager
    def running(self, event: threading.Event) -> Iterator[None]:
        """While the worker runs the request of ``event`` (which may have been
        made elsewhere: it is then tracked from now on)."""
        with self._lock:
            if self._closed:
                event.set()
            self._live.add(event)
        try:
            yield
        finally:
            with self._lock:
                self._live.discard(event)

    def cancel_all(self, *, closing: bool = False) -> None:
        with self._lock:
            self._closed = self._closed or closing
            for event in self._live:
                event.set()


class _DeltaBatch:
    """Coalesces deltas so at most ~60 signals a second cross to the GUI thread,
    and measures tokens/s for the status bar once a second."""

    def __init__(self, worker: EngineWorker, request_id: int) -> None:
        self.worker = worker
        self.request_id = request_id
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.pieces = 0
        self.started = self.last_stats = time.monotonic()
        # The first piece goes out at once: a slow model's first token is not held
        # back until its second.
        self.last_emit = float("-inf")

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
    """Lives on the engine thread; owns the backend from load to shutdown."""

    model_loading = Signal(str)  # path
    model_loaded = Signal(object)  # ModelInfo (catalog name already applied)
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
    warm_progress = Signal(int, int, int)  # request id, tokens read so far, of how many
    image_progress = Signal(int, int, int)  # request id, images read, of how many (issue 13)
    warm_finished = Signal(int, int, int)  # request id, tokens reused, tokens read (0, 0: none)
    job_finished = Signal(int)  # request id of a run_job
    # Tools (issue 16): a call made, its result, a question for the person (answered
    # on the question itself, from the GUI thread), servers that would not start.
    tool_called = Signal(int, object)  # request id, ToolCallPart
    tool_answered = Signal(int, object)  # request id, ToolResultPart
    permission_requested = Signal(int, object)  # request id, PermissionQuestion
    tools_unavailable = Signal(int, str)  # request id, sentence

    def __init__(self, open_backend: OpenBackend | None = None) -> None:
        super().__init__()
        self._open = open_backend or with_remote(open_local)
        self._backend: ChatBackend | None = None
        # Set once from the GUI thread before any reply (EngineClient.set_tools).
        self.tools: ToolsService | None = None
        # Thread-safe; EngineThread cancels through it from the GUI thread.
        self.cancels = _Cancels()

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        """Load ``request``'s model in place of the one loaded now."""
        self.model_loading.emit(request.path)
        self._close_backend()
        try:
            backend = self._open(request)
        except KnownError as exc:
            log.warning("model load failed: %s", exc, exc_info=True)
            self.model_load_failed.emit(exc.message)
            return
        except Exception:
            log.exception("model load crashed")
            self.model_load_failed.emit(
                "Hearth could not load the model because of an internal error. Try loading "
                "it again or choose another model; the details are in the log file."
            )
            return
        self._backend = backend
        info = backend.info
        log.info("loaded %s (%s, %s)", info.name, info.architecture, info.quantization)
        self.model_loaded.emit(info)

    @Slot(int, object, object)
    def generate(self, request_id: int, turn: Turn, cancel: threading.Event) -> None:
        """Stream the reply to ``turn`` until it ends or ``cancel`` is set."""
        backend = self._backend
        if backend is None:
            self.reply_failed.emit(
                request_id, "No model is loaded yet. Wait for it to load, then send again."
            )
            return
        batch = _DeltaBatch(self, request_id)
        try:
            with self.cancels.running(cancel):
                params = sampling_for(backend, turn)
                # Tools first: the prompt that is measured is the one that offers them.
                turn, events = self._with_tools(request_id, backend, turn, params, cancel, batch)
                usage = backend.context_usage(turn, params)
                if not usage.has_room:
                    dropped = _messages_to_drop(backend, turn, params)
                    if dropped:
                        self.context_exceeded.emit(request_id, usage, dropped)
                        return
                # The meter grows from this as the reply streams.
                self.prompt_measured.emit(request_id, usage)
                for event in events():
                    if isinstance(event, TextDelta):
                        batch.add(event.text, thinking=False)
                    elif isinstance(event, ThinkingDelta):
                        batch.add(event.text, thinking=True)
                    elif isinstance(event, ToolCallEvent):
                        batch.flush()  # the text before the call is shown before it
                        self.tool_called.emit(request_id, event.call)
                    elif isinstance(event, ToolResultEvent):
                        self.tool_answered.emit(request_id, event.result)
                    elif isinstance(event, ReplyDone):
                        batch.flush()
                        self.reply_finished.emit(request_id, event)
                    elif isinstance(event, PromptProgress):
                        self.image_progress.emit(request_id, event.done, event.total)
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
                "kept; send again to retry. The details are in the log file.",
            )

    def _with_tools(
        self,
        request_id: int,
        backend: ChatBackend,
        turn: Turn,
        params: SamplingParams,
        cancel: threading.Event,
        batch: _DeltaBatch,
    ) -> tuple[Turn, Callable[[], Iterator[Event]]]:
        """The turn as the model will read it (with the tools on now, their servers
        started) and how to get the reply's events: through the tool loop if any."""
        tools = self.tools

        def plain() -> Iterator[Event]:
            return backend.stream(turn, params, stop=cancel)

        if tools is None:
            return turn, plain

        def ask(call: ToolCallPart, spec: ToolSpec | None, stop: threading.Event) -> Answer:
            batch.flush()
            question = PermissionQuestion(call, spec)
            self.permission_requested.emit(request_id, question)
            return question.wait(stop)

        prepared = tools.prepare(turn, ask)
        if prepared is None:
            return turn, plain
        for problem in prepared.problems:
            self.tools_unavailable.emit(request_id, problem)
        loop = ToolLoop(
            lambda t: backend.stream(t, params, stop=cancel),
            prepared.gate,
            stop=cancel,
            max_rounds=prepared.max_rounds,
        )
        return prepared.turn, lambda: loop.run(prepared.turn)

    @Slot(int, object)
    def measure(self, conversation_id: int, turn: Turn) -> None:
        """How full ``turn`` makes the context window (for the meter)."""
        backend = self._backend
        if backend is None:
            return
        try:
            if self.tools is not None:  # the prompt offers the tools on now
                turn = self.tools.offered(turn)
            usage = backend.context_usage(turn, sampling_for(backend, turn))
        except KnownError as exc:  # e.g. the template rejects it: the meter stays as it was
            log.info("could not measure the context use: %s", exc)
            return
        self.usage_measured.emit(conversation_id, usage)

    @Slot(int, object, object)
    def warm(self, request_id: int, turn: Turn, cancel: threading.Event) -> None:
        """Read ``turn``'s conversation into the model before its next reply."""
        backend = self._backend
        reused = evaluated = 0
        if backend is None:
            self.warm_finished.emit(request_id, reused, evaluated)
            return
        last = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= STATS_INTERVAL_S / 4 or done >= total:
                last = now
                self.warm_progress.emit(request_id, done, total)

        try:
            with self.cancels.running(cancel):
                if self.tools is not None:  # the next reply's prompt starts with the tools
                    turn = self.tools.offered(turn)
                reused, evaluated = backend.warm(turn, stop=cancel, on_progress=progress)
        except KnownError as exc:  # e.g. longer than the context: the next turn says so
            log.info("did not read the conversation ahead: %s", exc)
        except Exception:
            log.exception("reading the conversation ahead crashed")
        self.warm_finished.emit(request_id, reused, evaluated)

    @Slot(int, object, object)
    def run_job(
        self, request_id: int, job: Callable[[ChatBackend | None], None], cancel: threading.Event
    ) -> None:
        """Run ``job`` with the backend (None: no model loaded), in turn with the
        window's own requests: the local API's replies (app/serving) come this way.
        The job never raises; ``cancel`` is set by close/cancel_all like any request's."""
        try:
            with self.cancels.running(cancel):
                job(self._backend)
        except Exception:
            log.exception("an engine job crashed")
        self.job_finished.emit(request_id)

    @Slot()
    def shutdown(self) -> None:
        self._close_backend()

    def _close_backend(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _messages_to_drop(backend: ChatBackend, turn: Turn, params: SamplingParams) -> int:
    """How many of ``turn``'s oldest messages must go to leave its reply room;
    0 when even its last message alone is too long (the reply then fails with
    the backend's sentence for that)."""

    def has_room(messages: Sequence[Message]) -> bool:
        shorter = replace(turn, messages=tuple(messages))
        return backend.context_usage(shorter, params).has_room

    try:
        _, dropped = drop_oldest_turns(turn.messages, has_room)
    except ContextFullError:
        return 0
    return len(dropped)


class EngineThread:
    """Starts the worker on its own QThread and stops it cleanly."""

    live: ClassVar[weakref.WeakSet[EngineThread]] = weakref.WeakSet()  # tests check for leaks

    def __init__(self, open_backend: OpenBackend | None = None) -> None:
        self.thread = QThread()
        self.thread.setObjectName("engine")
        self.worker = EngineWorker(open_backend)
        self._cancels = self.worker.cancels  # read here, before the worker changes thread
        self.worker.moveToThread(self.thread)
        self.thread.start()
        EngineThread.live.add(self)

    def cancel_event(self) -> threading.Event:
        """A new request's cancel event: set it to stop that request alone.
        ``cancel_all`` and ``close`` set it too until the request has finished."""
        return self._cancels.new()

    def cancel_all(self) -> None:
        """Cancel every request handed out and not finished (the running one too)."""
        self._cancels.cancel_all()

    def close(self) -> None:
        """Cancel whatever runs or waits, free the model, stop the thread."""
        if not self.thread.isRunning():
            return
        self._cancels.cancel_all(closing=True)
        # Runs on the engine thread after the requests queued before it, each of
        # which now ends at once (its event is set).
        QMetaObject.invokeMethod(
            self.worker, "shutdown", Qt.ConnectionType.BlockingQueuedConnection
        )
        self.thread.quit()
        self.thread.wait()
        EngineThread.live.discard(self)
