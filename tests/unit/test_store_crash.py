"""A process killed mid-reply keeps what its ReplyRecorder had saved."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.history.opening import open_store
from engine.history.store import ChatStore, MessageStatus, StoreCorruptError, damage_marker
from tests.unit.cipher_modes import both_ciphers, connect_raw

pytestmark = both_ciphers

REPO = Path(__file__).resolve().parents[2]

# Appends "000000 000001 ..." and reports each append and each save on stdout.
# A "saved N" line is printed only after the write of N characters committed.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from engine.history.recorder import ReplyRecorder
    from engine.history.store import ChatStore, MessageStatus

    store = ChatStore(Path(sys.argv[1]))
    conv = store.create_conversation("crash")
    msg = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    real_update = store.update_message

    def update(msg_id, content, status=None, **thinking):
        real_update(msg_id, content, status, **thinking)
        print(f"saved {len(content)}", flush=True)

    store.update_message = update
    recorder = ReplyRecorder(store, msg.id, interval=0.2)
    print(f"message {msg.id}", flush=True)
    i = 0
    while True:
        recorder.append_thinking(f"t{i:05d} ")
        recorder.append(f"{i:06d} ")
        print(f"appended {i}", flush=True)
        i += 1
        time.sleep(0.002)
    """
)


def piece(i: int) -> str:
    return f"{i:06d} "


