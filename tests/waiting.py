"""One way for a test to wait for something that happens elsewhere (another thread, a
child process, Qt's event loop), with a deadline and a sentence when it does not happen.

Under pytest-qt prefer ``qtbot.waitUntil`` / ``qtbot.waitSignal`` (with ``timeout=`` from
the limits below); ``wait_until`` is for what has no qtbot: a child process without pytest
(tests/integration/test_offline.py), an installed app polled through its log file
(tests/packaging/test_deb.py), a download thread.

The limits, in one place (pyproject's ``timeout`` per test stays above them, so a hung wait
fails with what it waited for instead of pytest-timeout's stack dump):
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

# One operation on the starter model (SmolLM2 135M): loading it, a reply of up to 48
# tokens, importing or switching a model file. Typically one to a few seconds; this leaves
# room for a 2-core machine shared with other work. Not a speed check (bench/ measures).
MODEL_STEP_S = 120.0
MODEL_STEP_MS = int(MODEL_STEP_S * 1000)
# Something local that involves no model: a search, a repaint, a file copied, a signal
# from a thread that is already running.
QUICK_S = 10.0
QUICK_MS = int(QUICK_S * 1000)

POLL_S = 0.05  # how often the condition is checked: often enough, cheap enough


class WaitTimeout(AssertionError):
    """What the test waited for did not happen in time (or cannot happen any more)."""


def wait_until(
    done: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    fail_if: Callable[[], str | None] | None = None,
) -> None:
    """Return once ``done()`` is true; raise :class:`WaitTimeout` naming ``what`` after
    ``timeout_s``, or as soon as ``fail_if()`` gives a reason it never will be (a child
    process that exited, say).

    Between checks it runs Qt's event loop when a Qt application exists (so signals,
    queued calls and timers are delivered, as ``qtbot.waitUntil`` does); otherwise it
    sleeps POLL_S: then what it waits for is another process or thread, which a sleep
    does not hold up. It never imports Qt itself.
    """
    deadline = time.monotonic() + timeout_s
    while not done():
        if fail_if is not None and (reason := fail_if()) is not None:
            raise WaitTimeout(f"gave up waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise WaitTimeout(f"{what} did not happen within {timeout_s:g} s")
        _idle(POLL_S)


def exited(proc: subprocess.Popen[str]) -> Callable[[], str | None]:
    """For ``fail_if``: a reason (exit status and output) once ``proc`` has exited."""

    def reason() -> str | None:
        if proc.poll() is None:
            return None
        out = proc.stdout.read() if proc.stdout else ""
        return f"the process exited ({proc.returncode}):\n{out}"

    return reason


def _idle(seconds: float) -> None:
    qt_core = sys.modules.get("PySide6.QtCore")
    app = qt_core.QCoreApplication.instance() if qt_core is not None else None
    if app is None or qt_core is None:
        time.sleep(seconds)  # nothing to deliver here; the work happens elsewhere
        return
    loop = qt_core.QEventLoop()
    qt_core.QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
