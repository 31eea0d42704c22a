"""`hearth encrypt|decrypt|rekey`, and `hearth chat` on an encrypted history (issue 17):
separate processes, real files, the real cipher. The keyring is ``FileKeyring`` (a real
keyring backend in a file, chosen by ``PYTHON_KEYRING_BACKEND``): this machine has no
Secret Service (tests/fakes/file_keyring.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.chat_lock import ChatLock, Protection
from engine.crypto import keys
from engine.history.store import ChatStore
from tests.fakes.file_keyring import ENV, FileKeyring
from tests.unit.test_store_encryption import SECRETS, fill, leaks


def hearth(*args: str, data_dir: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HEARTH_DATA_DIR": str(data_dir),
        "PYTHON_KEYRING_BACKEND": "tests.fakes.file_keyring.FileKeyring",
        ENV: str(data_dir.parent / "keyring.json"),
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        cwd=Path(__file__).parents[2],
        **kwargs,
    )


def lock_of(data_dir: Path) -> ChatLock:
    ring = keys.Keyring(FileKeyring(data_dir.parent / "keyring.json"))
    return ChatLock(data_dir / "hearth.sqlite3", ring)


def test_encrypt_rekey_decrypt_on_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "hearth-data"
    data.mkdir()
    with ChatStore(data / "hearth.sqlite3") as store:
        fill(store, 3)
    secret = tmp_path / "pass.txt"
    secret.write_text("a long enough passphrase\n")

    done = hearth("encrypt", "--new-passphrase-file", str(secret), data_dir=data)
    assert done.returncode == 0, done.stderr
    assert "Your chats are encrypted" in done.stderr and "recovery key" in done.stdout
    code = done.stdout.split("\n\n")[1].strip()
    assert leaks(data) == []
    assert lock_of(data).protection() is Protection.PASSPHRASE

    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase\n")
    refused = hearth("decrypt", "--passphrase-file", str(wrong), data_dir=data)
    assert refused.returncode == 1 and "does not unlock your chats" in refused.stderr
    no_tty = hearth("decrypt", data_dir=data, stdin=subprocess.DEVNULL)
    assert no_tty.returncode == 1 and "--passphrase-file" in no_tty.stderr

    # A forgotten passphrase: the recovery key re-keys it into the keyring.
    code_file = tmp_path / "code.txt"
    code_file.write_text(code + "\n")
    rekeyed = hearth("rekey", "--recovery-key-file", str(code_file), data_dir=data)
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert lock_of(data).protection() is Protection.KEYRING and leaks(data) == []

    back = hearth("decrypt", data_dir=data)  # the keyring unlocks by itself
    assert back.returncode == 0, back.stderr
    assert lock_of(data).protection() is Protection.NONE and leaks(data)  # plain again
    with ChatStore(data / "hearth.sqlite3") as store:
        assert store.count_conversations() == 3 and store.search(SECRETS[2])


def test_chat_on_an_encrypted_history(data_dir: Path, tmp_path: Path) -> None:
    """The real starter model answers; the question and reply are saved encrypted."""
    secret = tmp_path / "pass.txt"
    secret.write_text("a long enough passphrase\n")
    assert (
        hearth("encrypt", "--new-passphrase-file", str(secret), data_dir=data_dir).returncode == 0
    )
    locked = hearth(
        "chat", "--max-tokens", "8", "Say marmalade.", data_dir=data_dir, stdin=subprocess.DEVNULL
    )
    assert locked.returncode == 1 and "--passphrase-file" in locked.stderr
    result = hearth(
        "chat",
        "--passphrase-file",
        str(secret),
        "--max-tokens",
        "8",
        "Say marmalade.",
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.stderr
    lock = lock_of(data_dir)
    store, _ = lock.open(lock.key_from_passphrase("a long enough passphrase"))
    with store:
        (conv,) = store.list_conversations()
        assert store.messages(conv.id)[0].content == "Say marmalade."
    # Every file Hearth wrote (the models folder holds the model's own vocabulary).
    written = [p for p in data_dir.rglob("*") if p.is_file() and "models" not in p.parts]
    assert any(p.name == "hearth.sqlite3" for p in written)
    assert [p for p in written if b"marmalade" in p.read_bytes().lower()] == []
