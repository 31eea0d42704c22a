"""Work off the GUI thread's back: slow work on a thread of its own with its results
on the GUI thread (``run_in_background``, STYLE: Anki's QueryOp), and work the GUI thread
does while the app is idle, in slices too short to be felt (``IdleIndexer``)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, cast

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from engine.errors import KnownError, StoreError
from engine.history.store import ChatStore

log = logging.getLogger(__name__)

T = TypeVar("T")
Report = Callable[[int, int], None]  # done, total (bytes, files, ...)
Op = Callable[[Report, threading.Event], T]  # the work: report progress, honour the cancel

# Progress reaches the GUI at most this often (a copy reports every MiB: thousands a GB,
# each one a repaint of two widgets); the last report (done == total) always does.
PROGRESS_INTERVAL_S = 0.25


class Throttle:
    """Passes on at most one progress report per ``interval_s``, and always the last."""

    def __init__(
        self,
        report: Report,
        interval_s: float = PROGRESS_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._report = report
        self._interval = interval_s
        self._clock = clock
        self._last = -math.inf

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if done >= total or now - self._last >= self._interval:
            self._last = now
            self._report(done, total)


class BackgroundOp(QObject, Generic[T]):
    """One piece of slow work on a Python thread; what it returns, raises or reports
    arrives on the GUI thread as this object's signals (it lives there). A KnownError
    becomes its sentence, an exception of ``cancelled_by`` a cancel, any other a bug:
    logged with its traceback and said in a sentence.

    Build it, connect, then ``start()``: nothing is emitted before anyone listens.
    """

    progressed = Signal(object, object)  # done, total (throttled; may exceed 2**31)
    succeeded = Signal(object)  # what the work returned
    failed = Signal(str)  # a sentence
    cancelled = Signal()
    ended = Signal()  # after any of the three

    # From the work's thread to this object's slots (queued: this object is on the GUI
    # thread), so the public signals and their receivers, lambdas too, run there.
    _progress_from_thread = Signal(object, object)
    _result_from_thread = Signal(object)
    _failure_from_thread = Signal(str)
    _cancel_from_thread = Signal()

    _live: ClassVar[set[BackgroundOp[Any]]] = set()  # running ops are kept alive until they end

    def __init__(
        self,
        op: Op[T],
        *,
        what: str,
        cancelled_by: tuple[type[BaseException], ...] = (),
        keep_running_at_exit: bool = False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.what = what  # "Moving the models to …": for sentences and the log
        self.cancel_event = threading.Event()
        self._op = op
        self._cancelled_by = cancelled_by
        self._progress_from_thread.connect(self._on_progress)
        self._result_from_thread.connect(self._on_result)
        self._failure_from_thread.connect(self._on_failure)
        self._cancel_from_thread.connect(self._on_cancel)
        # Daemon unless it must finish (a folder move is never killed half-way at exit).
        self._thread = threading.Thread(
            target=self._run, name=f"background: {what}", daemon=not keep_running_at_exit
        )

    def start(self) -> None:
        BackgroundOp._live.add(self)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the work to stop (it checks ``cancel_event``); its end still arrives."""
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread (blocks the caller); True when it has ended."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        report = Throttle(self._progress_from_thread.emit)
        try:
            result = self._op(report, self.cancel_event)
        except self._cancelled_by:
            self._cancel_from_thread.emit()
        except KnownError as exc:
            log.warning("%s failed: %s", self.what, exc)
            self._failure_from_thread.emit(exc.message)
        except Exception:
            log.exception("%s crashed", self.what)
            self._failure_from_thread.emit(
                f"{self.what} stopped because of an internal error; the details are in the "
                "log file."
            )
        else:
            self._result_from_thread.emit(result)

    @Slot(object, object)
    def _on_progress(self, done: int, total: int) -> None:
        self.progressed.emit(done, total)

    @Slot(object)
    def _on_result(self, result: object) -> None:
        self._end()
        self.succeeded.emit(result)
        self.ended.emit()

    @Slot(str)
    def _on_failure(self, message: str) -> None:
        self._end()
        self.failed.emit(message)
        self.ended.emit()

    @Slot()
    def _on_cancel(self) -> None:
        self._end()
        self.cancelled.emit()
        self.ended.emit()

    def _end(self) -> None:
        self.join()  # it has emitted its last signal: a moment at most
        BackgroundOp._live.discard(self)


