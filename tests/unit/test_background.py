"""Slow work off the GUI thread (app.background): results arrive on the GUI thread even
when the work ended before anyone got to it, and progress reaches it at most four
times a second."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QThread
from pytestqt.qtbot import QtBot

from app.background import PROGRESS_INTERVAL_S, Report, Throttle, run_in_background
from engine.errors import KnownError
from engine.models.library import ImportCancelled, InstalledModel, import_gguf


def test_a_job_that_ends_before_the_gui_looks_still_reports(
    qtbot: QtBot, tmp_path: Path, starter_model_path: Path
) -> None:
    """R2: a real import that is over before the GUI thread runs its event loop again
    (joined right away) is still heard, on the GUI thread, with its last progress."""
    gui = QThread.currentThread()
    heard: list[object] = []
    threads: list[bool] = []

    def done(model: InstalledModel) -> None:
        threads.append(QThread.currentThread() is gui)
        heard.append(model)

    def progress(done: int, total: int) -> None:
        threads.append(QThread.currentThread() is gui)
        heard.append((done, total))

    job = run_in_background(
        lambda report, cancel: import_gguf(
            starter_model_path, tmp_path, on_progress=report, cancel=cancel
        ),
        done,
        lambda message: heard.append(message),
        what="Importing the starter model",
        progress=progress,
    )
    assert job.join()  # over, and nothing delivered yet: no event loop has run
    assert heard == []
    qtbot.waitUntil(lambda: any(isinstance(h, InstalledModel) for h in heard))
    size = starter_model_path.stat().st_size
    assert (size, size) in heard  # the last report always comes through
    assert isinstance(heard[-1], InstalledModel) and heard[-1].path.read_bytes() == (
        starter_model_path.read_bytes()
    )
    assert all(threads)  # every callback ran on the GUI thread, lambdas included


def test_a_known_error_is_its_sentence_and_a_cancel_is_a_cancel(qtbot: QtBot) -> None:
    said: list[str] = []
    cancelled: list[bool] = []

    def refuse(_report: Report, _cancel: threading.Event) -> None:
        raise KnownError("The disk is full: free some space, then try again.")

    run_in_background(refuse, lambda _r: None, said.append, what="Copying")
    qtbot.waitUntil(lambda: bool(said))
    assert said == ["The disk is full: free some space, then try again."]

    def cancellable(_report: Report, cancel: threading.Event) -> None:
        assert cancel.wait(60)
        raise ImportCancelled

    job = run_in_background(
        cancellable,
        lambda _r: None,
        said.append,
        what="Importing",
        on_cancelled=lambda: cancelled.append(True),
        cancelled_by=(ImportCancelled,),
    )
    job.cancel()
    qtbot.waitUntil(lambda: bool(cancelled))
    assert said == ["The disk is full: free some space, then try again."]  # nothing more


def test_a_bug_is_logged_and_said_without_a_traceback_on_screen(
    qtbot: QtBot, caplog: pytest.LogCaptureFixture
) -> None:
    said: list[str] = []

    def broken(_report: Report, _cancel: threading.Event) -> None:
        raise ZeroDivisionError("a bug")

    run_in_background(broken, lambda _r: None, said.append, what="Moving the models")
    qtbot.waitUntil(lambda: bool(said))
    assert said[0].startswith("Moving the models stopped because of an internal error")
    assert "ZeroDivisionError" in caplog.text  # the traceback is in the log


def test_progress_is_passed_on_at_most_four_times_a_second() -> None:
    """A copy reports every MiB; the GUI hears one report per 0.25 s, and the last one."""
    now_ms = [0]  # a clock the test moves: 10 ms per report (whole ms: no rounding)
    passed: list[tuple[int, int]] = []
    throttle = Throttle(
        lambda done, total: passed.append((done, total)), clock=lambda: now_ms[0] / 1000
    )
    for mib in range(1, 1001):  # 1000 MiB copied in 10 s: a report every 10 ms
        throttle(mib, 1000)
        now_ms[0] += 10
    assert PROGRESS_INTERVAL_S == 0.25
    assert len(passed) == 41  # the first, one every 0.25 s of the 10 s, and the last
    assert passed[0] == (1, 1000) and passed[-1] == (1000, 1000)
    stamps_ms = [(done - 1) * 10 for done, _ in passed[:-1]]
    assert all(b - a >= 250 for a, b in itertools.pairwise(stamps_ms))
