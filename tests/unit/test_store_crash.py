"""A process killed mid-reply keeps what its ReplyRecorder had saved."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

from engine.store import ChatStore, MessageStatus

REPO = Path(__file__).resolve().parents[2]

# Appends "000000 000001 ..." and reports each append and each save on stdout.
# A "saved N" line is printed only after the write of N characters committed.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from engine.store import ChatStore, MessageStatus, ReplyRecorder

    store = ChatStore(Path(sys.argv[1]))
    conv = store.create_conversation("crash")
    msg = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    real_update = store.update_message

    def update(msg_id, content, status=None):
        real_update(msg_id, content, status)
        print(f"saved {len(content)}", flush=True)

    store.update_message = update
    recorder = ReplyRecorder(store, msg.id, interval=0.2)
    print(f"message {msg.id}", flush=True)
    i = 0
    while True:
        recorder.append(f"{i:06d} ")
        print(f"appended {i}", flush=True)
        i += 1
        time.sleep(0.002)
    """
)


def piece(i: int) -> str:
    return f"{i:06d} "


@pytest.mark.timeout(60)
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

    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with ChatStore(db_path) as store:
        (conv,) = store.list_conversations()
        (msg,) = store.messages(conv.id)
    assert msg.id == message_id
    assert msg.status is MessageStatus.INTERRUPTED
    assert len(msg.content) >= saved > 0
    expected = "".join(piece(i) for i in range(len(msg.content) // len(piece(0)) + 1))
    assert expected.startswith(msg.content)
    # Saved at least every 0.2 s: what was lost is far less than what was written.
    assert len(msg.content) >= len("".join(piece(i) for i in range(appended))) // 2
