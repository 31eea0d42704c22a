"""A real ``keyring`` backend kept in a JSON file, for tests (issue 17).

Why not the system's: this machine and CI run headless, without a Secret Service, so
``keyring.get_keyring()`` is the fail backend there. This class implements the same
``KeyringBackend`` interface the system backends do (get/set/delete, PasswordDeleteError
for a missing entry), so Hearth's code runs unchanged on it; a JSON file (not memory)
lets a child process (``hearth encrypt`` run as a command) share it: point
``PYTHON_KEYRING_BACKEND`` at ``tests.fakes.file_keyring.FileKeyring`` and
``HEARTH_TEST_KEYRING`` at the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

ENV = "HEARTH_TEST_KEYRING"


class FileKeyring(KeyringBackend):
    # Below every real backend (and the fail one): keyring's detection, which makes one
    # of each subclass it knows, never picks this; only a test that asks gets it.
    priority = -1  # type: ignore[assignment]  # keyring declares a classproperty

    def __init__(self, path: Path | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.path = path or Path(os.environ.get(ENV) or os.devnull)

    def _entries(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return dict(data)

    def _save(self, entries: dict[str, str]) -> None:
        self.path.write_text(json.dumps(entries), encoding="utf-8")

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service}\n{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._entries()
        entries[f"{service}\n{username}"] = password
        self._save(entries)

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        if entries.pop(f"{service}\n{username}", None) is None:
            raise PasswordDeleteError("no such entry")
        self._save(entries)
