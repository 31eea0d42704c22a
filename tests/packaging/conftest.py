"""The .deb, built once per test session and installed with the real dpkg into temp roots.

Building uses the same command a person runs (packaging/linux/build-deb.sh) and
the same PyInstaller cache (~/.cache/hearth-build): an unchanged tree reuses
the frozen folder and only packs the .deb again. Fast compression (zstd -1)
keeps CI quick; release builds use the script's default.

The package is built with ``--dev-llama``: from the dev .venv, whose llama.cpp
is compiled for this machine's CPU (GGML_NATIVE), because the portable build
takes ~30 minutes, more than CI has. So the package is marked as a development
build (version ``~dev``, not for distribution), and test_deb.py checks that
mark; test_llama_flavor.py checks that without the flag build-deb.sh refuses
such a llama.cpp.

``HEARTH_TEST_DEB=/path/to/hearth_X_amd64.deb`` runs the same tests on a package
built beforehand instead, e.g. the portable one (``bash packaging/linux/build-deb.sh``):
how the release package was checked by hand (packaging/README.md).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


def packaging_module(name: str) -> ModuleType:
    """A script of packaging/ (a folder of scripts, not a package) imported by path."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PACKAGING / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass(frozen=True)
class Installed:
    root: Path  # the tree dpkg installed into (stands for "/")
    admindir: Path  # that tree's dpkg database

    @property
    def hearth(self) -> Path:
        return self.root / "usr" / "bin" / "hearth"

    @property
    def opt(self) -> Path:
        return self.root / "opt" / "hearth"

    def dpkg(self, *args: str) -> subprocess.CompletedProcess[str]:
        """dpkg on this tree. --force-depends: the tree's database has no libc6 etc.;
        the libraries themselves come from this machine, as they would when installed."""
        return subprocess.run(
            [
                "dpkg",
                f"--root={self.root}",
                f"--admindir={self.admindir}",
                "--force-depends",
                "--force-script-chrootless",
                f"--log={self.admindir / 'dpkg.log'}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("dpkg-deb is missing: the packaging tests need Debian's dpkg")
    given = os.environ.get("HEARTH_TEST_DEB")
    if given:
        print(f"\ntesting the package {given} (HEARTH_TEST_DEB), not a fresh --dev-llama build")
        return Path(given).resolve(strict=True)
    out = tmp_path_factory.mktemp("deb")
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(PACKAGING / "linux" / "build-deb.sh"), "--dev-llama", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "HEARTH_DEB_COMPRESSION": "zstd:1"},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Build times go to the log, not into an assertion (bench/RESULTS.md has figures).
    print(f"\nbuild-deb.sh: {time.monotonic() - started:.1f} s\n{result.stderr.strip()}")
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.suffix == ".deb"
    return path


def install(deb: Path, where: Path) -> Installed:
    """``dpkg --install`` into ``where/root``, with its own package database beside it."""
    admindir = where / "dpkg"
    for sub in ("info", "updates", "triggers"):
        (admindir / sub).mkdir(parents=True, exist_ok=True)
    (admindir / "status").touch()
    (where / "root").mkdir(exist_ok=True)
    installed = Installed(root=where / "root", admindir=admindir)
    installed.dpkg("--install", str(deb))
    return installed


@pytest.fixture(scope="session")
def installed(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return install(deb, tmp_path_factory.mktemp("root"))


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What a desktop session gives an app: a HOME, a PATH, a display; nothing of the
    dev venv (no PYTHONPATH, no VIRTUAL_ENV), so the frozen app must stand alone."""
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
    }
    env.update(extra)
    return env
