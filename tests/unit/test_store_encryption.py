"""The chat database encrypted at rest (issue 17): real SQLite3 Multiple Ciphers files.

Nothing is faked: the cipher, the files and the killed child processes are real.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.errors import KnownError, StoreError
from engine.history import cipher, migrate
from engine.history.opening import open_store
from engine.history.recorder import ReplyRecorder
from engine.history.store import ChatStore, MessageStatus

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
# Words that appear nowhere but in the chats, to look for in the files' bytes.
SECRETS = ("marmalade", "zeppelin", "quetzalcoatl", "lighthouse")


def fill(store: ChatStore, chats: int = 3) -> None:
    """Chats written the way the window writes them: a question, a streamed reply."""
    for n in range(chats):
        conv = store.create_conversation(f"About the {SECRETS[n % 4]} {n}")
        store.add_message(conv.id, "user", f"Tell me about the {SECRETS[n % 4]} please")
        reply = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
        rec = ReplyRecorder(store, reply.id, interval=0.0)
        for piece in ("The ", SECRETS[(n + 1) % 4], " is ", SECRETS[(n + 2) % 4], " indeed."):
            rec.append(piece)
        rec.finish(MessageStatus.COMPLETE)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def leaks(folder: Path) -> list[str]:
    found = []
    for path in files_under(folder):
        data = path.read_bytes().lower()
        found += [f"{path.name}: {w}" for w in SECRETS if w.encode() in data]
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_word_of_the_chats_in_any_file_while_open_or_after(tmp_path: Path) -> None:
    path = tmp_path / "chats" / "hearth.sqlite3"
    store = ChatStore(path, key=KEY)
    fill(store, 8)
    # While open: the write-ahead log holds the newest pages, encrypted too.
    assert Path(f"{path}-wal").stat().st_size > 0
    assert leaks(tmp_path) == []
    assert [h.conversation_id for h in store.search("zeppelin")]  # and search finds them
    store.close()
    assert leaks(tmp_path) == []
    # The control: the same chats in a plain file are there to be read.
    with ChatStore(tmp_path / "plain" / "hearth.sqlite3") as plain:
        fill(plain, 8)
    assert leaks(tmp_path / "plain")


def test_a_wrong_key_is_a_sentence_and_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hearth.sqlite3"
    with ChatStore(path, key=KEY) as store:
        fill(store)
    before = digest(path)
    with pytest.raises(cipher.WrongKeyError) as info:
        open_store(path, key=OTHER_KEY)
    assert isinstance(info.value, KnownError)
    assert "could not be unlocked" in str(info.value) and str(path) in str(info.value)
    assert digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    with pytest.raises(StoreError, match="left the file as it is"):
        ChatStore(path)  # no key at all: the store cannot tell it from damage (the app can)
    assert digest(path) == before


def test_no_key_for_an_encrypted_file_sets_nothing_aside_with_a_key(tmp_path: Path) -> None:
    """A plain file opened with a key: said plainly, not 'damaged'."""
    path = tmp_path / "hearth.sqlite3"
    ChatStore(path).close()
    with pytest.raises(StoreError, match="is not encrypted"):
        ChatStore(path, key=KEY)


def test_a_corrupt_encrypted_file_is_kept_aside_when_the_key_is_known_good(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hearth.sqlite3"
    with ChatStore(path, key=KEY) as store:
        fill(store)
    data = bytearray(path.read_bytes())
    data[100:4000] = os.urandom(3900)  # page 1 fails its authentication tag
    path.write_bytes(bytes(data))
    store, notice = open_store(path, key=KEY, key_verified=True)
    with store:
        assert notice and "moved it to" in notice
        assert store.count_conversations() == 0  # a new, empty, encrypted history
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(data)
    assert cipher.is_plain_file(path) is False


def test_the_cipher_missing_from_the_build_is_a_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cipher, "apsw", None)
    assert not cipher.cipher_available()
    with pytest.raises(cipher.CipherMissingError, match="without its encryption library"):
        ChatStore(tmp_path / "hearth.sqlite3", key=KEY)
    ChatStore(tmp_path / "plain.sqlite3").close()  # plain files need nothing of it


def snapshot(path: Path, key: bytes | None) -> tuple[int, list[str], list[int]]:
    with ChatStore(path, key=key) as store:
        convs = store.list_conversations()
        hits = [h.message_id for w in SECRETS for h in store.search(w)]
        texts = [m.content for c in convs for m in store.messages(c.id)]
    return len(convs), texts, hits


def test_encrypt_decrypt_and_rekey_keep_every_chat_and_search(tmp_path: Path) -> None:
    path = tmp_path / "hearth.sqlite3"
    with ChatStore(path) as store:
        fill(store, 6)
        assert store.index_pending(0) == 0
    plain = snapshot(path, None)
    seen: list[float] = []
    done = migrate.convert(
        path, migrate.Op.ENCRYPT, old_key=None, new_key=KEY, progress=seen.append
    )
    assert (done.conversations, seen[-1]) == (6, 1.0)
    assert cipher.is_plain_file(path) is False and leaks(tmp_path) == []
    assert snapshot(path, KEY) == plain
    migrate.convert(path, migrate.Op.REKEY, old_key=KEY, new_key=OTHER_KEY)
    with pytest.raises(cipher.WrongKeyError):
        ChatStore(path, key=KEY)
    assert snapshot(path, OTHER_KEY) == plain
    migrate.convert(path, migrate.Op.DECRYPT, old_key=OTHER_KEY, new_key=None)
    assert cipher.is_plain_file(path) is True
    assert snapshot(path, None) == plain
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing left over


def test_a_wrong_old_key_converts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "hearth.sqlite3"
    with ChatStore(path, key=KEY) as store:
        fill(store)
    before = digest(path)
    with pytest.raises(cipher.WrongKeyError):
        migrate.convert(path, migrate.Op.REKEY, old_key=OTHER_KEY, new_key=KEY)
    assert digest(path) == before and migrate.read_marker(path) is None


_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.history import migrate
    path, op, old, new = Path(sys.argv[1]), migrate.Op(sys.argv[2]), sys.argv[3], sys.argv[4]
    def pause(step):
        print(step, flush=True)
        if step == sys.argv[5]:
            sys.stdin.read()  # held here until the test kills this process
    migrate.convert(
        path, op,
        old_key=bytes.fromhex(old) if old != "-" else None,
        new_key=bytes.fromhex(new) if new != "-" else None,
        on_swapped=lambda: Path(str(path) + ".keys-saved").touch(),
        pause=pause,
    )
    """
)


