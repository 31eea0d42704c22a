"""Build the frozen (PyInstaller, one-folder) Hearth, reusing a cached build when nothing changed.

    .venv/bin/python packaging/build_frozen.py [--force] [--cache DIR]

Prints the path of the frozen folder (the one holding the ``hearth``
executable). The cache (``~/.cache/hearth-build`` or ``$HEARTH_BUILD_CACHE``)
holds PyInstaller's work folder, which PyInstaller itself reuses for the parts
whose inputs did not change, and the finished folders keyed by a hash of every
input: Hearth's code and resources, the spec, the Python version and the
exact installed distributions (their RECORD files, which hold the hash of each
installed file, so a rebuilt llama-cpp-python of the same version counts as a
change). An unchanged tree costs a hash and no build.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "hearth.spec"
INPUT_DIRS = ("app", "ui", "engine", "resources")
INPUT_FILES = ("packaging/hearth.spec", "packaging/hearth_main.py", "packaging/spec_support.py")
KEEP_BUILDS = 2  # finished folders are ~350 MB each
PRUNE_AFTER_S = 600  # an older folder may still be copied by another process (build-deb.sh)


def default_cache() -> Path:
    return Path(os.environ.get("HEARTH_BUILD_CACHE") or Path.home() / ".cache" / "hearth-build")


def inputs_hash() -> str:
    """A hash of everything that goes into the frozen folder."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + hashlib.sha256(data).digest())

    files = [ROOT / f for f in INPUT_FILES]
    for folder in INPUT_DIRS:
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    for path in sorted(files):
        add(path.relative_to(ROOT).as_posix(), path.read_bytes())
    add("python", f"{sys.version} {platform.platform()} {sys.executable}".encode())
    for dist in sorted(md.distributions(), key=lambda d: str(d.metadata["Name"]).lower()):
        record = dist.read_text("RECORD") or ""
        add(f"dist:{dist.metadata['Name']}=={dist.version}", record.encode())
    return digest.hexdigest()[:16]


def build(cache: Path, *, force: bool = False) -> tuple[Path, float, bool]:
    """The frozen folder for the current inputs: (path, seconds spent, whether it was built)."""
    started = time.monotonic()
    key = inputs_hash()
    finished = cache / "frozen" / key
    folder = finished / "hearth"
    stamp = finished / "complete"
    # One build at a time per cache: two test runs at once share the work folder.
    with _locked(cache / "lock"):
        if stamp.is_file() and (folder / _exe_name()).is_file() and not force:
            os.utime(finished)  # recently used: pruned last
            return folder, time.monotonic() - started, False
        shutil.rmtree(finished, ignore_errors=True)
        partial = cache / "frozen" / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        command = [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level=WARN",
            f"--workpath={cache / 'work'}",
            f"--distpath={partial}",
            str(SPEC),
        ]
        subprocess.run(command, cwd=ROOT, check=True)
        partial.rename(finished)
        stamp.write_text(key + "\n", encoding="utf-8")
        _prune(cache / "frozen", keep=finished)
    return folder, time.monotonic() - started, True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as f:
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises
        else:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        yield


def _exe_name() -> str:
    return (
        "Hearth.exe"
        if sys.platform == "win32"
        else "Hearth"
        if sys.platform == "darwin"
        else "hearth"
    )


def _prune(frozen: Path, *, keep: Path) -> None:
    builds = sorted(
        (p for p in frozen.iterdir() if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    now = time.time()
    for old in builds[KEEP_BUILDS - 1 :]:
        if now - old.stat().st_mtime > PRUNE_AFTER_S:
            shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=default_cache(), help="build cache folder")
    parser.add_argument("--force", action="store_true", help="build even if a cached one matches")
    args = parser.parse_args(argv)
    folder, seconds, built = build(args.cache, force=args.force)
    what = "built" if built else "reused the cached build"
    print(f"hearth-build: {what} in {seconds:.1f} s", file=sys.stderr)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
