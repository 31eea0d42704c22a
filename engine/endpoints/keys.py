"""API keys of connections: in the OS keyring, never in a file or a log.

The pattern of the Hugging Face token (engine/models/hf_token.py): service "Hearth",
one entry per connection (``connection:<name>``). Where no keyring is usable (a
minimal Linux session) or it refuses, a key is kept in this process's memory for
this run only and ``note`` says so in a sentence. No method here logs a key.
"""

from __future__ import annotations

import logging
import threading

import keyring
import keyring.backends.fail
import keyring.backends.null
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError

__all__ = ["KeyStore", "check_key"]

log = logging.getLogger(__name__)

SERVICE = "Hearth"


def _account(name: str) -> str:
    return f"connection:{name.strip().casefold()}"


def check_key(key: str) -> str:
    """``key`` trimmed; ``ValueError`` with a sentence when it cannot be an API key."""
    key = key.strip()
    if not key or any(c.isspace() for c in key) or not key.isprintable():
        raise ValueError("An API key is one word without spaces, like sk-AbC123…")
    return key


def _usable(backend: KeyringBackend) -> bool:
    if isinstance(backend, keyring.backends.fail.Keyring | keyring.backends.null.Keyring):
        return False
    chained = getattr(backend, "backends", None)  # keyring's ChainerBackend
    return not (isinstance(chained, list) and not chained)


class KeyStore:
    """Get, set and forget connections' keys. Thread-safe; cheap to create."""

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        self._backend = backend if backend is not None else keyring.get_keyring()
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()
        self.note = "" if _usable(self._backend) else self._no_keyring()

    def __repr__(self) -> str:  # never a key
        return f"KeyStore(backend={type(self._backend).__name__}, kept={self.kept})"

    @property
    def kept(self) -> bool:
        """True when keys are kept across runs (a usable keyring)."""
        return not self.note

    def _no_keyring(self) -> str:
        return (
            "This computer has no keyring Hearth can use, so API keys are kept only until "
            "Hearth closes."
        )

    def _refused(self, exc: Exception) -> None:
        log.warning(
            "the keyring (%s) refused: %s", type(self._backend).__name__, type(exc).__name__
        )
        self.note = (
            "The system keyring did not respond, so API keys are kept only until Hearth "
            "closes. Unlock your keyring and enter the key again to keep it."
        )

    def get(self, name: str) -> str | None:
        account = _account(name)
        with self._lock:
            if not self.note:
                try:
                    return self._backend.get_password(SERVICE, account) or None
                except KeyringError as exc:
                    self._refused(exc)
            return self._memory.get(account)

    def set(self, name: str, key: str) -> None:
        key = check_key(key)
        account = _account(name)
        with self._lock:
            if not self.note:
                try:
                    self._backend.set_password(SERVICE, account, key)
                    self._memory.pop(account, None)
                    return
                except KeyringError as exc:
                    self._refused(exc)
            self._memory[account] = key

    def forget(self, name: str) -> None:
        account = _account(name)
        with self._lock:
            self._memory.pop(account, None)
            if self.note:
                return
            try:
                self._backend.delete_password(SERVICE, account)
            except PasswordDeleteError:
                pass  # there was none
            except KeyringError as exc:
                self._refused(exc)
