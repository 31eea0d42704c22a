"""Run a store test module twice: on a plain file and on an encrypted one (issue 17).

``pytestmark = both_ciphers`` in a module makes every test there take the
``store_cipher`` fixture: in the "encrypted" run, every ``ChatStore``/``StoreDatabase``
opened without a key gets the test key, so a test that reopens its file by path
reopens it encrypted too. A test that reads the file with the stdlib's ``sqlite3``
(plain files only) asks for ``plain_connect`` instead, which opens the file the way
the store does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.history import cipher, db

TEST_KEY = bytes(range(32))

both_ciphers = pytest.mark.usefixtures("store_cipher")


_mode = {"now": "plain"}


@pytest.fixture(params=["plain", "encrypted"])
def store_cipher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # A file written by another program (an old version's, garbage) is plain by nature:
    # such a test says so with @pytest.mark.plain_file and runs on a plain file twice.
    plain_only = request.node.get_closest_marker("plain_file") is not None
    _mode["now"] = "plain" if plain_only else str(request.param)
    if _mode["now"] == "encrypted":
        init = db.StoreDatabase.__init__

        def keyed(self: db.StoreDatabase, path: Path, **kw: Any) -> None:
            kw.setdefault("key", TEST_KEY)
            init(self, path, **kw)

        monkeypatch.setattr(db.StoreDatabase, "__init__", keyed)
        second = db.StoreDatabase.second.__func__  # type: ignore[attr-defined]

        def keyed_second(cls: type[db.StoreDatabase], path: Path, **kw: Any) -> Any:
            kw.setdefault("key", TEST_KEY)
            return second(cls, path, **kw)

        monkeypatch.setattr(db.StoreDatabase, "second", classmethod(keyed_second))
    yield _mode["now"]
    _mode["now"] = "plain"


class _Raw(cipher.Connection):
    """The cipher's connection with what tests use of ``sqlite3.Connection`` besides."""

    def commit(self) -> None:
        """Each statement commits by itself (isolation_level=None)."""

    def __enter__(self) -> _Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_raw(path: Path | str) -> Any:
    """The store's file opened past the store (to damage it, or to look): the stdlib's
    ``sqlite3.connect`` in a plain run, the cipher's connection in an encrypted one."""
    if _mode["now"] == "plain":
        return sqlite3.connect(path)
    return _Raw(Path(path), TEST_KEY)
