"""The chat database file: opening, migrating, transactions, and errors a person can act on.

Every write commits at once. With WAL and ``synchronous=NORMAL`` a committed
write survives the death of the process (kill -9, a crash); only a power cut
can lose the last few commits.

Threading: one connection, used from the thread that created it (sqlite3
enforces this with ``ProgrammingError``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, cast

from engine.errors import StoreError
from engine.history import cipher
from engine.history import schema as store_schema

SCHEMA_VERSION = store_schema.SCHEMA_VERSION
# A deleted conversation can be brought back (undo_delete) until it is purged,
# which happens when a store opens, for those deleted longer ago than this.
DELETED_KEEP_S = 7 * 24 * 3600.0

_has_fts5 = functools.cache(store_schema.has_fts5)

_log = logging.getLogger(__name__)


class StoreFullError(StoreError):
    """The disk (or the database's size limit) is full: nothing is wrong with the file."""


class StoreLockedError(StoreError):
    """Another connection holds the database's write lock longer than the busy timeout."""


class StoreCorruptError(StoreError):
    """The file is not a database or is damaged (not a full disk or a lock)."""


def damage_marker(path: Path) -> Path:
    """An empty file next to the database saying "damage was seen: check it on open"."""
    return path.with_name(path.name + ".damaged")


def _backup(source: cipher.Database, target: cipher.Database) -> None:
    if isinstance(source, sqlite3.Connection) and isinstance(target, sqlite3.Connection):
        source.backup(target, pages=-1)
    elif isinstance(source, cipher.Connection) and isinstance(target, cipher.Connection):
        source.backup(target, pages=-1)  # the same key on both sides
    else:  # pragma: no cover - _connect gives both sides the same kind
        raise TypeError("a backup between a plain and an encrypted file")


class _Locked:
    """Where the connection was while the store is locked: every use fails as a closed
    file does, and the store turns that into the lock's sentence (``_failure``)."""

    in_transaction = False

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        raise sqlite3.OperationalError("the chat history is locked")

    executemany = execute

    def close(self) -> None:
        return None


class StoreDatabase:
    """The SQLite file at ``path``, opened and brought to the current schema."""

    _commits = 0
    _held: str | None = None  # why writing is refused now (hold_writes, lock)

    def __init__(
        self,
        path: Path,
        *,
        key: bytes | None = None,
        key_verified: bool = False,
        clock: Callable[[], float] = time.time,
        keep_deleted_s: float = DELETED_KEEP_S,
    ) -> None:
        """``key``: the file is (or a new one will be) encrypted with it (``cipher.py``).
        A key that does not open the file raises ``cipher.WrongKeyError`` and leaves it
        alone, unless ``key_verified`` (the key holder checked the key itself): then the
        file is damaged, like a plain file that is not a database.
        """
        self._path = path
        self._clock = clock
        self._keep_deleted_s = keep_deleted_s
        self._key = key
        self._key_verified = key_verified
        self._owner = True
        if key is None and not _has_fts5():
            store_schema.require_fts5()  # raises, with the SQLite version in the sentence
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > 0:
                self._check(path)
            self._db: cipher.Database = self._connect(path)
        except (OSError, sqlite3.Error) as e:
            raise self._failure("open", e) from e
        try:
            self._open(keep_deleted_s)
        except sqlite3.OperationalError as e:  # locked, disk full, read-only: not the file
            self._db.close()
            raise self._failure("open", e) from e
        except sqlite3.DatabaseError as e:  # damage deeper in the file
            self._db.close()
            raise self._unreadable(e) from e
        except BaseException:
            self._db.close()
            raise
        if key is not None:
            cipher.remember_key(path, key)

    def _connect(self, target: Path, *, read_only: bool = False) -> cipher.Database:
        """A connection to ``target``: the stdlib's for a plain file, the cipher's with a key."""
        if self._key is not None:
            return cipher.connect(target, self._key, read_only=read_only)
        if read_only:
            uri = f"{target.resolve().as_uri()}?mode=ro"
            return sqlite3.connect(uri, uri=True, isolation_level=None)
        return sqlite3.connect(target, isolation_level=None)  # we commit ourselves

    @property
    def encrypted(self) -> bool:
        return self._key is not None

    @classmethod
    def second(cls, path: Path, *, read_only: bool = False, key: bytes | None = None) -> Self:
        """Another connection to the store already open at ``path``, for a thread of its
        own (an export, an import, the copy of a move): the first one belongs to the
        thread that opened it. It does none of the opening work (no migration, and a
        reply streaming on the first connection is not marked interrupted). With WAL a
        reader never blocks the first connection's writes; a writer makes them wait
        (``busy_timeout``) for each of its transactions. Close it on the same thread.
        An encrypted store's key is the one it was opened with in this process
        (``cipher.key_for``) unless ``key`` is given.
        """
        self = cls.__new__(cls)
        self._path, self._clock, self._keep_deleted_s = path, time.time, DELETED_KEEP_S
        self._key, self._key_verified, self._owner = key or cipher.key_for(path), True, False
        try:
            if not read_only and not path.is_file():  # connect would make an empty one
                raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
            self._db = self._connect(path, read_only=read_only)
        except (OSError, sqlite3.Error) as e:
            raise self._failure("open", e) from e
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA foreign_keys = ON")
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise self._failure("open", e) from e
        if version != SCHEMA_VERSION:  # the first connection brought it up to date
            self._db.close()
            raise StoreError(
                f"The chat history at {path} is not in this Hearth's format ({version}, "
                f"not {SCHEMA_VERSION}). Restart Hearth and try again."
            )
        return self

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see the file as it was at the first one (a read transaction):
        an export of a chat whose reply streams meanwhile is whole, not half-written."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    @property
    def commits(self) -> int:
        """How many write transactions this connection has committed (to see whether
        the file changed while a copy of it was made)."""
        return self._commits

    def move_to(self, target: Path) -> None:
        """Move the database to ``target`` and go on using it there: ``copy_to`` through
        a second connection, then ``switch_to``. Blocks for the copy: a few MB take
        milliseconds, 1 GB a few seconds (the app runs the two halves apart)."""
        target = target.expanduser().absolute()
        with type(self).second(self._path, read_only=True) as source:
            source.copy_to(target)
        self.switch_to(target)

    def copy_to(self, target: Path) -> None:
        """Make ``target`` a checked copy of this database, or raise leaving nothing there.

        A consistent copy is made with SQLite's online backup (the write-ahead log
        included) inside one read transaction, checked (``integrity_check``, the same
        number of conversations), and renamed into place. Writes by other connections
        go on meanwhile; those after the copy's snapshot are not in it (see ``commits``).
        """
        target = target.expanduser().absolute()
        if target.exists():
            raise StoreError(f"{target} already exists: choose a folder without Hearth chats.")
        part = target.with_name(target.name + ".moving")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            part.unlink(missing_ok=True)
            copy = self._connect(part)
            try:
                with self.snapshot():
                    here = self._db.execute("SELECT count(*) FROM conversations").fetchone()[0]
                    _backup(self._db, copy)  # one step: the snapshot, whole
                check = copy.execute("PRAGMA integrity_check").fetchone()[0]
                counted = copy.execute("SELECT count(*) FROM conversations").fetchone()[0]
            finally:
                copy.close()
            if check != "ok" or counted != here:
                raise StoreError(
                    f"The copy of your chats in {target.parent} did not check out ({check}); "
                    "nothing was moved.",
                    detail=f"{counted} of {here} conversations",
                )
            os.replace(part, target)
        except (OSError, sqlite3.Error) as e:
            part.unlink(missing_ok=True)
            raise self._failure("copy", e) from e
        except StoreError:
            part.unlink(missing_ok=True)
            raise

    def switch_to(self, target: Path) -> None:
        """Go on using ``target`` (a ``copy_to`` of this file) and delete the old file."""
        old = self._path
        self._db.close()
        self._path = target
        self._db = self._connect(target)
        self._open(self._keep_deleted_s)
        if self._key is not None:
            cipher.forget_key(old)
            cipher.remember_key(target, self._key)
        for suffix in ("", "-wal", "-shm"):
            try:
                Path(f"{old}{suffix}").unlink(missing_ok=True)
            except OSError as e:  # the copy is in use; the old one is only left behind
                _log.warning("could not delete %s%s: %s", old, suffix, e)

    def hold_writes(self, sentence: str) -> None:
        """Refuse every write until ``reopen``: a conversion (``migrate.convert``) is
        copying this file on another thread, and a write now would be missing from the
        copy. The write-ahead log is emptied into the file first (here, on the thread
        that owns the connection), so the copy reads one file that nobody changes;
        ``query_only`` makes SQLite itself refuse a write no caller foresaw. Reading
        goes on. Raises ``StoreError`` (locked, disk) leaving writes allowed."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("PRAGMA query_only = ON")
        except sqlite3.DatabaseError as e:
            raise self._failure("prepare", e) from e
        self._held = sentence

    @property
    def writes_held(self) -> str | None:
        return self._held

    def lock(self, sentence: str) -> None:
        """Close the file and forget its key until ``reopen(key)`` ("Lock now"): reading
        and writing fail with ``sentence`` meanwhile. Python cannot wipe the key's bytes
        from memory; this drops the store's references to it (and SQLite's, with the
        connection)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        if self._owner and self._key is not None:
            cipher.forget_key(self._path)
        self._db = cast(cipher.Database, _Locked())
        self._key = None
        self._held = sentence

    @property
    def locked(self) -> bool:
        return isinstance(self._db, _Locked)

    def reopen(self, key: bytes | None) -> None:
        """Go on with the same file, now (or no longer) encrypted with ``key``: after
        ``close()`` and a conversion (``migrate.convert``), so that everything holding
        this store keeps holding it."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._held = None  # a new connection: query_only is off
        self._key, self._key_verified = key, True
        try:
            self._db = self._connect(self._path)
            self._open(self._keep_deleted_s)
        except sqlite3.DatabaseError as e:
            raise self._failure("open", e) from e
        if key is not None:
            cipher.remember_key(self._path, key)

    def _not_this_key(self, path: Path, e: sqlite3.DatabaseError) -> None:
        """Page 1 unreadable with a key nobody checked: a wrong key, not damage
        (an encrypted page that fails its check looks the same); the file stays."""
        if cipher.is_plain_file(path):
            raise StoreError(
                f"The chat history at {path} is not encrypted, but Hearth was asked to "
                "unlock it. Turn encryption on again in Settings → Privacy & storage, "
                "or run `hearth encrypt`.",
                detail=repr(e),
            ) from e
        raise cipher.key_error(path) from e

    def _unreadable(self, e: sqlite3.DatabaseError) -> StoreCorruptError:
        return StoreCorruptError(
            f"The chat history at {self._path} cannot be read ({e}); it may be damaged. "
            "Hearth left the file as it is: move it elsewhere to start with an "
            "empty history, or restore it from a backup.",
            detail=repr(e),
        )

    def _check(self, path: Path) -> None:
        """Look at an existing file through a read-only connection first.

        Closing the last read-write connection deletes the write-ahead log, which
        may hold the newest chats of a file whose main part is damaged; a
        read-only connection leaves every file as it was, for the person to keep.
        """
        probe = self._connect(path, read_only=True)
        try:
            version = int(probe.execute("PRAGMA user_version").fetchone()[0])
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The chat history at {path} was written by a newer version of "
                    f"Hearth (format {version}; this version reads up to {SCHEMA_VERSION}). "
                    "Update Hearth to open it."
                )
            # Damage seen while running (see _failure): check the whole file this
            # once, so a damaged one is set aside instead of failing at every read.
            if damage_marker(path).exists():
                problems = [r[0] for r in probe.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems[:3]))
        except sqlite3.OperationalError:
            raise  # locked, unreadable folder: not the file's fault
        except sqlite3.DatabaseError as e:  # not a database, or a damaged one
            if self._key is not None and not self._key_verified:
                self._not_this_key(path, e)
            raise self._unreadable(e) from e
        finally:
            probe.close()

    def _open(self, keep_deleted_s: float) -> None:
        db = self._db
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        marker = damage_marker(self._path)
        checked = marker.exists()  # and _check found the tables sound
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        if version >= 1:
            with self._transaction():
                # A reply still marked as streaming belongs to a process that died;
                # from v2 on, this update indexes it for search. (The literal lets
                # SQLite use the partial index messages_streaming.)
                db.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")
        for step in range(version, SCHEMA_VERSION):
            with self._transaction():
                for statement in store_schema.MIGRATIONS[step]:
                    db.execute(statement)
                if step in store_schema.AFTER_STEP:
                    store_schema.AFTER_STEP[step](db)
                db.execute(f"PRAGMA user_version = {step + 1}")
        if checked:
            # The tables are sound, so the damage was in the search index (or gone):
            # rebuild the index from the messages.
            try:
                db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
                db.execute("INSERT INTO messages_cjk(messages_cjk) VALUES ('integrity-check')")
            except sqlite3.DatabaseError:
                with self._transaction():
                    for statement in store_schema.REBUILD_SEARCH:
                        db.execute(statement)
                    store_schema.rebuild_cjk(db)
            marker.unlink(missing_ok=True)
        with self._transaction():
            db.execute(
                "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?",
                (self._clock() - keep_deleted_s,),
            )

    def _failure(self, verb: str, e: BaseException) -> StoreError:
        if self._held is not None:  # query_only refused it: say why, not "read-only disk"
            return StoreError(self._held, detail=repr(e))
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            with contextlib.suppress(OSError):
                damage_marker(self._path).touch()
            return StoreCorruptError(
                f"The chat history at {self._path} is damaged ({e}). Quit and restart "
                "Hearth: it will set the damaged file aside, keep it, and start a new one.",
                detail=repr(e),
            )
        primary = code & 0xFF if code is not None else None
        if primary == sqlite3.SQLITE_FULL or getattr(e, "errno", None) == errno.ENOSPC:
            return StoreFullError(
                f"The disk is full: Hearth could not {verb} the chat history at "
                f"{self._path}. Free some space on that disk.",
                detail=repr(e),
            )
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return StoreLockedError(
                "The chat history is locked by another program: Hearth could not "
                f"{verb} {self._path}. Close the other program (or the other Hearth) "
                "that uses it.",
                detail=repr(e),
            )
        return StoreError(
            f"Could not {verb} the chat history at {self._path} ({e}). Check that the disk "
            "has free space, that you may write to the folder, and that no other Hearth "
            "is using it.",
            detail=repr(e),
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._held is not None:
            raise StoreError(self._held)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (disk full)
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._commits += 1

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A transaction whose environment failures become a sentence for the person."""
        try:
            with self._transaction():
                yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise  # a bug in the caller, not the environment
        except sqlite3.DatabaseError as e:
            raise self._failure("save to", e) from e

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._failure("read", e) from e

    @property
    def path(self) -> Path:
        return self._path

    def rebuild_search_index(self) -> None:
        """Rebuild the full-text index from the messages (if search misbehaves)."""
        with self._writing():
            for statement in store_schema.REBUILD_SEARCH:
                self._db.execute(statement)
            store_schema.rebuild_cjk(self._db)

    def check_integrity(self, *, quick: bool = True) -> list[str]:
        """Problems SQLite finds in the file and the search index; [] if none.

        Reads the whole file: seconds on a large history (see bench/RESULTS.md).
        The index check compares it with the messages, so run it when no reply
        is streaming (a streaming reply is indexed when it finishes).
        """
        pragma = "quick_check" if quick else "integrity_check"
        problems = [r[0] for r in self._rows(f"PRAGMA {pragma}") if r[0] != "ok"]
        for index in ("messages_fts", "messages_cjk"):
            try:
                self._db.execute(f"INSERT INTO {index}({index}) VALUES ('integrity-check')")
            except sqlite3.DatabaseError as e:
                problems.append(f"search index ({index}): {e}")
        return problems

    def close(self) -> None:
        """Close the connection (safe to call twice); the first one forgets its key."""
        self._db.close()
        if self._owner and self._key is not None:
            cipher.forget_key(self._path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
