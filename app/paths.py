"""Where Hearth keeps things on disk.

Everything lives in the platform's per-user folders (platformdirs), outside
the install folder, so upgrades and uninstalls keep chats and models. Setting
``HEARTH_DATA_DIR`` (or ``--data-dir``) puts all of it under one folder
instead: tests and portable installs use that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import platformdirs

APP_NAME = "Hearth"


@dataclass(frozen=True, slots=True)
class AppPaths:
    data_dir: Path
    config_dir: Path
    log_dir: Path
    models_override: Path | None = None  # Settings → Privacy & storage → Models folder
    chats_override: Path | None = None  # Settings → Privacy & storage → Chats folder

    @property
    def models_dir(self) -> Path:
        return self.models_override or self.data_dir / "models"

    def with_chats_dir(self, folder: str | Path | None) -> AppPaths:
        """These paths with the chats folder the person chose (None: the default)."""
        return replace(self, chats_override=Path(folder).expanduser() if folder else None)

    def with_models_dir(self, folder: str | Path | None) -> AppPaths:
        """These paths with the models folder the person chose (None: the default)."""
        return replace(self, models_override=Path(folder).expanduser() if folder else None)

    @property
    def chats_dir(self) -> Path:
        return self.chats_override or self.data_dir

    @property
    def db_path(self) -> Path:
        return self.chats_dir / "hearth.sqlite3"

    @property
    def crash_file(self) -> Path:
        return self.log_dir / "crash.txt"

    def ensure(self) -> AppPaths:
        for folder in (self.data_dir, self.config_dir, self.log_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def resolve_paths(data_dir: str | Path | None = None) -> AppPaths:
    root = data_dir or os.environ.get("HEARTH_DATA_DIR")
    if root:
        base = Path(root).expanduser().resolve()
        return AppPaths(data_dir=base, config_dir=base / "config", log_dir=base / "logs")
    return AppPaths(
        data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
    )
