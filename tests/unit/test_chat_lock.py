"""Turning encryption on, off and to a new key, and unlocking (issue 17).

Real files, the real cipher, real Argon2id; the keyring is ``FileKeyring``, a real
keyring backend in a file (tests/fakes/file_keyring.py says why not the system's).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keyring.backends.fail
import pytest

from app.chat_lock import ChatLock, Protection
from engine.crypto import keys
from engine.errors import StoreError
from engine.history import cipher, migrate
from tests.fakes.file_keyring import FileKeyring
from tests.unit.test_store_encryption import SECRETS, fill, leaks, snapshot

PASS = "correct horse battery"


@pytest.fixture
def ring(tmp_path: Path) -> keys.Keyring:
    return keys.Keyring(FileKeyring(tmp_path / "keyring.json"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "chats" / "hearth.sqlite3"
    lock = ChatLock(path, keys.Keyring(FileKeyring(tmp_path / "unused.json")))
    store, _ = lock.open(None)
    with store:
        fill(store, 4)
    return path


def test_keyring_encryption_opens_by_itself_and_leaks_nothing(
    db: Path, ring: keys.Keyring, tmp_path: Path
) -> None:
    before = snapshot(db, None)
    lock = ChatLock(db, ring)
    done = lock.encrypt()
    assert lock.protection() is Protection.KEYRING
    assert len(done.recovery_code) == 64 and done.recovery_code.count("-") == 12
    store, notice = lock.open(lock.key_from_keyring())
    assert notice is None
    with store:
        fill(store, 2)  # chatting goes on, encrypted
        assert store.search("zeppelin")
    assert leaks(tmp_path / "data") == []  # the database, its log, the key file
    assert snapshot(db, lock.key_from_keyring())[0] == before[0] + 2


def test_a_passphrase_unlocks_and_a_wrong_one_is_a_sentence(db: Path, ring: keys.Keyring) -> None:
    lock = ChatLock(db, ring)
    lock.encrypt(passphrase=PASS)
    assert lock.protection() is Protection.PASSPHRASE
    with pytest.raises(keys.WrongPassphraseError, match="does not unlock your chats"):
        lock.key_from_passphrase("correct horse battery!")
    store, _ = lock.open(lock.key_from_passphrase(PASS))
    store.close()
    with pytest.raises(keys.ChatKeyError, match="at least 8"):
        ChatLock(db.with_name("other.sqlite3"), ring).encrypt(passphrase="short")


def test_keyring_entry_removed_then_the_recovery_key_brings_it_back(
    db: Path, ring: keys.Keyring
) -> None:
    lock = ChatLock(db, ring)
    code = lock.encrypt().recovery_code
    kf = lock.keyfile()
    assert kf is not None
    ring.forget(kf.key_id)  # deleted behind Hearth's back
    with pytest.raises(keys.ChatKeyError, match="no longer in the system keyring"):
        lock.key_from_keyring()
    with pytest.raises(keys.ChatKeyError, match="not a whole recovery key"):
        lock.key_from_recovery("ABCD-EFGH")
    key = lock.key_from_recovery(code.lower().replace("-", " "))  # as typed from paper
    assert lock.key_from_keyring() == key  # back in the keyring
    lock.open(key)[0].close()


def test_no_keyring_offers_the_passphrase_and_changes_nothing(db: Path) -> None:
    lock = ChatLock(db, keys.Keyring(keyring.backends.fail.Keyring()))  # type: ignore[no-untyped-call]
    with pytest.raises(keys.NoKeyringError, match="Choose a passphrase instead"):
        lock.encrypt()
    assert lock.protection() is Protection.NONE and cipher.is_plain_file(db)
    assert sorted(p.name for p in db.parent.iterdir()) == ["hearth.sqlite3"]
    lock.encrypt(passphrase=PASS)  # the offered way works
    assert lock.protection() is Protection.PASSPHRASE


def test_rekey_makes_the_old_recovery_key_useless(db: Path, ring: keys.Keyring) -> None:
    lock = ChatLock(db, ring)
    old_code = lock.encrypt(passphrase=PASS).recovery_code
    old_key = lock.key_from_passphrase(PASS)
    new_code = lock.rekey(old_key).recovery_code  # now held by the keyring
    assert lock.protection() is Protection.KEYRING
    with pytest.raises(keys.ChatKeyError, match="belongs to other chats"):
        lock.key_from_recovery(old_code)
    assert lock.key_from_recovery(new_code) == lock.key_from_keyring()
    with pytest.raises(cipher.WrongKeyError):
        lock.open(old_key)


def test_decrypt_brings_back_a_plain_history_and_forgets_the_key(
    db: Path, ring: keys.Keyring
) -> None:
    before = snapshot(db, None)
    lock = ChatLock(db, ring)
    lock.encrypt()
    kf = lock.keyfile()
    assert kf is not None
    lock.decrypt(lock.key_from_keyring())
    assert lock.protection() is Protection.NONE and snapshot(db, None) == before
    assert ring.load(kf.key_id) is None
    assert sorted(p.name for p in db.parent.iterdir()) == ["hearth.sqlite3"]


def test_a_copied_history_without_its_key_file_opens_with_the_recovery_key(
    db: Path, ring: keys.Keyring, tmp_path: Path
) -> None:
    code = ChatLock(db, ring).encrypt().recovery_code
    other = tmp_path / "elsewhere" / "hearth.sqlite3"
    other.parent.mkdir()
    other.write_bytes(db.read_bytes())  # a backup of the database alone
    lock = ChatLock(other, keys.Keyring(FileKeyring(tmp_path / "other-ring.json")))
    assert lock.protection() is Protection.UNKNOWN
    with pytest.raises(StoreError, match="recovery key"):
        lock.open(None)
    store, _ = lock.open(lock.key_from_recovery(code))
    with store:
        assert store.search(SECRETS[1])
    assert lock.protection() is Protection.KEYRING  # a key file and keyring entry again
    lock.open(lock.key_from_keyring())[0].close()


_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.chat_lock import ChatLock
    from engine.crypto import keys
    from tests.fakes.file_keyring import FileKeyring
    db, ring, step, op = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    def pause(at):
        print(at, flush=True)
        if at == step:
            sys.stdin.read()  # held until the test kills this process
    lock = ChatLock(db, keys.Keyring(FileKeyring(ring)))
    if op == "encrypt":
        lock.encrypt(passphrase="new passphrase", pause=pause)
    else:
        lock.rekey(lock.key_from_passphrase("correct horse battery"),
                   passphrase="new passphrase", pause=pause)
    """
)


@pytest.mark.parametrize("op", ["encrypt", "rekey"])
@pytest.mark.parametrize("step", migrate.STEPS)
def test_killed_at_any_step_the_next_start_says_so_and_the_keys_fit(
    db: Path, ring: keys.Keyring, tmp_path: Path, op: str, step: str
) -> None:
    """The key file and the database stay in step whatever moment a SIGKILL hits."""
    lock = ChatLock(db, ring)
    if op == "rekey":
        lock.encrypt(passphrase=PASS)
    before = snapshot(db, lock.key_from_passphrase(PASS) if op == "rekey" else None)
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), str(tmp_path / "keyring.json"), step, op],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == step:
                break
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    notice = lock.recover()
    assert notice is not None
    swapped = step in ("swapped", "keys-saved")
    if swapped:
        key = lock.key_from_passphrase("new passphrase")
    elif op == "rekey":
        key = lock.key_from_passphrase(PASS)
    else:
        assert lock.protection() is Protection.NONE
        key = None
    assert snapshot(db, key) == before
    assert sorted(p.name for p in db.parent.iterdir()) == (
        ["hearth.sqlite3"] if key is None else ["hearth.sqlite3", "hearth.sqlite3.key"]
    )
    assert lock.recover() is None  # said once
