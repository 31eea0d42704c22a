"""The Hugging Face token: in the OS keyring, never in a file or a log.

``TokenStore`` keeps the token in the system's keyring (Secret Service on
Linux, Keychain on macOS, Credential Manager on Windows) under the service
"Hearth". Where no keyring exists (a minimal Linux session: keyring falls back
to its ``fail`` or ``null`` backend) or the keyring refuses (locked, D-Bus
gone), the token is kept in this process's memory for this run only, and
``status().note`` says so in a sentence for the Settings page.

When no token is saved, ``get()`` returns the one in the ``HF_TOKEN``
environment variable (huggingface_hub's convention), so a machine without a
keyring can still fetch a gated model: ``HF_TOKEN=hf_… hearth pull ID``. That
token is only read, never saved anywhere, and ``status()`` says where it comes from.

The token is passed explicitly to downloads (``engine.models.download.Download``),
never through huggingface_hub's own token file, and no method here logs it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import keyring
import keyring.backends.fail
import keyring.backends.null
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError

__all__ = ["TokenStatus", "TokenStorage", "TokenStore"]

log = logging.getLogger(__name__)

SERVICE = "Hearth"
USERNAME = "huggingface-token"
ENV_VAR = "HF_TOKEN"


class TokenStorage(StrEnum):
    KEYRING = "keyring"  # kept by the OS across runs
    MEMORY = "memory"  # no usable keyring: this run only


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenStatus:
    has_token: bool  # a token is saved here (keyring or memory); HF_TOKEN does not count
    storage: TokenStorage
    backend: str  # the keyring backend's name, for the Settings page and bug reports
    note: str = ""  # sentences: the token cannot be kept across runs; HF_TOKEN is used
    from_environment: bool = False  # none saved: get() gives HF_TOKEN's


def _usable(backend: KeyringBackend) -> bool:
    no_backend = (keyring.backends.fail.Keyring, keyring.backends.null.Keyring)
    if isinstance(backend, no_backend):
        return False
    chained = getattr(backend, "backends", None)  # keyring's ChainerBackend
    return not (isinstance(chained, list) and not chained)


class TokenStore:
    """Get, set and clear the token. Thread-safe; cheap to create."""

    def __init__(
        self, backend: KeyringBackend | None = None, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self._backend = backend if backend is not None else keyring.get_keyring()
        self._environ = os.environ if environ is None else environ  # read at each get()
        self._memory: str | None = None
        self._failed = "" if _usable(self._backend) else self._no_keyring()
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the token
        return f"TokenStore(backend={self._backend_name()}, storage={self.storage.value})"

    def _backend_name(self) -> str:
        return type(self._backend).__module__ + "." + type(self._backend).__qualname__

    def _no_keyring(self) -> str:
        return (
            "This computer has no keyring Hearth can use, so your Hugging Face token is kept "
            "only until Hearth closes."
        )

    def _keyring_failed(self, exc: Exception) -> str:
        log.warning("the keyring (%s) refused: %s", self._backend_name(), type(exc).__name__)
        return (
            "The system keyring did not respond, so your Hugging Face token is kept only "
            "until Hearth closes. Unlock your keyring and enter the token again to keep it."
        )

    @property
    def storage(self) -> TokenStorage:
        return TokenStorage.MEMORY if self._failed else TokenStorage.KEYRING

    def get(self) -> str | None:
        """The saved token, else HF_TOKEN's, else None."""
        return self._saved() or self._from_environment()

    def _saved(self) -> str | None:
        with self._lock:
            if self._failed:
                return self._memory
            try:
                return self._backend.get_password(SERVICE, USERNAME) or None
            except KeyringError as exc:
                self._failed = self._keyring_failed(exc)
                return self._memory

    def _from_environment(self) -> str | None:
        return self._environ.get(ENV_VAR, "").strip() or None

    def set(self, token: str) -> TokenStatus:
        """Keep ``token`` (surrounding whitespace removed). ValueError if it cannot be a token."""
        token = token.strip()
        if not token or any(c.isspace() for c in token) or not token.isprintable():
            raise ValueError("A Hugging Face token is one word without spaces, like hf_AbC123…")
        with self._lock:
            if not self._failed:
                try:
                    self._backend.set_password(SERVICE, USERNAME, token)
                except KeyringError as exc:
                    self._failed = self._keyring_failed(exc)
            self._memory = token if self._failed else None
        return self.status()

    def clear(self) -> None:
        """Forget the saved token, in the keyring and in memory (HF_TOKEN, the
        environment's, is still read)."""
        with self._lock:
            self._memory = None
            if self._failed:
                return
            try:
                self._backend.delete_password(SERVICE, USERNAME)
            except PasswordDeleteError:
                pass  # there was none
            except KeyringError as exc:
                self._failed = self._keyring_failed(exc)

    def status(self) -> TokenStatus:
        has = self._saved() is not None
        from_environment = not has and self._from_environment() is not None
        notes = [self._failed]
        if from_environment:
            notes.append(
                f"Hearth uses the Hugging Face token in the {ENV_VAR} environment variable "
                "while none is saved here."
            )
        return TokenStatus(
            has_token=has,
            storage=self.storage,
            backend=self._backend_name(),
            note=" ".join(n for n in notes if n),
            from_environment=from_environment,
        )
