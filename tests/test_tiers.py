"""The tiers (tests/tiers.py) on a small suite of their own, run by a child pytest: the
markers land where they should, and ``--fast`` refuses llama_cpp and says who asked.

The child's folder has a stand-in ``llama_cpp`` package (an empty module), so no run here
loads the real library; ``--fast`` must refuse it all the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUITE = {
    "pytest.ini": """
        [pytest]
        addopts = -p no:cacheprovider
        timeout = 300
        markers =
            model: m
            gui: g
            packaging: p
            slow: s
        """,
    "conftest.py": """
        import pytest
        from tests.tiers import (
            pytest_addoption,
            pytest_configure,
            pytest_ignore_collect,
            pytest_itemcollected,
            pytest_make_collect_report,
            pytest_runtest_makereport,
            pytest_runtest_setup,
            pytest_terminal_summary,
        )

        @pytest.fixture
        def starter_model_path():
            return "the starter model"

        @pytest.fixture
        def data_dir(starter_model_path):
            return "a data folder holding it"
        """,
    "llama_cpp/__init__.py": "",
    "helper.py": """
        def probe():
            try:
                import llama_cpp  # as engine.models.hardware does
            except ImportError:
                return False
            return True
        """,
    "test_suite.py": """
        import pytest

        def test_pure():
            assert 1 + 1 == 2

        def test_on_the_model(data_dir):
            assert data_dir

        def test_imports_llama_itself():
            import llama_cpp

        def test_reaches_llama_through_code_that_swallows_the_error():
            import helper
            assert helper.probe() is False  # passes: only the guard can catch it

        @pytest.mark.timeout(900)
        def test_long():
            pass

        def test_window(qapp):
            assert qapp is not None
        """,
    "test_llama_at_import.py": """
        import llama_cpp

        def test_anything():
            pass
        """,
}


def run_suite(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    for name, text in SUITE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "QT_QPA_PLATFORM": "offscreen",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-q", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def selected(tmp_path: Path, expression: str) -> set[str]:
    result = run_suite(tmp_path, "--collect-only", "-m", expression)
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: none selected
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_markers_are_applied_automatically(tmp_path: Path) -> None:
    assert selected(tmp_path, "model") == {
        "test_llama_at_import.py::test_anything",
        "test_suite.py::test_on_the_model",
        "test_suite.py::test_imports_llama_itself",
    }
    assert selected(tmp_path, "slow") == {"test_suite.py::test_long"}
    assert selected(tmp_path, "gui") == {"test_suite.py::test_window"}


def test_fast_refuses_llama_cpp_and_says_who_asked(tmp_path: Path) -> None:
    result = run_suite(tmp_path, "--fast")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "PASSED test_suite.py::test_pure" in out
    assert "PASSED test_suite.py::test_window" in out
    # Caught although the code under test swallowed the ImportError, with the line.
    assert "test_reaches_llama_through_code_that_swallows_the_error" in out
    assert "FAILED test_suite.py::test_reaches_llama_through_code_that_swallows_the_error" in out
    assert 'helper.py", line 4, in probe' in out
    assert "1 failed, 2 passed, 3 deselected" in out
    assert "left out 1 module(s) that import llama_cpp when imported:" in out
    assert "    test_llama_at_import.py" in out
    assert "1 import(s) of llama_cpp refused" in out
