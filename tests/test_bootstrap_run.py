"""The README's first command, ``bash packaging/bootstrap.sh run``, gets as far as
launching Hearth.

Runs the real script, copied into a temporary tree, with a virtual environment that
is already set up (its install stamp matches), so nothing is installed; the
``hearth`` it launches is a stand-in that says it was launched with the arguments.
(Real launching is covered by the window tests and the .deb tests; this guards the
script itself: `set -e` once ended it silently before the launch, in `run` mode only.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_run_command_launches_hearth(tmp_path: Path) -> None:
    tree = tmp_path / "hearth"
    (tree / "packaging").mkdir(parents=True)
    for name in ("packaging/bootstrap.sh", "packaging/llama_backend.py", "pyproject.toml"):
        shutil.copy(REPO / name, tree / name)
    chosen = subprocess.run(
        [sys.executable, "packaging/llama_backend.py", "--shell"],
        cwd=tree, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    values = dict(line.split("=", 1) for line in chosen.splitlines() if "=" in line)
    want_llama = (
        values["HEARTH_LLAMA_BACKEND_CHOSEN"] + ":" + values["HEARTH_LLAMA_CMAKE_ARGS"].strip("'")
    )
    venv = tree / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    hearth = venv / "bin" / "hearth"
    hearth.write_text('#!/bin/sh\necho "hearth launched with: $*"\n')
    hearth.chmod(0o755)
    stamped = (
        (tree / "pyproject.toml").read_bytes()
        + (tree / "packaging" / "bootstrap.sh").read_bytes()
        + (want_llama + "\n").encode()
    )
    (venv / ".hearth-installed").write_text(hashlib.sha256(stamped).hexdigest() + "\n")
    (venv / ".hearth-llama-backend").write_text(want_llama + "\n")

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        ["bash", str(tree / "packaging" / "bootstrap.sh"), "run", "--data-dir", "/nowhere"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "hearth launched with: --data-dir /nowhere"
    assert "installing Hearth" not in done.stderr  # the stamp matched: nothing installed
