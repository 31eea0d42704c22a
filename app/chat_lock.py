"""The encrypted chat history as both front ends use it: which key unlocks it, opening
it, and turning encryption on, off or to a new key. No Qt (the command line uses it).

The pieces: ``engine.crypto.keys`` holds the key (keyring or passphrase, the key file
``<db>.key``), ``engine.history.cipher`` opens the file with it, ``engine.history.migrate``
converts the file. This module keeps the key file and the database in step: a new key
file waits as ``<db>.key.new`` and takes its place at the moment the converted database
does (``on_swapped``); ``recover`` finishes or undoes that after a crash.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from engine.crypto import keys
from engine.errors import KnownError, StoreError
from engine.history import cipher, migrate
from engine.history.opening import open_store
from engine.history.store import ChatStore

log = logging.getLogger(__name__)


class Protection(StrEnum):
    NONE = "none"  # a plain file (or no history yet)
    KEYRING = "keyring"
    PASSPHRASE = "passphrase"
    UNKNOWN = "unknown"  # not a plain file and no key file: a recovery key, or damage


@dataclass(frozen=True)
class Encrypted:
    """What a person must keep after encryption was turned on or the key changed."""

    recovery_code: str
    seconds: float


class ChatLock:
    """The key side of the history at ``db``."""

    def __init__(self, db: Path, keyring: keys.Keyring | None = None) -> None:
        self.db = db
        self.keyring = keyring if keyring is not None else keys.Keyring()

    # -- what there is ----------------------------------------------------------------

    def keyfile(self) -> keys.KeyFile | None:
        return keys.read_keyfile(keys.keyfile_path(self.db))

    def protection(self) -> Protection:
        kf = self.keyfile()
        if kf is not None:
            return Protection(kf.holder)
        if cipher.is_plain_file(self.db) is False:
            return Protection.UNKNOWN
        return Protection.NONE

    def recover(self) -> str | None:
        """Finish or undo a conversion a crash interrupted; a sentence if there was one."""
        done = migrate.recover(self.db)
        if done is None:
            keys.pending_path(self.db).unlink(missing_ok=True)  # a set-up cut before it began
            return None
        if done.swapped:
            self._swapped(done.op, done.extra)
        else:
            keys.pending_path(self.db).unlink(missing_ok=True)
            new_id = str(done.extra.get("new_key_id", ""))
            current = self.keyfile()
            if new_id and (current is None or current.key_id != new_id):
                self.keyring.forget(new_id)
        migrate.finish(self.db)
        log.warning("an interrupted %s of the chat history was resolved", done.op.value)
        return done.notice

    def _swapped(self, op: migrate.Op, extra: dict[str, object]) -> None:
        """The converted database is in place: make its key file the one in use."""
        keyfile, pending = keys.keyfile_path(self.db), keys.pending_path(self.db)
        if op is migrate.Op.DECRYPT:
            keyfile.unlink(missing_ok=True)
        elif pending.exists():
            pending.replace(keyfile)
        old_id = str(extra.get("old_key_id", ""))
        if old_id and old_id != extra.get("new_key_id"):
            self.keyring.forget(old_id)

    # -- unlocking ----------------------------------------------------------------------

    def key_from_keyring(self) -> bytes:
        kf = self.keyfile()
        if kf is None or kf.holder != "keyring":
            raise keys.ChatKeyError("Your chats are not kept with a key in the keyring.")
        key = self.keyring.load(kf.key_id)
        if key is None:
            raise keys.missing_entry()
        return key

    def key_from_passphrase(self, passphrase: str) -> bytes:
        kf = self.keyfile()
        if kf is None:
            raise keys.ChatKeyError("Your chats are not locked by a passphrase.")
        return kf.unwrap(passphrase)

    def key_from_recovery(self, code: str) -> bytes:
        """The recovery key, checked against the key file; a keyring-held history gets
        its keyring entry back (it was deleted, or this is another computer)."""
        key = keys.key_from_recovery(code)
        kf = self.keyfile()
        if kf is not None and kf.key_id != keys.key_id(key):
            raise keys.ChatKeyError(
                "That recovery key belongs to other chats (it was shown when encryption was "
                "turned on for another history, or before the key was changed)."
            )
        if kf is not None and kf.holder == "keyring":
            with contextlib.suppress(keys.ChatKeyError):
                self.keyring.save(key)
        return key

    def open(self, key: bytes | None) -> tuple[ChatStore, str | None]:
        """The store, unlocked with ``key`` (None for a plain history)."""
        kf = self.keyfile()
        verified = key is not None and kf is not None and kf.key_id == keys.key_id(key)
        if key is None and kf is not None:
            raise keys.ChatKeyError("Your chats are encrypted: unlock them first.")
        if key is None and cipher.is_plain_file(self.db) is False:
            raise StoreError(
                f"The chat history at {self.db} is not a plain database and has no key "
                "file: it may be encrypted (enter your recovery key) or damaged (move it "
                "elsewhere to start with an empty history)."
            )
        store, notice = open_store(self.db, key=key, key_verified=verified)
        if key is not None and kf is None:  # opened with a recovery key: write the file
            keys.write_keyfile(keys.keyfile_path(self.db), keys.in_keyring(key))
            with contextlib.suppress(keys.ChatKeyError):
                self.keyring.save(key)
        return store, notice

    # -- converting (the store must be closed) ------------------------------------------

    def _holder(self, key: bytes, passphrase: str | None) -> keys.KeyFile:
        if passphrase is not None:
            return keys.with_passphrase(key, passphrase)
        self.keyring.save(key)  # raises NoKeyringError: the person chooses a passphrase
        return keys.in_keyring(key)

    def encrypt(
        self,
        *,
        passphrase: str | None = None,
        progress: Callable[[float], None] = lambda f: None,
        pause: Callable[[str], None] = lambda step: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Encrypted:
        """Encrypt the plain history with a new key held by the keyring (no
        ``passphrase``) or by ``passphrase``."""
        if self.protection() is not Protection.NONE:
            raise StoreError("Your chats are encrypted already.")
        if not self.db.exists():
            ChatStore(self.db).close()  # an empty history, so that there is a file to convert
        return self._convert(migrate.Op.ENCRYPT, None, passphrase, progress, pause, cancelled)

    def rekey(
        self,
        old_key: bytes,
        *,
        passphrase: str | None = None,
        progress: Callable[[float], None] = lambda f: None,
        pause: Callable[[str], None] = lambda step: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Encrypted:
        """Encrypt again with a new key (and a new recovery key), held as asked."""
        return self._convert(migrate.Op.REKEY, old_key, passphrase, progress, pause, cancelled)

    def _convert(
        self,
        op: migrate.Op,
        old_key: bytes | None,
        passphrase: str | None,
        progress: Callable[[float], None],
        pause: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> Encrypted:
        cipher.require_cipher()
        if passphrase is not None:
            keys.check_passphrase(passphrase)
        new = keys.new_key()
        kf = self._holder(new, passphrase)
        pending = keys.pending_path(self.db)
        keys.write_keyfile(pending, kf)
        extra = {"new_key_id": kf.key_id}
        if old_key is not None:
            extra["old_key_id"] = keys.key_id(old_key)
        try:
            done = migrate.convert(
                self.db,
                op,
                old_key=old_key,
                new_key=new,
                extra=extra,
                on_swapped=lambda: self._swapped(op, dict(extra)),
                progress=progress,
                pause=pause,
                cancelled=cancelled,
            )
        except BaseException:
            if migrate.read_marker(self.db) is None:  # nothing swapped: undo the new key
                pending.unlink(missing_ok=True)
                self.keyring.forget(kf.key_id)
            raise
        return Encrypted(keys.recovery_code(new), done.seconds)

    def decrypt(
        self,
        key: bytes,
        *,
        progress: Callable[[float], None] = lambda f: None,
        pause: Callable[[str], None] = lambda step: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> float:
        """Write the history back as a plain file; seconds it took."""
        extra = {"old_key_id": keys.key_id(key)}
        done = migrate.convert(
            self.db,
            migrate.Op.DECRYPT,
            old_key=key,
            new_key=None,
            extra=extra,
            on_swapped=lambda: self._swapped(migrate.Op.DECRYPT, dict(extra)),
            progress=progress,
            pause=pause,
            cancelled=cancelled,
        )
        return done.seconds

    def change_passphrase(self, key: bytes, passphrase: str | None) -> None:
        """Hold the same key another way (a new passphrase, or the keyring): the file
        is not rewritten; the recovery key stays valid."""
        kf = self._holder(key, passphrase)
        old = self.keyfile()
        keys.write_keyfile(keys.keyfile_path(self.db), kf)
        if old is not None and old.holder == "keyring" and kf.holder != "keyring":
            self.keyring.forget(old.key_id)


def carry_key_file(old_db: Path, new_db: Path) -> bool:
    """Copy the key file of the history at ``old_db`` next to ``new_db`` (a folder move);
    False if it has none. Copied before the switch, removed from the old folder after."""
    source = keys.keyfile_path(old_db)
    kf = keys.read_keyfile(source)
    if kf is None:
        return False
    try:
        keys.write_keyfile(keys.keyfile_path(new_db), kf)
    except OSError as e:
        raise StoreError(
            f"Could not write the key file of your encrypted chats in {new_db.parent} "
            f"({e.strerror or e}); nothing was moved.",
            detail=repr(e),
        ) from e
    return True


def drop_key_file(old_db: Path) -> None:
    with contextlib.suppress(OSError):
        keys.keyfile_path(old_db).unlink(missing_ok=True)


def sentence(exc: BaseException) -> str:
    """A known error's sentence, else a generic one (the traceback goes to the log)."""
    if isinstance(exc, KnownError):
        return exc.message
    log.exception("unexpected error around the chat key", exc_info=exc)
    return "Something unexpected went wrong; your chats are unchanged. The log has details."
