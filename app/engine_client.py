"""EngineClient: the GUI thread's one handle on the engine thread.

It is the only object that knows the worker's signals. Requests go out as typed
calls (``load``, ``generate``, ``measure``, ``warm``, ``stop``); events come back
as this object's own signals, on the GUI thread. Each request gets its own
cancel ``threading.Event`` (created here, with the request), so Stop cancels
exactly what it names, never a warm-up queued before it (R7).

It is also the one owner of what model is loaded: ``model_info``, ``model_path``,
``options`` and ``models_dir`` are written here and nowhere else, and
``model_changed`` says when they change (R5: everyone listens to this one
signal, after the client has updated itself).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from app.backends import RemoteTarget
from app.tools_service import ToolsService
from app.worker import EngineThread, LoadRequest, OpenBackend
from engine.inference.backend import ChatBackend
from engine.types import ContextUsage, EngineOptions, ModelInfo, ReplyDone, Turn

log = logging.getLogger(__name__)


class EngineClient(QObject):
    # --- events, on the GUI thread ---
    model_loading = Signal(str)  # path ("" = the starter model)
    # A load ended: (ModelInfo, "") when loaded, (None, sentence) when it failed.
    model_changed = Signal(object, str)
    delta_ready = Signal(int, str)  # request id, text
    thinking_ready = Signal(int, str)  # request id, thinking text
    speed_measured = Signal(int, float)  # request id, tokens/s so far
    tokens_streamed = Signal(int, int)  # request id, reply tokens so far
    prompt_measured = Signal(int, object)  # request id, ContextUsage
    reply_finished = Signal(int, object)  # request id, ReplyDone
    reply_failed = Signal(int, str)  # request id, sentence
    context_exceeded = Signal(int, object, int)  # request id, ContextUsage, messages to drop
    usage_measured = Signal(int, object)  # conversation id, ContextUsage
    warm_progress = Signal(int, int, int)  # request id, tokens read, of how many
    image_progress = Signal(int, int, int)  # request id, images read, of how many
    warm_finished = Signal(int, int, int)  # request id, tokens reused, tokens read
    tool_called = Signal(int, object)  # request id, ToolCallPart
    tool_answered = Signal(int, object)  # request id, ToolResultPart
    permission_requested = Signal(int, object)  # request id, PermissionQuestion
    tools_unavailable = Signal(int, str)  # request id, sentence

    # --- requests to the worker (queued: it lives on the engine thread) ---
    _load_requested = Signal(object)  # LoadRequest
    _generate_requested = Signal(int, object, object)  # request id, Turn, cancel Event
    _measure_requested = Signal(int, object)  # conversation id, Turn
    _warm_requested = Signal(int, object, object)  # request id, Turn, cancel Event
    _job_requested = Signal(int, object, object)  # request id, job, cancel Event

    def __init__(
        self,
        models_dir: Path,
        *,
        options: EngineOptions | None = None,
        open_backend: OpenBackend | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._models_dir = models_dir
        self._options = options or EngineOptions()
        self._path = ""  # the file asked for; "" = the starter model
        self._remote: RemoteTarget | None = None  # a model on a server instead of the file
        self._info: ModelInfo | None = None
        self._loading = False
        self._next_id = 0
        self._cancels: dict[int, threading.Event] = {}  # requests handed out, not ended
        self._closed = False
        self._thread = EngineThread() if open_backend is None else EngineThread(open_backend)
        worker = self._thread.worker
        self._load_requested.connect(worker.load)
        self._generate_requested.connect(worker.generate)
        self._measure_requested.connect(worker.measure)
        self._warm_requested.connect(worker.warm)
        self._job_requested.connect(worker.run_job)
        worker.job_finished.connect(self._ended)
        # Bookkeeping first (slots), then the event goes on to everyone else. (The
        # worker's own model_loading is not needed: load() says so at once, so the
        # window never shows a state between "failed" and "loading the next one".)
        worker.model_loaded.connect(self._on_model_loaded)
        worker.model_load_failed.connect(self._on_model_load_failed)
        worker.reply_finished.connect(self._on_reply_finished)
        worker.reply_failed.connect(self._on_reply_failed)
        worker.context_exceeded.connect(self._on_context_exceeded)
        worker.warm_finished.connect(self._on_warm_finished)
        # Pass-through (signal to signal: queued onto this object's thread, in order).
        worker.delta_ready.connect(self.delta_ready)
        worker.thinking_ready.connect(self.thinking_ready)
        worker.speed_measured.connect(self.speed_measured)
        worker.tokens_streamed.connect(self.tokens_streamed)
        worker.prompt_measured.connect(self.prompt_measured)
        worker.usage_measured.connect(self.usage_measured)
        worker.warm_progress.connect(self.warm_progress)
        worker.image_progress.connect(self.image_progress)
        worker.tool_called.connect(self.tool_called)
        worker.tool_answered.connect(self.tool_answered)
        worker.permission_requested.connect(self.permission_requested)
        worker.tools_unavailable.connect(self.tools_unavailable)

    # --- what is loaded (owned here) ---
    @property
    def model_info(self) -> ModelInfo | None:
        """The model loaded now; None while loading or after a failed load."""
        return self._info

    @property
    def model_path(self) -> str:
        """The file loaded (or being loaded); "" = the starter model."""
        return self._path

    @property
    def remote(self) -> RemoteTarget | None:
        """The server model loaded (or being loaded) in place of ``model_path``; None for
        a file. ``model_path`` keeps the file to go back to."""
        return self._remote

    @property
    def options(self) -> EngineOptions:
        return self._options

    @property
    def models_dir(self) -> Path:
        return self._models_dir

    @property
    def loading(self) -> bool:
        return self._loading

    @property
    def closed(self) -> bool:
        return self._closed

    def set_tools(self, tools: ToolsService | None) -> None:
        """The tools replies may call from now on (read by the engine thread per reply)."""
        self._thread.worker.tools = tools

    def set_options(self, options: EngineOptions) -> None:
        """Options for the next load (the current model keeps its own until then)."""
        self._options = options

    def set_path(self, path: str) -> None:
        """The file the next ``load()`` without a path loads ("" = the starter model)."""
        self._path = path

    def set_remote(self, target: RemoteTarget | None) -> None:
        """The server model the next ``load()`` without a path opens (None: the file)."""
        self._remote = target

    @Slot(object)
    def relocate(self, models_dir: Path) -> None:
        """The models folder moved (its files with it): the loaded file's path, the
        starter's folder and the model info follow, without a reload."""
        old, self._models_dir = self._models_dir, models_dir
        path = Path(self._path) if self._path else None
        if path is not None and path.parent == old:
            self._path = str(models_dir / path.name)
        info = self._info
        if info is not None and Path(info.path).parent == old:
            self._info = replace(info, path=str(models_dir / Path(info.path).name))

    def rename_model(self, name: str) -> None:
        """The people-facing name of the loaded model (e.g. the catalog's)."""
        if self._info is not None:
            self._info = replace(self._info, name=name)

    # --- requests ---
    def load(
        self,
        path: str | None = None,
        options: EngineOptions | None = None,
        models_dir: Path | None = None,
    ) -> None:
        """Load ``path`` (None: the current one, a server's model included; "": the
        starter model). Whatever the engine is doing is cancelled first; the load runs
        once it has let go."""
        if self._closed:
            return
        if path is not None:
            self._path = path
            self._remote = None
        if options is not None:
            self._options = options
        if models_dir is not None:
            self._models_dir = models_dir
        self.stop_all()
        self._info = None
        self._loading = True
        request = LoadRequest(
            path=self._path, options=self._options, models_dir=self._models_dir, remote=self._remote
        )
        self._load_requested.emit(request)
        self.model_loading.emit(self._remote.path if self._remote else self._path)

    def load_remote(self, target: RemoteTarget) -> None:
        """Chat through ``target`` (a model on a server) in place of the model loaded now;
        ``model_path`` stays the file to go back to."""
        self._remote = target
        self.load()

    def generate(self, turn: Turn) -> int:
        """Ask for a reply to ``turn``; its events carry the returned request id."""
        request_id, cancel = self._new_request()
        self._generate_requested.emit(request_id, turn, cancel)
        return request_id

    def measure(self, conversation_id: int, turn: Turn) -> None:
        """Ask how full ``turn`` makes the context window (``usage_measured``)."""
        if not self._closed:
            self._measure_requested.emit(conversation_id, turn)

    def warm(self, turn: Turn) -> int:
        """Read ``turn``'s conversation in ahead of its next reply (``warm_*``)."""
        request_id, cancel = self._new_request()
        self._warm_requested.emit(request_id, turn, cancel)
        return request_id

    def run_job(self, job: Callable[[ChatBackend | None], None], cancel: threading.Event) -> None:
        """Run ``job`` on the engine thread after what is queued there (the local API's
        replies). ``cancel`` is the job's own; Stop-all and loading a model set it too."""
        if self._closed:  # no engine thread any more: the job hears "no model" at once
            cancel.set()
            job(None)
            return
        self._next_id += 1
        self._cancels[self._next_id] = cancel
        self._job_requested.emit(self._next_id, job, cancel)

    def stop(self, request_id: int) -> None:
        """Cancel one request (a reply ends with CANCELLED; its text is kept)."""
        cancel = self._cancels.get(request_id)
        if cancel is not None:
            cancel.set()

    def stop_all(self) -> None:
        for cancel in self._cancels.values():
            cancel.set()

    def close(self) -> None:
        """Cancel everything, free the model and stop the engine thread. Blocks until a
        load in progress has finished (hide the window first). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop_all()
        self._thread.close()

    def _new_request(self) -> tuple[int, threading.Event]:
        self._next_id += 1
        cancel = threading.Event()
        if self._closed:
            cancel.set()  # nothing runs any more; the id simply never answers
        else:
            self._cancels[self._next_id] = cancel
        return self._next_id, cancel

    @Slot(int)
    def _ended(self, request_id: int) -> None:
        self._cancels.pop(request_id, None)

    # --- events from the worker ---
    @Slot(object)
    def _on_model_loaded(self, info: ModelInfo) -> None:
        if self._closed:
            return  # queued before shutdown
        self._info = info
        self._loading = False
        log.info("model ready: %s", info.name)
        self.model_changed.emit(info, "")

    @Slot(str)
    def _on_model_load_failed(self, message: str) -> None:
        if self._closed:
            return
        self._info = None
        self._loading = False
        self.model_changed.emit(None, message)

    @Slot(int, object)
    def _on_reply_finished(self, request_id: int, done: ReplyDone) -> None:
        self._ended(request_id)
        self.reply_finished.emit(request_id, done)

    @Slot(int, str)
    def _on_reply_failed(self, request_id: int, message: str) -> None:
        self._ended(request_id)
        self.reply_failed.emit(request_id, message)

    @Slot(int, object, int)
    def _on_context_exceeded(self, request_id: int, usage: ContextUsage, dropped: int) -> None:
        self._ended(request_id)
        self.context_exceeded.emit(request_id, usage, dropped)

    @Slot(int, int, int)
    def _on_warm_finished(self, request_id: int, reused: int, read: int) -> None:
        self._ended(request_id)
        self.warm_finished.emit(request_id, reused, read)
