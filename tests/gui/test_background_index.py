"""The real app on a history full of queued CJK messages indexes them while idle."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.paths import resolve_paths
from engine.history.store import ChatStore
from tests.gui.conftest import Launch

BACKLOG = 3_000
OLDEST = "最古老的独特词语"
SENTENCE = "我们使用中文进行全文搜索，效果很好。这是第{}条消息，内容不同。"


def queued_history(data_dir: Path) -> int:
    """Messages written with the triggers only (as the v2 -> v3 migration leaves them);
    returns the oldest message's id."""
    path = resolve_paths(data_dir).db_path
    with ChatStore(path) as store:
        first = store.create_conversation("最早的对话")
        later = store.create_conversation("后来的对话")
    with sqlite3.connect(path) as db:
        rows = [(first.id, f"{OLDEST}，很久以前写的。", 0.0)]
        rows += [(later.id, SENTENCE.format(i) * 5, float(i)) for i in range(1, BACKLOG)]
        db.executemany(
            "INSERT INTO messages (conversation_id, role, content, status, created_at)"
            " VALUES (?, 'user', ?, 'complete', ?)",
            rows,
        )
        oldest = int(db.execute("SELECT min(id) FROM messages").fetchone()[0])
    db.close()
    with ChatStore(path) as store:
        assert store.index_pending(0) == BACKLOG
    return oldest


def test_the_backlog_is_indexed_while_idle_and_search_finds_the_oldest(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    oldest = queued_history(data_dir)
    hearth = launch(data_dir, wait_ready=False)  # the model loads meanwhile
    left: list[int] = []
    hearth.indexer.sliced.connect(left.append)
    qtbot.waitUntil(lambda: left[-1:] == [0], timeout=120_000)
    assert hearth.store.index_pending(0) == 0
    assert len(left) > 2 and left == sorted(left, reverse=True)  # in slices, while idle

    window = hearth.window
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    window.search_box.insert("独特词")  # as an input method commits it (keyClicks: ASCII only)
    qtbot.waitUntil(lambda: window.search_results.count() == 1, timeout=5_000)
    item = window.search_results.item(0)
    assert "最早的对话" in item.data(Qt.ItemDataRole.AccessibleTextRole)
    window.search_results.itemClicked.emit(item)
    first = hearth.store.conversation(hearth.conversations.current_id or -1)
    assert first is not None and first.title == "最早的对话"
    assert [m.id for m in hearth.store.messages(first.id)] == [oldest]
    assert hearth.indexer.active  # looks again later for what edits and imports queue


def test_no_indexing_while_a_reply_streams(qtbot: QtBot, data_dir: Path) -> None:
    """While the window is busy with a reply (here: while ``busy`` says so) the indexer
    only looks, a few times a second; it goes on when the reply is done."""
    from app.background import IdleIndexer

    queued_history(data_dir)
    streaming = [True]
    looks: list[int] = []

    def busy() -> bool:
        looks.append(1)
        return streaming[0]

    with ChatStore(resolve_paths(data_dir).db_path) as store:
        indexer = IdleIndexer(store, busy=busy)
        indexer.BUSY_MS = 10
        indexer.start(0)
        qtbot.waitUntil(lambda: len(looks) >= 5, timeout=10_000)
        assert store.index_pending(0) == BACKLOG  # nothing indexed while busy
        streaming[0] = False
        qtbot.waitUntil(lambda: indexer.pending == 0, timeout=120_000)
        indexer.stop()
