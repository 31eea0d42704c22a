"""The one owner of where the chats and the models are while Hearth runs.

Everyone who shows or uses a folder (About, Settings → Open, the model manager, the
engine's load requests, a later move) reads it here, at the moment it needs it, and
nobody keeps a copy: a move changes it in one place, saves it in the settings, and says
so with ``models_dir_changed`` / ``chats_dir_changed`` for whoever must follow (a
loaded model's path, a dialog on screen).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.folders_at_start import chosen_folders
from app.paths import AppPaths
from engine.settings import Settings, Storage
from ui.settings_dialog import Folder

__all__ = ["Folder", "Folders"]


class Folders(QObject):
    models_dir_changed = Signal(object)  # Path: the models are there now
    chats_dir_changed = Signal(object)  # Path: the chat database is there now

    def __init__(self, paths: AppPaths, settings: Settings, parent: QObject | None = None) -> None:
        """``paths`` with the folders already chosen (``from_settings`` does that)."""
        super().__init__(parent)
        self._paths = paths
        self._settings = settings

    @classmethod
    def from_settings(
        cls, paths: AppPaths, settings: Settings, parent: QObject | None = None
    ) -> tuple[Folders, tuple[str, ...]]:
        """The folders the settings name, where they are there, and sentences about
        those that are not (the defaults are used meanwhile)."""
        chosen, notices = chosen_folders(paths, settings)
        return cls(chosen, settings, parent), notices

    @property
    def paths(self) -> AppPaths:
        """All of Hearth's folders as they are now (a value: read it again later)."""
        return self._paths

    @property
    def models_dir(self) -> Path:
        return self._paths.models_dir

    @property
    def chats_dir(self) -> Path:
        return self._paths.chats_dir

    def folder(self, which: Folder) -> Path:
        return self.models_dir if which is Folder.MODELS else self.chats_dir

    def set_models_dir(self, folder: Path) -> None:
        """The models are in ``folder`` now (moved there): use it and remember it."""
        default = (self._paths.data_dir / "models").resolve()
        chosen = None if folder.resolve() == default else folder
        self._settings.set(Storage.MODELS_DIR, str(chosen or ""))
        self._paths = self._paths.with_models_dir(chosen)
        self.models_dir_changed.emit(self.models_dir)

    def set_chats_dir(self, folder: Path) -> None:
        """The chat database is in ``folder`` now (moved there): use it and remember it."""
        chosen = None if folder.resolve() == self._paths.data_dir.resolve() else folder
        self._settings.set(Storage.CHATS_DIR, str(chosen or ""))
        self._paths = self._paths.with_chats_dir(chosen)
        self.chats_dir_changed.emit(self.chats_dir)
