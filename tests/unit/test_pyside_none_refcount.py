"""Regression: PySide6 6.12.0 on CPython 3.11 decrements the refcount of None on
every call of a method returning void, and the process aborts ("deallocating
None") after a few thousand calls. pyproject pins PySide6 < 6.12 on Python
< 3.12; these tests fail if the installed pair still has the bug, if it is the
pair known to have it, or if the pin would let that pair be installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version
from PySide6 import __version__ as pyside_version

ROOT = Path(__file__).resolve().parents[2]
# The first PySide6 with the bug, and the first CPython on which it does not show.
FIRST_BROKEN_PYSIDE = Version("6.12.0")
FIRST_CLEAN_PYTHON = (3, 12)

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


def is_broken_pair(pyside: Version, python: tuple[int, int]) -> bool:
    return pyside >= FIRST_BROKEN_PYSIDE and python < FIRST_CLEAN_PYTHON


def test_the_installed_pair_is_not_the_broken_one() -> None:
    python = sys.version_info[:2]
    installed = Version(pyside_version)
    assert not is_broken_pair(installed, python), (
        f"PySide6 {installed} aborts on Python {python[0]}.{python[1]}: see pyproject.toml"
    )
    # The rule itself, on both sides of the line (so this test can fail on any interpreter).
    assert is_broken_pair(Version("6.12.0"), (3, 11))
    assert not is_broken_pair(Version("6.11.3"), (3, 11))
    assert not is_broken_pair(Version("6.12.0"), (3, 12))


def test_the_pin_keeps_the_broken_pair_out_on_every_python() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = [
        req
        for req in map(Requirement, project["dependencies"])
        if req.name.lower().startswith("pyside6")
    ]
    assert pins, "pyproject.toml has no PySide6 requirement"
    for minor in range(11, 15):  # every CPython >= requires-python that Hearth supports
        python = f"3.{minor}"
        applies = [
            r for r in pins if r.marker is None or r.marker.evaluate({"python_version": python})
        ]
        assert applies, f"no PySide6 requirement applies on Python {python}"
        for pin in applies:
            allows_broken = pin.specifier.contains(FIRST_BROKEN_PYSIDE, prereleases=True)
            assert allows_broken == (not is_broken_pair(FIRST_BROKEN_PYSIDE, (3, minor))), (
                f"on Python {python} the pin {pin} should "
                + ("refuse" if is_broken_pair(FIRST_BROKEN_PYSIDE, (3, minor)) else "allow")
                + f" PySide6 {FIRST_BROKEN_PYSIDE}"
            )
