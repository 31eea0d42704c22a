"""Work the GUI thread does while the app is idle, in slices too short to be felt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from engine.errors import StoreError
from engine.history.store import ChatStore

log = logging.getLogger(__name__)


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