@pytest.mark.timeout(60)
# Plain only: the writer is a child process, which opens the file without this
# test's key; the encrypted kill -9 cases are in test_store_encryption.py.
@pytest.mark.plain_file
def test_kill_during_reply_keeps_the_saved_prefix(tmp_path: Path) -> None:
    db_path = tmp_path / "chats.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    appended = saved = 0
    message_id = None
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    ) as child:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        saves = 0
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, f"the child ended early with code {child.poll()}"
            word, number = line.split()
            if word == "message":
                message_id = int(number)
            elif word == "appended":
                appended = int(number) + 1
            elif word == "saved":
                saved = int(number)
                saves += 1
            if saves >= 3 and appended >= 200:
                break
        else:
            pytest.fail(f"only {appended} appends and {saves} saves in 30 s")
        child.kill()  # SIGKILL on POSIX: no cleanup, no flush, no atexit
        child.wait()
    assert child.returncode != 0

    with closing(connect_raw(db_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with ChatStore(db_path) as store:
        (conv,) = store.list_conversations()
        (msg,) = store.messages(conv.id)
    assert msg.id == message_id
    assert msg.status is MessageStatus.INTERRUPTED
    assert len(msg.content) >= saved > 0
    expected = "".join(piece(i) for i in range(len(msg.content) // len(piece(0)) + 1))
    assert expected.startswith(msg.content)
    # The thinking was saved by the same writes, apart from the answer: as far as
    # the answer, or one piece further (a save can fall between the two appends).
    answer_pieces = len(msg.content) // len(piece(0))
    assert msg.thinking in {
        "".join(f"t{i:05d} " for i in range(n)) for n in (answer_pieces, answer_pieces + 1)
    }
    # Saved at least every 0.2 s: what was lost is far less than what was written.
    assert len(msg.content) >= len("".join(piece(i) for i in range(appended))) // 2


# -- a damaged file is set aside, never deleted ------------------------------------------


def asides(folder: Path) -> list[Path]:
    """Databases set aside (not their -wal/-shm companions)."""
    return sorted(
        p
        for p in folder.iterdir()
        if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))
    )


def pragma_version(path: Path) -> int:
    with closing(connect_raw(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_garbage_file_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    path = tmp_path / "hearth.sqlite3"
    garbage = b"not a database\x00\xff" * 500
    path.write_bytes(garbage)
    Path(str(path) + "-wal").write_bytes(b"its write-ahead log")
    store, notice = open_store(path)
    with store:
        assert store.list_conversations() == []
        store.create_conversation("a fresh start")
    (aside,) = asides(tmp_path)
    assert re.fullmatch(r"hearth\.sqlite3\.corrupt-\d{8}-\d{6}", aside.name)
    assert aside.read_bytes() == garbage  # moved, byte for byte
    assert Path(str(aside) + "-wal").read_bytes() == b"its write-ahead log"
    assert notice is not None
    assert str(aside) in notice and "nothing was deleted" in notice
    assert notice.startswith("Your chat history could not be read (the file is damaged)")
    assert "left the file as it is" not in notice  # the store's own advice does not apply

    # Damaged again within the same second: a second name, nothing overwritten.
    path.write_bytes(garbage[::-1])
    _, again = open_store(path)
    _.close()
    moved_to = re.search(r"moved it to (.+?) and started", again or "")
    assert moved_to is not None and moved_to.group(1) != str(aside)
    assert aside.read_bytes() == garbage
    assert len(asides(tmp_path)) == 2


# Plain only: the "newer" file is made by hand, as another program would.
@pytest.mark.plain_file
def test_a_file_from_a_newer_hearth_is_left_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "hearth.sqlite3"
    ChatStore(path).close()
    with closing(connect_raw(path)) as db:
        db.execute("PRAGMA user_version = 99")
        db.commit()
    with pytest.raises(StoreError, match="newer version of Hearth") as info:
        open_store(path)
    assert not isinstance(info.value, StoreCorruptError)
    assert asides(tmp_path) == [] and pragma_version(path) == 99


def _damage_page_holding(path: Path, needle: bytes) -> None:
    """Zero the b-tree page header of the page that holds ``needle`` (real damage)."""
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    offset = data.index(needle)
    start = offset - offset % page_size
    assert start > 0, "the needle must not be on page 1"
    data[start : start + 8] = bytes(8)
    path.write_bytes(bytes(data))


# Plain only: the damage is aimed at a page by finding its text in the bytes, which
# an encrypted file never shows; test_store_encryption.py damages an encrypted one.
@pytest.mark.plain_file
def test_damage_found_while_running_sets_the_file_aside_on_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hearth.sqlite3"
    with ChatStore(path) as store:
        conv = store.create_conversation("big")
        for i in range(60):
            store.add_message(conv.id, "user", f"filler {i} " + "x" * 900)
        store.add_message(conv.id, "assistant", "NEEDLE-IN-THE-TABLE " + "y" * 500)
    assert not Path(str(path) + "-wal").exists()  # checkpointed into the main file
    _damage_page_holding(path, b"NEEDLE-IN-THE-TABLE")

    store, notice = open_store(path)  # the damage is not on the pages opening reads
    assert notice is None
    with pytest.raises(StoreCorruptError) as info:
        store.messages(conv.id)
    store.close()
    assert "is damaged" in str(info.value) and "restart Hearth" in str(info.value)
    assert damage_marker(path).exists()

    store, notice = open_store(path)  # checked on open this time, and set aside
    with store:
        assert store.list_conversations() == []
    assert notice is not None and "moved it to" in notice
    assert not damage_marker(path).exists()
    assert len(asides(tmp_path)) == 1


# Plain only: the index is scrambled through the stdlib's sqlite3 writable_schema.
@pytest.mark.plain_file
def test_a_damaged_search_index_is_rebuilt_on_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "hearth.sqlite3"
    with ChatStore(path) as store:
        conv = store.create_conversation()
        for i in range(200):
            store.add_message(conv.id, "user", f"lighthouse keeper number {i}")
    with closing(connect_raw(path)) as db:  # scramble the index, not the messages
        db.execute("UPDATE messages_fts_data SET block = randomblob(length(block)) WHERE id > 10")
        db.commit()
    with ChatStore(path) as store, pytest.raises(StoreCorruptError):
        store.search("lighthouse")
    assert damage_marker(path).exists()

    store, notice = open_store(path)
    with store:
        assert notice is None  # the messages were sound: nothing set aside
        assert len(store.search("lighthouse", limit=500)) == 200
        assert store.check_integrity(quick=False) == []
    assert not damage_marker(path).exists()
