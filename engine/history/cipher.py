"""Encrypted chat databases: SQLite3 Multiple Ciphers (``apsw-sqlite3mc``) behind the
small part of the stdlib ``sqlite3`` API that the history domain uses.

Why this library (ARCHITECTURE.md has the comparison): it ships maintained wheels for
Windows, macOS and Linux (``sqlcipher3-binary`` has Linux x86-64 only), its SQLite is
built with FTS5, and WAL works on encrypted files. Its API (apsw) is not the stdlib's,
so ``Connection`` here adapts it: the same ``execute``/``executemany``/``fetch*``/
``rowcount``/``lastrowid``/``in_transaction``/``backup`` calls, and errors raised as the
stdlib's ``sqlite3`` exception classes with ``sqlite_errorcode`` set, so ``db.py``'s
``except sqlite3.…`` clauses treat an encrypted file exactly like a plain one.

Plain files stay on the stdlib ``sqlite3``: one SQLite library per file, because two
copies of SQLite in one process do not see each other's POSIX locks.

The cipher is ChaCha20-Poly1305 (the library's default, authenticated per page) with a
raw 256-bit key: no key derivation on each open (a passphrase is stretched once, with
Argon2id, by the key holder, ``engine/crypto``). The key is set by a pragma after the
file is opened, so it never appears in a file name or an error message.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.errors import StoreError

KEY_BYTES = 32
CIPHER = "chacha20"
# SQLite's page cache of an encrypted connection (the default is 2 MiB). A page read
# again from the OS cache costs a decryption, not just a copy, so a session that searches
# repeatedly keeps more decrypted pages. Filled only as pages are read.
CACHE_KIB = 32 * 1024
_PLAIN_MAGIC = b"SQLite format 3\x00"

try:  # an optional part of a build: a sentence, not a crash, when it is missing
    import apsw as _apsw

    apsw: ModuleType | None = _apsw
except ImportError:  # pragma: no cover - exercised by a test that hides the module
    apsw = None


class CipherMissingError(StoreError):
    """This build of Hearth has no encryption library."""


class WrongKeyError(StoreError):
    """The key (passphrase, keyring key or recovery key) does not open this file."""


def cipher_available() -> bool:
    return apsw is not None


def require_cipher() -> ModuleType:
    if apsw is None:
        raise CipherMissingError(
            "This copy of Hearth was built without its encryption library "
            "(apsw-sqlite3mc), so it cannot open or make an encrypted chat history. "
            "Reinstall Hearth, or run `pip install apsw-sqlite3mc` in its environment."
        )
    return apsw


def is_plain_file(path: Path) -> bool | None:
    """True for a plain SQLite file, False for anything else (an encrypted one, or
    damage), None when there is no file or it is empty (a new history)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_PLAIN_MAGIC))
    except FileNotFoundError:
        return None
    if not head:
        return None
    return head == _PLAIN_MAGIC


def raw_key_pragma(key: bytes) -> str:
    """The hex of ``x'<key>'``: the library's form for a raw key (no KDF)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a chat key is {KEY_BYTES} bytes, not {len(key)}")
    return f"x'{key.hex()}'".encode("ascii").hex()


def target_uri(path: Path, key: bytes | None) -> str:
    """A URI for ``VACUUM INTO ?``: ``key`` None writes a plain file. Bind it as a
    parameter; never log it (it holds the key)."""
    uri = path.absolute().as_uri()
    if key is None:
        return f"{uri}?cipher={CIPHER}&key="
    return f"{uri}?cipher={CIPHER}&hexkey={raw_key_pragma(key)}"


# -- errors: apsw's classes → the stdlib's, with the same codes -----------------------

_INTEGRITY = {19, 20}  # CONSTRAINT, MISMATCH
_DATABASE = {11, 24, 26}  # CORRUPT, FORMAT, NOTADB
_PROGRAMMING = {21, 25}  # MISUSE, RANGE


def _stdlib_error(e: Exception) -> sqlite3.Error:
    result = getattr(e, "result", -1)
    extended = getattr(e, "extendedresult", result)
    primary = result & 0xFF if isinstance(result, int) and result >= 0 else -1
    cls: type[sqlite3.Error]
    if primary in _INTEGRITY:
        cls = sqlite3.IntegrityError
    elif primary in _DATABASE:
        cls = sqlite3.DatabaseError
    elif primary in _PROGRAMMING or primary < 0:
        cls = sqlite3.ProgrammingError
    elif primary == 18:  # TOOBIG
        cls = sqlite3.DataError
    elif primary == 2:  # INTERNAL
        cls = sqlite3.InternalError
    else:
        cls = sqlite3.OperationalError
    # apsw prefixes the class name ("NotADBError: file is not a database"); keep SQLite's words
    text = str(e).split(": ", 1)[-1] if str(e).startswith(type(e).__name__) else str(e)
    err = cls(text)
    if primary >= 0:
        err.sqlite_errorcode = extended
        err.sqlite_errorname = type(e).__name__
    return err


class _Translate:
    """``with _Translate():`` raises apsw's errors as the stdlib's."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: type[BaseException] | None, e: BaseException | None, tb: object) -> None:
        if apsw is not None and isinstance(e, apsw.Error):
            raise _stdlib_error(e) from e


