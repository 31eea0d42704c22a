"""The person's model files: importing a .gguf of their own, deleting one, moving the
whole models folder. Copies run on a thread of their own (``run_in_background``) with
progress at most four times a second, one at a time and never beside a download; a move
is finished or undone, never left half-way, even when Hearth quits.

Part of the model manager (``app.model_manager`` builds it and is its ``host``): it asks
and speaks through the host, and reads the folder from ``app.folders.Folders``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from PySide6.QtCore import QObject, Signal

from app.background import BackgroundOp, Op, run_in_background
from app.folders import Folders
from app.model_jobs import LOCAL_FILES
from engine.errors import KnownError
from engine.gguf.validate import validate_gguf
from engine.models.catalog import CatalogEntry
from engine.models.choice import Target
from engine.models.folder import FolderMove, MoveCancelled, plan_move
from engine.models.library import ImportCancelled, InstalledModel, delete_model, import_gguf
from engine.models.service import label
from engine.settings import Model, Settings
from engine.types import ModelInfo
from engine.units import format_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")


class FilesHost(Protocol):
    """What the file jobs need of the model manager."""

    settings: Settings
    folders: Folders

    @property
    def loaded(self) -> ModelInfo | None: ...
    @property
    def downloading(self) -> CatalogEntry | None: ...
    @property
    def catalog(self) -> tuple[CatalogEntry, ...]: ...
    def resolve(self, family: str, choice: str) -> Target: ...
    def say(self, text: str) -> None: ...
    def ask(self, title: str, text: str, action: str) -> bool: ...
    def show_progress(self, fraction: float | None, text: str) -> None: ...
    def end_progress(self, text: str, *, retry: str = "") -> None: ...


class ModelFiles(QObject):
    imported = Signal(object)  # InstalledModel: a file of one's own was imported
    deleted = Signal(object)  # Path of a model file deleted

    def __init__(self, host: FilesHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._job: BackgroundOp[Any] | None = None  # an import or a folder move
        self._moving = False  # the job is a folder move (quitting asks first)

    @property
    def busy(self) -> bool:
        """An import or a move is under way."""
        return self._job is not None

    @property
    def moving(self) -> bool:
        return self._moving

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def join(self) -> None:
        """Wait until an import or a move has ended (cancel first to hurry it): a move
        that was cancelled puts back what it moved before it ends."""
        if self._job is not None:
            self._job.join()

    def delete(self, family: str, choice: str) -> None:
        """Delete a downloaded quantization or a file of one's own (asks first)."""
        host, folder = self._host, self._host.folders.models_dir
        if family == LOCAL_FILES:
            path = Path(choice)
            name, size = path.name, path.stat().st_size if path.exists() else 0
        else:
            target = host.resolve(family, choice)
            if target.entry is None or target.path is None:
                return
            path, name, size = target.path, label(target.entry), target.entry.size
        info = host.loaded
        if info is not None and Path(info.path) == path:
            host.say(f"{name} is in use. Switch to another model to delete it.")
            return
        again = " You can download it again later." if family != LOCAL_FILES else ""
        question = f"Delete {name} ({format_bytes(size)}) from {folder}?{again}"
        if not host.ask("Delete the model file?", question, "Delete"):
            return
        try:
            delete_model(path, folder)
        except KnownError as exc:
            host.say(exc.message)
            return
        if host.settings[Model.PATH] == str(path):
            host.settings.set(Model.PATH, "")
        log.info("deleted %s", path)
        host.say(f"Deleted {name}.")
        self.deleted.emit(path)

    def import_file(self, source: str) -> None:
        """Copy a .gguf of the person's own into the models folder (validated first)."""
        host = self._host
        if self.busy or host.downloading is not None:
            host.say("Wait for the download or move in progress to finish, then import.")
            return
        src = Path(source)
        try:
            validate_gguf(src)  # fast: a bad file is refused before anything is copied
        except KnownError as exc:
            host.say(exc.message)
            return
        folder, catalog = host.folders.models_dir, host.catalog
        self._run(
            lambda report, cancel: import_gguf(
                src, folder, catalog=catalog, on_progress=report, cancel=cancel
            ),
            f"Importing {src.name}",
            self._on_imported,
        )

    def move_models(self, folder: str) -> None:
        """Move every model file to ``folder`` (asks first), then use it."""
        host = self._host
        if self.busy or host.downloading is not None:
            host.say("Wait for the download to finish (or cancel it), then move the models.")
            return
        try:
            move = plan_move(host.folders.models_dir, Path(folder))
        except KnownError as exc:
            host.say(exc.message)
            return
        if not host.ask(
            "Move the models?",
            f"Move {_models_text(move)} ({format_bytes(move.total_bytes)}) from {move.source} "
            f"to {move.target}? Hearth keeps running; chatting works during the move.",
            "Move",
        ):
            return
        self._moving = True
        self._run(
            lambda report, cancel: move.run(on_progress=report, cancel=cancel),
            f"Moving the models to {move.target}",
            lambda _result: self._on_moved(move),
        )

    def _run(self, op: Op[T], what: str, on_done: Callable[[T], None]) -> None:
        # Connected before it starts (run_in_background), and its end arrives as a queued
        # signal: a job that ends at once is still heard, after ``_job`` is set.
        self._job = run_in_background(
            op,
            on_done,
            self._on_failed,
            what=what,
            progress=lambda done, total: self._host.show_progress(
                done / total if total else 1.0,
                f"{what}: {format_bytes(done)} of {format_bytes(total)}",
            ),
            on_cancelled=lambda: self._on_failed(f"{what} was cancelled; nothing changed."),
            cancelled_by=(MoveCancelled, ImportCancelled),
            keep_running_at_exit=True,
        )
        self._host.show_progress(0.0, f"{what}…")

    def _ended(self) -> None:
        self._job, self._moving = None, False

    def _on_imported(self, model: object) -> None:
        self._ended()
        assert isinstance(model, InstalledModel)
        self.imported.emit(model)
        name = model.path.name
        note = f" {model.note}" if model.note else ""
        self._host.end_progress(f"Imported {name}.{note} Choose it and press Use to chat with it.")

    def _on_moved(self, move: FolderMove) -> None:
        self._ended()
        log.info("moved the models from %s to %s", move.source, move.target)
        self._host.folders.set_models_dir(move.target)  # everyone who follows it is told
        self._host.end_progress(f"The models are now in {move.target}.")

    def _on_failed(self, message: str) -> None:
        self._ended()
        self._host.end_progress(message)


def _models_text(move: FolderMove) -> str:
    """ "2 models", "1 model and 1 unfinished download" (records beside them not counted)."""
    models = sum(1 for f in move.files if f.suffix == ".gguf" and len(f.parts) == 1)
    parts = sum(1 for f in move.files if f.parts[0] == ".downloads" and f.suffix == ".incomplete")
    text = f"{models} model{'' if models == 1 else 's'}"
    if parts:
        text += f" and {parts} unfinished download{'' if parts == 1 else 's'}"
    return text
