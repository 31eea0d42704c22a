"""Moving the models folder: real files, real disks (/dev/shm is a different
filesystem from /tmp here, so the copy path runs for real)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import ModelInstallError
from engine.models.catalog import remember_verified, sha256_file, verified_record
from engine.models.folder import MoveCancelled, plan_move


def _fill(models: Path) -> dict[str, bytes]:
    files = {
        "a.gguf": os.urandom(3 << 20),
        "b.gguf": os.urandom(1 << 20),
        ".downloads/c.gguf.0123456789abcdef.incomplete": os.urandom(5000),
    }
    for rel, data in files.items():
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(data)
    remember_verified(models / "a.gguf", sha256_file(models / "a.gguf"))
    return files


def _contents(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".sha256")
    }


@pytest.fixture
def other_disk() -> Iterator[Path]:
    shm = Path("/dev/shm")
    assert shm.stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev
    with tempfile.TemporaryDirectory(dir=shm) as folder:
        yield Path(folder)


@pytest.mark.parametrize("disk", ["same", "other"])
def test_moves_everything_and_verified_files_stay_verified(
    tmp_path: Path, other_disk: Path, disk: str
) -> None:
    old = tmp_path / "models"
    files = _fill(old)
    new = (tmp_path if disk == "same" else other_disk) / "elsewhere" / "models"
    on_disk = sum(p.stat().st_size for p in old.rglob("*") if p.is_file())
    move = plan_move(old, new)
    assert move.total_bytes == on_disk  # the models, the .sha256 record, the partial download
    seen: list[tuple[int, int]] = []
    move.run(on_progress=lambda done, total: seen.append((done, total)))
    assert _contents(new) == files
    assert not old.exists()  # emptied and removed
    assert seen[-1] == (move.total_bytes, move.total_bytes)
    # The sha256 record moved with its file and still vouches for it (a copy keeps the
    # mtime the record checks), so the file need not be hashed again.
    target = new / "a.gguf"
    assert verified_record(target, sha256=sha256_file(target)) is not None


def test_refuses_clashes_nesting_and_the_same_folder(tmp_path: Path) -> None:
    old = tmp_path / "models"
    _fill(old)
    with pytest.raises(ModelInstallError, match="already the models folder"):
        plan_move(old, old)
    with pytest.raises(ModelInstallError, match="inside the current one"):
        plan_move(old, old / "sub")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "b.gguf").write_bytes(b"someone else's")
    with pytest.raises(ModelInstallError, match=r"already has a file called b\.gguf"):
        plan_move(old, taken)


def test_a_failure_midway_moves_everything_back(tmp_path: Path, other_disk: Path) -> None:
    old = tmp_path / "models"
    files = _fill(old)
    new = other_disk / "models"
    move = plan_move(old, new)
    # After the plan, something takes the name of the second file to be moved.
    second = move.files[1]
    (new / second).mkdir(parents=True)
    with pytest.raises(ModelInstallError) as err:
        move.run()
    assert "back in" in err.value.message and str(old) in err.value.message
    assert _contents(old) == files  # all back where they were, intact
    assert [p for p in new.rglob("*") if p.is_file()] == []


def test_cancel_moves_back(tmp_path: Path, other_disk: Path) -> None:
    old = tmp_path / "models"
    files = _fill(old)
    move = plan_move(old, other_disk / "models")
    cancel = threading.Event()
    with pytest.raises(MoveCancelled):
        move.run(on_progress=lambda done, total: cancel.set(), cancel=cancel)
    assert _contents(old) == files