def run_in_background(
    op: Op[T],
    on_done: Callable[[T], None],
    on_failed: Callable[[str], None],
    *,
    what: str,
    progress: Report | None = None,
    on_cancelled: Callable[[], None] | None = None,
    cancelled_by: tuple[type[BaseException], ...] = (),
    keep_running_at_exit: bool = False,
) -> BackgroundOp[T]:
    """Run ``op(report, cancel)`` on a thread of its own; ``on_done(result)``,
    ``on_failed(sentence)``, ``on_cancelled()`` and ``progress(done, total)`` (at most
    four times a second) are called on the GUI thread. Returns the running op, to
    cancel or join it."""
    job: BackgroundOp[T] = BackgroundOp(
        op, what=what, cancelled_by=cancelled_by, keep_running_at_exit=keep_running_at_exit
    )
    job.succeeded.connect(lambda result: on_done(cast(T, result)))
    job.failed.connect(on_failed)
    if on_cancelled is not None:
        job.cancelled.connect(on_cancelled)
    if progress is not None:
        job.progressed.connect(progress)
    job.start()
    return job


class IdleIndexer(QObject):
    """Indexes the messages queued for the CJK search index (``ChatStore.index_pending``)
    a slice at a time while the event loop is idle.

    On the GUI thread because the store is used from there only. Each slice aims
    at ``SLICE_S``: the number of messages per slice follows the time the last one
    took, so typing and a streaming reply wait at most that long. Slices follow
    each other with 0-ms timers (queued input and paints go first) until the queue
    is empty; then a look every ``POLL_MS`` (a few µs) picks up what later edits
    or imports queue. A CJK search never waits for this: it reads what is still
    queued (engine.history.search).
    """

    sliced = Signal(int)  # after each slice that indexed: how many are still queued

    SLICE_S = 0.008
    POLL_MS = 30_000
    START_DELAY_MS = 500  # after the window's first frames, the list and the chat
    MAX_BATCH = 500  # one transaction of index_pending

    BUSY_MS = 250  # while a reply streams, look again this often

    def __init__(
        self,
        store: ChatStore,
        parent: QObject | None = None,
        *,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._busy = busy  # e.g. a reply is streaming: its smoothness comes first
        self._batch = 8  # messages per slice; adapts after the first
        self.pending = -1  # still queued after the last slice (-1: not looked yet)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timeout)

    def start(self, delay_ms: int = START_DELAY_MS) -> None:
        self._timer.start(delay_ms)

    @Slot()
    def stop(self) -> None:
        self._timer.stop()

    @property
    def active(self) -> bool:
        return self._timer.isActive()

    @Slot()
    def _on_timeout(self) -> None:
        if self._busy():
            self._timer.start(self.BUSY_MS)
            return
        batch, before = self._batch, self.pending
        started = time.perf_counter()
        try:
            self.pending = self._store.index_pending(batch)
        except StoreError as e:  # disk full, locked: search still works; try later
            log.warning("CJK search indexing failed, will try again: %s (%s)", e.message, e.detail)
            self._timer.start(self.POLL_MS)
            return
        if self.pending:
            took = max(time.perf_counter() - started, 1e-6)
            # Towards SLICE_S, at most doubling (one long message is no rate).
            wanted = int(batch * self.SLICE_S / took)
            self._batch = max(1, min(wanted, 2 * batch, self.MAX_BATCH))
        self._timer.start(0 if self.pending else self.POLL_MS)
        if self.pending or before:  # not an idle look at an empty queue
            self.sliced.emit(self.pending)
