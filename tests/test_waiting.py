"""tests/waiting.py: the one polling helper waits, delivers Qt events, and fails with a
sentence."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from tests.waiting import QUICK_S, WaitTimeout, exited, wait_until


def test_returns_once_another_thread_made_it_true() -> None:
    done: list[bool] = []
    worker = threading.Thread(target=lambda: done.append(True))
    worker.start()
    wait_until(lambda: bool(done), timeout_s=QUICK_S, what="the thread's flag")
    worker.join()
    assert done == [True]


def test_a_wait_that_never_ends_fails_with_what_it_waited_for() -> None:
    with pytest.raises(WaitTimeout, match=r"^the impossible did not happen within 0.2 s$"):
        wait_until(lambda: False, timeout_s=0.2, what="the impossible")


def test_gives_up_at_once_when_the_process_exits() -> None:
    with (
        subprocess.Popen(
            [sys.executable, "-c", "print('bye')"], stdout=subprocess.PIPE, text=True
        ) as proc,
        pytest.raises(WaitTimeout) as failed,
    ):
        # A long limit: only fail_if can end this wait early.
        wait_until(lambda: False, timeout_s=600, what="a window", fail_if=exited(proc))
    message = str(failed.value)
    assert message.startswith("gave up waiting for a window: the process exited (0):")
    assert "bye" in message


def test_runs_the_qt_event_loop_while_it_waits(qapp: QApplication) -> None:
    fired: list[bool] = []
    # A timer only fires if the event loop runs: a plain sleep would never see it.
    QTimer.singleShot(0, lambda: fired.append(True))
    wait_until(lambda: bool(fired), timeout_s=QUICK_S, what="the timer")
    assert fired == [True]