_translate = _Translate()


class Cursor:
    """The rows of one statement, as ``sqlite3.Cursor`` gives them."""

    def __init__(self, cursor: Any, rowcount: int, lastrowid: int) -> None:
        self._cursor = cursor
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Any:
        with _translate:
            return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with _translate:
            return list(self._cursor.fetchall())

    def __iter__(self) -> Iterator[Any]:
        with _translate:
            yield from self._cursor

    def close(self) -> None:
        with _translate:
            self._cursor.close()


class Connection:
    """An encrypted database file, used like a ``sqlite3.Connection`` opened with
    ``isolation_level=None`` (every statement commits unless inside BEGIN…COMMIT)."""

    def __init__(self, path: Path | str, key: bytes | None, *, read_only: bool = False) -> None:
        lib = require_cipher()
        flags = lib.SQLITE_OPEN_URI
        if read_only:
            flags |= lib.SQLITE_OPEN_READONLY
        else:
            flags |= lib.SQLITE_OPEN_READWRITE | lib.SQLITE_OPEN_CREATE
        name = str(path)
        with _translate:
            self._c = lib.Connection(name, flags=flags)
            try:
                self._c.execute(f"PRAGMA cipher = '{CIPHER}'")
                if key is not None:
                    self._c.execute(f"PRAGMA hexkey = '{raw_key_pragma(key)}'")
                    # Reads page 1: a wrong key fails here first; the caller's first
                    # read says so, where it looks for it.
                    with contextlib.suppress(lib.Error):
                        self._c.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            except BaseException:
                self._c.close()
                raise

    @property
    def in_transaction(self) -> bool:
        return bool(self._c.in_transaction)

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        with _translate:
            cursor = self._c.execute(sql, tuple(params))
            return Cursor(cursor, self._c.changes(), self._c.last_insert_rowid())

    def executemany(self, sql: str, seq: Iterable[Sequence[object]]) -> Cursor:
        with _translate:
            before = self._c.total_changes()
            cursor = self._c.executemany(sql, [tuple(p) for p in seq])
            return Cursor(cursor, self._c.total_changes() - before, self._c.last_insert_rowid())

    def backup(self, target: Connection, *, pages: int = -1) -> None:
        """Copy this database into ``target`` (opened with the same key)."""
        with _translate, target._c.backup("main", self._c, "main") as b:
            while not b.done:
                b.step(pages)

    def set_progress_handler(self, handler: Callable[[], bool] | None, n: int) -> None:
        """``handler`` every ``n`` virtual-machine steps; True from it interrupts."""
        self._c.set_progress_handler(handler, n)

    def close(self) -> None:
        with _translate:
            self._c.close()


def connect(path: Path | str, key: bytes | None, *, read_only: bool = False) -> Connection:
    """Open ``path`` with ``key`` (None: a plain file through the same library, for a
    migration's other side). Reading nothing yet: a wrong key shows at the first read."""
    return Connection(path, key, read_only=read_only)


def key_error(path: Path) -> WrongKeyError:
    return WrongKeyError(
        f"The chat history at {path} could not be unlocked with this key: the passphrase "
        "or recovery key is wrong, or the file was encrypted by another Hearth. "
        "Try again; your chats are unchanged."
    )


Database = sqlite3.Connection | Connection
"""A chat database connection: the stdlib's for a plain file, ours for an encrypted one."""

# The key of each encrypted store open in this process, by its file: a second connection
# (an export, an import, a folder move, on a thread of its own) opens with the same key
# without every caller carrying it. The first connection adds it and removes it on close.
_open_keys: dict[str, bytes] = {}


def _slot(path: Path) -> str:
    return str(path.expanduser().absolute())


def remember_key(path: Path, key: bytes) -> None:
    _open_keys[_slot(path)] = key


def key_for(path: Path) -> bytes | None:
    return _open_keys.get(_slot(path))


def forget_key(path: Path) -> None:
    _open_keys.pop(_slot(path), None)
