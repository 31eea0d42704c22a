"""The engine thread: one long-lived QThread that owns the single ChatSession.

Requests arrive as queued signals (``load_requested``, ``generate_requested``)
and results leave as events. Stop is a ``threading.Event`` set directly from
the GUI thread, because while a reply streams this thread is busy and would
only see a queued "stop" signal after the reply had finished.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Signal, Slot

from engine.errors import KnownError
from engine.types import EngineOptions, Message, ModelInfo, ReplyDone, SamplingParams, TextDelta

log = logging.getLogger(__name__)

# Deltas cross threads at most this often (the view repaints on its own timer).
DELTA_INTERVAL_S = 1 / 60
STATS_INTERVAL_S = 1.0


class EngineWorker(QObject):
    model_loading = Signal(str)  # path
    model_loaded = Signal(object)  # ModelInfo
    model_load_failed = Signal(str)  # sentence
    delta_ready = Signal(int, str)  # request id, text
    speed_measured = Signal(int, float)  # request id, tokens/s so far
    reply_finished = Signal(int, object)  # request id, ReplyDone
    reply_failed = Signal(int, str)  # request id, sentence

    def __init__(self, stop_event: threading.Event, models_dir: Path) -> None:
        super().__init__()
        self._stop = stop_event
        self._models_dir = models_dir
        self._session: object | None = None  # engine.session.ChatSession, imported lazily

    @Slot(str, object)
    def load(self, path: str, options: EngineOptions) -> None:
        """Load ``path``; an empty path means "the starter model" (installing it first)."""
        self.model_loading.emit(path)
        self._close_session()
        try:
            from engine.models import catalog_entry_for, install_starter_model
            from engine.session import ChatSession

            model_path = Path(path) if path else install_starter_model(self._models_dir)
            session = ChatSession(model_path, options)
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
        info: ModelInfo = session.info
        entry = catalog_entry_for(model_path)
        if entry is not None:  # GGUF names are often build tags; the catalog's is for people
            info = replace(info, name=entry.name)
        log.info("loaded %s (%s, %s)", info.name, info.architecture, info.quantization)
        self.model_loaded.emit(info)

    @Slot(int, object, object)
    def generate(
        self, request_id: int, conversation: list[Message], params: SamplingParams
    ) -> None:
        session = self._session
        if session is None:
            self.reply_failed.emit(
                request_id, "No model is loaded yet. Wait for it to load, then send again."
            )
            return
        pending: list[str] = []
        last_emit = last_stats = started = time.monotonic()
        pieces = 0
        try:
            for event in session.stream(conversation, params, stop=self._stop):  # type: ignore[attr-defined]
                if isinstance(event, TextDelta):
                    pending.append(event.text)
                    pieces += 1
                    now = time.monotonic()
                    if now - last_emit >= DELTA_INTERVAL_S:
                        self.delta_ready.emit(request_id, "".join(pending))
                        pending.clear()
                        last_emit = now
                    if now - last_stats >= STATS_INTERVAL_S:
                        self.speed_measured.emit(request_id, pieces / (now - started))
                        last_stats = now
                elif isinstance(event, ReplyDone):
                    if pending:
                        self.delta_ready.emit(request_id, "".join(pending))
                        pending.clear()
                    self.reply_finished.emit(request_id, event)
        except KnownError as exc:
            log.warning("generation failed: %s", exc, exc_info=True)
            if pending:
                self.delta_ready.emit(request_id, "".join(pending))
            self.reply_failed.emit(request_id, exc.message)
        except Exception:
            log.exception("generation crashed")
            if pending:
                self.delta_ready.emit(request_id, "".join(pending))
            self.reply_failed.emit(
                request_id,
                "The reply stopped because of an internal error. What was written so far is "
                "kept; the details are in the log file.",
            )

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
