"""The Hugging Face token in the OS keyring (engine.models.hf_token).

Backends used, by test:
- a real Secret Service (gnome-keyring-daemon in its own D-Bus session, the
  keyring desktop Linux has) for persistence across processes and "no file
  holds the token";
- keyring's own ``fail`` and ``null`` backends (what keyring picks when a
  machine has no keyring) for the memory-only fallback;
- ``MemoryKeyring`` below, an in-memory KeyringBackend, for the store's logic
  and for a keyring that starts failing mid-run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keyring.backends.fail
import keyring.backends.null
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError

from engine.models.hf_token import SERVICE, USERNAME, TokenStorage, TokenStore

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_TestTokenNotReal0123456789abcdef"


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring backend (keyring ships none); ``locked`` makes it refuse."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}
        self.locked = False

    def _check(self) -> None:
        if self.locked:
            raise KeyringLocked("the test keyring is locked")

    def get_password(self, service: str, username: str) -> str | None:
        self._check()
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._check()
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._check()
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


def test_set_get_clear_in_the_keyring() -> None:
    backend = MemoryKeyring()
    store = TokenStore(backend)
    assert store.get() is None
    status = store.set(f"  {TOKEN}\n")
    assert status.has_token and status.storage is TokenStorage.KEYRING and status.note == ""
    assert backend.items == {(SERVICE, USERNAME): TOKEN}
    assert TokenStore(backend).get() == TOKEN  # another store (a later run) sees it
    store.clear()
    assert store.get() is None and backend.items == {}
    store.clear()  # clearing nothing is fine


@pytest.mark.parametrize("bad", ["", "   ", "hf_abc def", "hf_\x00abc"])
def test_a_token_must_look_like_one(bad: str) -> None:
    with pytest.raises(ValueError, match="one word without spaces"):
        TokenStore(MemoryKeyring()).set(bad)


@pytest.mark.parametrize(
    "backend", [keyring.backends.fail.Keyring(), keyring.backends.null.Keyring()]
)
def test_without_a_keyring_the_token_lives_for_this_run(backend: KeyringBackend) -> None:
    store = TokenStore(backend)
    status = store.set(TOKEN)
    assert status.storage is TokenStorage.MEMORY and status.has_token
    assert status.note == (
        "This computer has no keyring Hearth can use, so your Hugging Face token is kept "
        "only until Hearth closes."
    )
    assert store.get() == TOKEN
    assert TokenStore(backend).get() is None  # the next run starts without it
    store.clear()
    assert store.get() is None


def test_a_keyring_that_refuses_falls_back_to_memory_and_logs_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryKeyring()
    store = TokenStore(backend)
    backend.locked = True
    with caplog.at_level(logging.DEBUG):
        status = store.set(TOKEN)
    assert status.storage is TokenStorage.MEMORY
    assert status.note.startswith("The system keyring did not respond")
    assert store.get() == TOKEN
    assert backend.items == {}
    assert caplog.records, "the refusal is logged"
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert TOKEN not in repr(store)


@pytest.mark.parametrize(
    "backend", [MemoryKeyring(), keyring.backends.fail.Keyring(), keyring.backends.null.Keyring()]
)
def test_without_a_saved_token_hf_token_is_used_and_never_saved(
    backend: KeyringBackend, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"HF_TOKEN": f" {TOKEN}\n"}
    with caplog.at_level(logging.DEBUG):
        store = TokenStore(backend, environ=environ)
        assert store.get() == TOKEN
        status = store.status()
        assert status.from_environment and not status.has_token  # nothing is saved
        assert status.note.endswith(
            "Hearth uses the Hugging Face token in the HF_TOKEN environment variable while "
            "none is saved here."
        )
        assert TokenStore(backend, environ={}).get() is None  # read, never kept
        assert getattr(backend, "items", {}) == {}

        saved = "hf_SavedTokenNotReal"
        status = store.set(saved)  # a saved token comes first
        assert store.get() == saved and status.has_token and not status.from_environment
        assert "HF_TOKEN" not in status.note
        store.clear()  # forgets the saved one; the environment's is still read
        assert store.get() == TOKEN and environ == {"HF_TOKEN": f" {TOKEN}\n"}
        environ["HF_TOKEN"] = "  "
        assert store.get() is None and not store.status().from_environment
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert TOKEN not in repr(store)


def test_hf_token_is_read_from_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert TokenStore(MemoryKeyring()).get() == TOKEN
    monkeypatch.delenv("HF_TOKEN")
    assert TokenStore(MemoryKeyring()).get() is None


def _secret_service_tools() -> tuple[str, str]:
    session, daemon = shutil.which("dbus-run-session"), shutil.which("gnome-keyring-daemon")
    if session is None or daemon is None:
        pytest.fail(
            "This test runs a real Secret Service: install it with "
            "`apt-get install gnome-keyring dbus-daemon` (the setup script should do this as root)."
        )
    return session, daemon


def test_a_real_secret_service_keeps_the_token_across_runs_and_in_no_file(
    tmp_path: Path,
) -> None:
    session, daemon = _secret_service_tools()
    home = tmp_path / "home"
    home.mkdir()
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from engine.models.hf_token import TokenStore
        store = TokenStore()
        action = sys.argv[1]
        if action == "set":
            status = store.set({TOKEN!r})
            print(status.storage.value, status.backend)
        elif action == "get":
            print(store.get())
        elif action == "scan":  # while the token is stored: which files hold it in plain text?
            from pathlib import Path
            roots = [Path({str(tmp_path)!r})]
            files = [p for r in roots for p in r.rglob("*") if p.is_file()]
            plain = [str(p) for p in files if {TOKEN!r}.encode() in p.read_bytes()]
            print(sum(1 for p in files if p.name.endswith(".keyring")),
                  [p for p in plain if not p.endswith("child.py")])
        else:
            store.clear()
            print(store.get())
        """
    )
    script = tmp_path / "child.py"
    script.write_text(child)
    py = sys.executable
    # Each step is a separate process: the token must come from the Secret Service.
    shell = (
        f"echo -n unlock | {daemon} --unlock --components=secrets >/dev/null && "
        f"{py} {script} set && {py} {script} get && {py} {script} scan && {py} {script} clear"
    )
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [session, "--", "sh", "-c", shell],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[0] == "keyring keyring.backends.SecretService.Keyring"
    assert lines[1] == TOKEN
    keyrings, plain = lines[2].split(" ", 1)
    assert int(keyrings) >= 1  # the Secret Service stored it in its (encrypted) keyring file
    assert plain == "[]"  # and no file holds the token in plain text
    assert lines[3] == "None"  # cleared
