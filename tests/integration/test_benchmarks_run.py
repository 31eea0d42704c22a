"""The benchmarks stay runnable: each runs here on a small size and prints its
figures. (Speed itself is not asserted in tests; bench/RESULTS.md has it.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Whole benchmark programs in child processes: the full tier's, not the everyday one's.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> str:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env,
        timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_ui_streaming_benchmark_runs() -> None:
    out = run_bench("bench/ui_streaming.py", "--tokens", "400", "--baseline-tokens", "60")
    assert "hearth (append-only)" in out and "baseline (re-render/token)" in out
    assert "p99=" in out


def test_store_scale_benchmark_runs(tmp_path: Path) -> None:
    out = run_bench(
        "bench/store_scale.py", "--db", str(tmp_path / "scale.sqlite3"),
        "--conversations", "200", "--messages", "4000", "--runs", "2", "--regenerate",
    )  # fmt: skip
    assert "search" in out.lower()


def test_download_benchmark_runs() -> None:
    out = run_bench("bench/download.py", "--size-mb", "8", "--runs", "1")
    assert "hearth" in out and "ratio hearth/httpx GET" in out


def test_doc_qa_benchmark_runs() -> None:
    out = run_bench("bench/doc_qa.py", "--questions", "20", "--pages", "40", "--runs", "5")
    assert "BM25 recall@1=" in out and "pages/s" in out and "query on 40 pages" in out


@pytest.mark.model  # loads the starter model (in the child process: marked by hand)
def test_serve_benchmark_runs() -> None:
    out = run_bench("bench/serve.py", "--rounds", "1", "--tokens", "8", "--threads", "2")
    assert "api/in-process:" in out and "first token added by the API:" in out
