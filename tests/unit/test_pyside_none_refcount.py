"""Regression: PySide6 6.12.0 on CPython 3.11 decrements the refcount of None on
every call of a method returning void, and the process aborts ("deallocating
None") after a few thousand calls. pyproject pins PySide6 < 6.12 on Python
< 3.12; this test fails if the installed pair still has the bug."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from PySide6 import __version__ as pyside_version

SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtWidgets import QApplication, QPlainTextEdit, QWidget
    app = QApplication([])
    w, edit = QWidget(), QPlainTextEdit()
    before = sys.getrefcount(None)
    for i in range(12_000):
        w.setObjectName("x")          # void methods: the ones that leaked
        edit.setPlaceholderText("y")
    print(sys.getrefcount(None) - before)
    """
)


def test_void_methods_do_not_corrupt_the_refcount_of_none() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"PySide6 {pyside_version} aborted: {result.stderr[-400:]}"
    # Allow a little noise from Python's own caches, nothing like the 24,000 calls made.
    assert abs(int(result.stdout.strip())) < 100


def test_the_pin_matches_the_interpreter() -> None:
    major, minor = (int(x) for x in pyside_version.split(".")[:2])
    if sys.version_info < (3, 12):
        assert (major, minor) < (6, 12), "PySide6 6.12 aborts on Python 3.11: see pyproject.toml"
