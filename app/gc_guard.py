"""Run Python's cyclic garbage collector on the GUI thread only.

CPython collects cycles in whichever thread happens to allocate when a
threshold is crossed. With the engine's Python code running on its own
QThread, a cycle holding a Qt widget (a closed dialog, an old window) can be
freed there, and Qt then warns "Timers cannot be stopped from another thread"
or crashes. The usual remedy in PyQt/PySide apps (cf. PYSIDE-810 and the PyQt
wiki's GarbageCollector): turn automatic collection off and collect from a
GUI-thread timer, honouring the same thresholds.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500


class GuiThreadGc(QObject):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._threshold = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def check(self) -> None:
        counts = gc.get_count()
        # Collect the oldest generation whose count passed its threshold.
        for generation in (2, 1, 0):
            if counts[generation] > self._threshold[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        """Collect what is left here, on the GUI thread, and give collection back."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
