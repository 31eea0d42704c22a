"""Moving the models folder somewhere else (a bigger disk, say).

Every file Hearth keeps there moves: model files, their ``.sha256`` records and
unfinished downloads (``.downloads/``). Nothing is ever half-moved under its
final name: on the same disk a file is renamed (instant); across disks it is
copied to a temporary name, flushed, renamed into place, and only then is the
original deleted. A failure or a cancel moves the files already moved back,
so the models are in one folder, the old one, and says so in a sentence.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelInstallError
from engine.units import format_bytes

__all__ = ["FolderMove", "MoveCancelled", "plan_move"]

_CHUNK = 8 << 20


class MoveCancelled(Exception):
    """The person cancelled; the files moved so far were moved back."""


@dataclass(frozen=True, slots=True)
class FolderMove:
    source: Path
    target: Path
    files: tuple[Path, ...]  # relative to source
    total_bytes: int

    def run(
        self,
        on_progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Move every file; ``on_progress(done_bytes, total_bytes)``. Blocks."""
        done = 0
        moved: list[Path] = []
        for rel in self.files:
            if cancel is not None and cancel.is_set():
                self._undo(moved)
                raise MoveCancelled
            size = (self.source / rel).stat().st_size
            try:
                _move(
                    self.source / rel,
                    self.target / rel,
                    lambda n, d=done: _report(on_progress, d + n, self),  # type: ignore[misc]
                )
            except OSError as exc:
                raise _failed(exc, self, rel, undone=self._undo(moved)) from exc
            moved.append(rel)
            done += size
            _report(on_progress, done, self)
        for folder in (self.source / ".downloads", self.source):
            with contextlib.suppress(OSError):  # only if empty: the rest is not ours to move
                folder.rmdir()

    def _undo(self, moved: list[Path]) -> bool:
        """Move ``moved`` back; False if some could not be."""
        ok = True
        for rel in reversed(moved):
            try:
                _move(self.target / rel, self.source / rel, lambda _n: None)
            except OSError:
                ok = False
        return ok


def _move(src: Path, dst: Path, progress: Callable[[int], None]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if _same_disk(src, dst.parent):
        os.replace(src, dst)
    else:
        _copy_then_delete(src, dst, progress)


def _report(cb: Callable[[int, int], None] | None, done: int, move: FolderMove) -> None:
    if cb is not None:
        cb(done, move.total_bytes)


def _same_disk(src: Path, folder: Path) -> bool:
    return src.stat().st_dev == folder.stat().st_dev


def _copy_then_delete(src: Path, dst: Path, progress: Callable[[int], None]) -> None:
    part = dst.with_name(dst.name + ".moving")
    copied = 0
    try:
        with src.open("rb") as fin, part.open("wb") as fout:
            while block := fin.read(_CHUNK):
                fout.write(block)
                copied += len(block)
                progress(copied)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, part)  # the .sha256 record checks the mtime
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)
    src.unlink()


def _failed(exc: OSError, move: FolderMove, rel: Path, *, undone: bool) -> ModelInstallError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        why = f"{move.target} ran out of disk space"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"Hearth may not write to {move.target}"
    else:
        why = exc.strerror or str(exc)
    where = (
        f"The models are all back in {move.source}, and Hearth keeps using it."
        if undone
        else f"Some files are in {move.target} and the rest in {move.source}: move them "
        "by hand into one folder."
    )
    return ModelInstallError(
        f"Moving the models stopped at {rel}: {why}. {where}", detail=repr(exc)
    )


def plan_move(source: Path, target: Path) -> FolderMove:
    """What moving ``source`` to ``target`` involves; ModelInstallError if it cannot work."""
    source, target = source.resolve(), target.expanduser().resolve()
    if target == source:
        raise ModelInstallError("That is already the models folder.")
    if target.is_relative_to(source):
        raise ModelInstallError("The new models folder cannot be inside the current one.")
    files: list[Path] = []
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file() and not path.name.endswith(".lock"):
                rel = path.relative_to(source)
                if len(rel.parts) == 1 or rel.parts[0] == ".downloads":
                    files.append(rel)
    clashes = [rel for rel in files if (target / rel).exists()]
    if clashes:
        raise ModelInstallError(
            f"{target} already has a file called {clashes[0]}. Choose an empty folder."
        )
    total = sum((source / rel).stat().st_size for rel in files)
    probe = target
    while not probe.exists():
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
        same = probe.stat().st_dev == source.stat().st_dev if source.exists() else False
    except OSError as exc:
        raise ModelInstallError(f"Hearth cannot use {target}: {exc.strerror or exc}.") from exc
    if not same and free < total:
        raise ModelInstallError(
            f"{target} has {format_bytes(free)} free; the models need {format_bytes(total)}. "
            "Choose a folder on a disk with more space."
        )
    return FolderMove(source=source, target=target, files=tuple(files), total_bytes=total)