@pytest.mark.parametrize("op", [migrate.Op.ENCRYPT, migrate.Op.DECRYPT, migrate.Op.REKEY])
@pytest.mark.parametrize("step", migrate.STEPS)
def test_killed_at_any_step_leaves_a_usable_history(
    tmp_path: Path, op: migrate.Op, step: str
) -> None:
    """A child process converts the history and is killed (SIGKILL) right after
    ``step``; the next start (``recover``) says what happened and every chat opens."""
    old, new = {
        migrate.Op.ENCRYPT: (None, KEY),
        migrate.Op.DECRYPT: (KEY, None),
        migrate.Op.REKEY: (KEY, OTHER_KEY),
    }[op]
    path = tmp_path / "hearth.sqlite3"
    with ChatStore(path, key=old) as store:
        fill(store, 5)
    expected = snapshot(path, old)
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), op.value]
        + [k.hex() if k else "-" for k in (old, new)]
        + [step],
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
    recovered = migrate.recover(path)
    assert recovered is not None and recovered.op is op
    swapped = step in ("swapped", "keys-saved")
    assert recovered.swapped is swapped
    assert ("finished it" if swapped else "nothing changed") in recovered.notice
    migrate.finish(path)
    in_use = new if swapped else old
    assert snapshot(path, in_use) == expected
    assert migrate.read_marker(path) is None
    assert not migrate.copy_path(path).exists()
    if in_use is not None:
        assert leaks(tmp_path) == []
