"""The chat key and who holds it.

The history is encrypted with one random 256-bit key (``new_key``). It is held either

- by the system keyring (service "Hearth chat history", account = the key's id): it
  unlocks by itself when the person is logged in, and protects a stolen disk or backup;
- or by a passphrase: the key is wrapped (AES-256-GCM) with a key stretched from the
  passphrase by Argon2id (RFC 9106's second recommended setting: 3 passes, 64 MiB,
  4 lanes; ~0.3 s), so a wrong passphrase is known at once and the database is never
  touched with a wrong key.

Either way ``<db>.key`` (JSON, next to the database) says which, the key's id (a hash
of the key: it shows whether a keyring entry or a recovery key belongs to this file)
and, for a passphrase, the wrapped key. It holds nothing that opens the history alone.

The recovery key is the chat key itself, written for a person (``recovery_code``): shown
once at set-up, it opens the history when the passphrase is forgotten, the keyring entry
is gone or ``<db>.key`` is lost. Nothing here logs a key or a passphrase.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import keyring
import keyring.backends.fail
import keyring.backends.null
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError

from engine.errors import KnownError

log = logging.getLogger(__name__)

KEY_BYTES = 32
SERVICE = "Hearth chat history"
# RFC 9106 §4, the second recommended option (for memory-constrained machines).
ARGON2_PASSES = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_LANES = 4
MIN_PASSPHRASE = 8

Holder = Literal["keyring", "passphrase"]


class ChatKeyError(KnownError):
    """The key could not be had: a wrong passphrase, no keyring, a lost entry."""


class WrongPassphraseError(ChatKeyError):
    pass


class NoKeyringError(ChatKeyError):
    pass


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def key_id(key: bytes) -> str:
    """A name for the key that does not reveal it."""
    return hmac.new(key, b"hearth chat key id", hashlib.sha256).hexdigest()[:16]


def recovery_code(key: bytes) -> str:
    """The key as 13 groups of 4 letters and digits (base32), for paper."""
    text = base64.b32encode(key).decode("ascii").rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def key_from_recovery(text: str) -> bytes:
    letters = "".join(c for c in text.upper() if c.isalnum())
    letters = letters.replace("0", "O").replace("1", "I").replace("8", "B")  # misreadings
    try:
        key = base64.b32decode(letters + "=" * (-len(letters) % 8))
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ChatKeyError(
            "That is not a whole recovery key: it has 52 letters and digits in groups of "
            "four (like ABCD-EFGH-…). Check each group and type it again."
        )
    return key


def check_passphrase(passphrase: str) -> str:
    if len(passphrase) < MIN_PASSPHRASE:
        raise ChatKeyError(
            f"Choose a passphrase of at least {MIN_PASSPHRASE} characters; a few words "
            "that belong together only for you are easy to remember and hard to guess."
        )
    return passphrase


def _stretch(passphrase: str, salt: bytes, passes: int, memory_kib: int, lanes: int) -> bytes:
    kdf = Argon2id(
        salt=salt, length=KEY_BYTES, iterations=passes, lanes=lanes, memory_cost=memory_kib
    )
    return kdf.derive(passphrase.encode("utf-8"))


@dataclass(frozen=True)
class KeyFile:
    """``<db>.key``: who holds the key of the history next to it."""

    holder: Holder
    key_id: str
    wrapped: dict[str, Any] | None = None  # a passphrase's Argon2id + AES-GCM slot

    def unwrap(self, passphrase: str) -> bytes:
        slot = self.wrapped
        if slot is None:
            raise ChatKeyError("This chat history is not locked by a passphrase.")
        b64 = base64.b64decode
        kek = _stretch(passphrase, b64(slot["salt"]), slot["passes"], slot["kib"], slot["lanes"])
        try:
            key = AESGCM(kek).decrypt(b64(slot["nonce"]), b64(slot["key"]), self.key_id.encode())
        except InvalidTag:
            raise WrongPassphraseError(
                "That passphrase does not unlock your chats. Check Caps Lock and the "
                "keyboard layout and try again, or use your recovery key."
            ) from None
        return key

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "holder": self.holder, "key_id": self.key_id, "wrapped": self.wrapped}


def with_passphrase(key: bytes, passphrase: str) -> KeyFile:
    check_passphrase(passphrase)
    salt, nonce = os.urandom(16), os.urandom(12)
    kid = key_id(key)
    kek = _stretch(passphrase, salt, ARGON2_PASSES, ARGON2_MEMORY_KIB, ARGON2_LANES)
    b64 = base64.b64encode
    slot = {
        "kdf": "argon2id",
        "passes": ARGON2_PASSES,
        "kib": ARGON2_MEMORY_KIB,
        "lanes": ARGON2_LANES,
        "salt": b64(salt).decode(),
        "nonce": b64(nonce).decode(),
        "key": b64(AESGCM(kek).encrypt(nonce, key, kid.encode())).decode(),
    }
    return KeyFile("passphrase", kid, slot)


def in_keyring(key: bytes) -> KeyFile:
    return KeyFile("keyring", key_id(key))


# -- the key file next to the database -------------------------------------------------


def keyfile_path(db: Path) -> Path:
    return db.with_name(db.name + ".key")


def pending_path(db: Path) -> Path:
    """The key file of a conversion under way: it becomes ``<db>.key`` at the swap."""
    return db.with_name(db.name + ".key.new")


def read_keyfile(path: Path) -> KeyFile | None:
    """None if there is none; a ``KnownError`` if it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        holder = data["holder"]
        if holder not in ("keyring", "passphrase"):
            raise ValueError(holder)
        return KeyFile(holder, str(data["key_id"]), data.get("wrapped"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ChatKeyError(
            f"The key file {path} cannot be read ({type(e).__name__}). Unlock your chats "
            "with your recovery key; Hearth will then write a new key file.",
            detail=repr(e),
        ) from e


def write_keyfile(path: Path, keyfile: KeyFile) -> None:
    """Replace ``path`` atomically (a crash leaves the old one or the new one)."""
    part = path.with_name(path.name + ".part")
    with part.open("w", encoding="utf-8") as f:
        json.dump(keyfile.to_json(), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


# -- the system keyring ----------------------------------------------------------------


def keyring_usable(backend: KeyringBackend | None = None) -> bool:
    backend = backend if backend is not None else keyring.get_keyring()
    if isinstance(backend, keyring.backends.fail.Keyring | keyring.backends.null.Keyring):
        return False
    chained = getattr(backend, "backends", None)  # keyring's ChainerBackend
    return not (isinstance(chained, list) and not chained)


def _no_keyring(exc: Exception | None = None) -> NoKeyringError:
    return NoKeyringError(
        "This computer has no system keyring Hearth can use (on Linux: a Secret Service "
        "such as GNOME Keyring or KWallet), so the chat key cannot be kept there. Choose "
        "a passphrase instead; Hearth never falls back to unencrypted chats.",
        detail=repr(exc) if exc else "",
    )


class Keyring:
    """The chat keys in the system keyring, one entry per key id."""

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        # Found when first used, not when built: finding the system's keyring loads its
        # plugins (~60 ms), which a plain history never needs at start.
        self._given = backend

    @functools.cached_property
    def _backend(self) -> KeyringBackend:
        return self._given if self._given is not None else keyring.get_keyring()

    @property
    def usable(self) -> bool:
        return keyring_usable(self._backend)

    def save(self, key: bytes) -> None:
        if not self.usable:
            raise _no_keyring()
        try:
            self._backend.set_password(SERVICE, key_id(key), key.hex())
        except KeyringError as e:
            log.warning("the keyring refused the chat key: %s", type(e).__name__)
            raise _no_keyring(e) from e

    def load(self, kid: str) -> bytes | None:
        """The key with this id, or None when the keyring has no such entry."""
        if not self.usable:
            raise _no_keyring()
        try:
            text = self._backend.get_password(SERVICE, kid)
        except KeyringError as e:
            raise ChatKeyError(
                "The system keyring did not answer, so your chats stay locked. Unlock the "
                "keyring (log in again) and retry, or use your recovery key.",
                detail=repr(e),
            ) from e
        if not text:
            return None
        try:
            key = bytes.fromhex(text)
        except ValueError:
            return None
        return key if key_id(key) == kid else None

    def forget(self, kid: str) -> None:
        try:
            self._backend.delete_password(SERVICE, kid)
        except PasswordDeleteError:
            pass  # there was none
        except KeyringError as e:
            log.warning("the keyring refused to delete a chat key: %s", type(e).__name__)


def missing_entry() -> ChatKeyError:
    return ChatKeyError(
        "The key of your encrypted chats is no longer in the system keyring (it was "
        "deleted, or the chats were copied from another computer). Enter your recovery "
        "key to unlock them; Hearth will keep it in this keyring again."
    )
