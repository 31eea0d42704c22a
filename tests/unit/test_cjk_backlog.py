"""A history already full of CJK text (after the v2 -> v3 migration, an import):
the queue of messages for the CJK index is drained in slices, and search is
complete before, during and after."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine.history.search
from engine.history.search import INLINE_INDEX, segment
from engine.history.store import ChatStore, MessageStatus
from tests.unit.cipher_modes import both_ciphers, connect_raw

pytestmark = both_ciphers

BACKLOG = 3_000
OLDEST = "最古老的独特词语"
# Few characters, so that phrases recur; Latin words with case and accents between.
CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
LATIN = ["ok", "OK", "Café", "ÉCOLE", "Straße", "python", "pythonic", "ok_x", "naïve", "Λόγος"]
SEPARATORS = ["", "", "", "", "，", "。", " ", "、", "\n"]


def history(rng: random.Random, count: int) -> list[str]:
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(20, 80)):
            parts.append(rng.choice(CHARS) + rng.choice(SEPARATORS))
            if rng.random() < 0.04:
                parts.append(f" {rng.choice(LATIN)} ")
        texts.append("".join(parts))
    texts[0] += OLDEST
    return texts


def fill(path: Path) -> None:
    """A store whose messages were written with the triggers only (as by the
    migration or another program): every one of them queued, none indexed."""
    ChatStore(path).close()
    texts = history(random.Random(7), BACKLOG)
    with connect_raw(path) as db:
        db.executemany(
            "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, 0, 0)",
            [(c, f"chat {c}") for c in range(1, 31)],
        )
        db.executemany(
            "INSERT INTO messages (conversation_id, role, content, status, created_at)"
            " VALUES (?, 'user', ?, 'complete', ?)",
            [(1 + i % 30, text, float(i)) for i, text in enumerate(texts)],
        )
    db.close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[ChatStore, ChatStore]]:
    """(a store with the whole backlog queued, the same history fully indexed)."""
    for name in ("backlog", "indexed"):
        fill(tmp_path / f"{name}.sqlite3")
    backlog = ChatStore(tmp_path / "backlog.sqlite3")
    indexed = ChatStore(tmp_path / "indexed.sqlite3")
    assert indexed.index_pending(BACKLOG) == 0
    yield backlog, indexed
    backlog.close()
    indexed.close()


def queries(store: ChatStore) -> list[str]:
    """Runs of characters taken from the messages, pairs of them, mixed with Latin
    words (whole, prefixes, other case, without accents), and some never there."""
    rng = random.Random(3)
    contents = [m.content for m in store.messages(1)]
    found = [OLDEST, OLDEST[2:5], "中", "的 一", "zzz 中", "中 ok", "ok 中", "OK", "中 o"]
    found += ["cafe 的", "Ecole 一", "strasse 是", "naive 在", "pyth 中", "python 中", "x 的"]
    found += ["λόγος 的", "ΛΌΓΟΣ 的", "λογος 的"]
    for _ in range(60):
        text = rng.choice(contents)
        i = rng.randrange(len(text) - 6)
        run = text[i : i + rng.choice((1, 2, 3, 4))]
        found.append(run if rng.random() < 0.7 else f"{run} {text[i + 5 : i + 7]}")
    return [q for q in found if q.strip()]


def ids(store: ChatStore, query: str, *, ranked: bool = False) -> list[int]:
    return [h.message_id for h in store.search(query, ranked=ranked)]


def test_search_is_complete_while_the_backlog_drains_in_slices(
    stores: tuple[ChatStore, ChatStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    backlog, indexed = stores
    # Searches index nothing themselves here: the slices below do it all.
    monkeypatch.setattr(engine.history.search, "INLINE_INDEX", 0)
    asked = queries(indexed)
    expected = {q: ids(indexed, q) for q in asked}
    assert any(len(v) == 50 for v in expected.values())  # a full page: newest 50
    assert any(0 < len(v) < 50 for v in expected.values())
    assert ids(indexed, OLDEST) == [1]
    left = backlog.index_pending(0)
    assert left == BACKLOG  # counting indexes nothing
    slices = 0
    while True:
        for q in asked[slices::4]:  # a quarter of the queries at each step
            assert ids(backlog, q) == expected[q], q
            ranked = ids(backlog, q, ranked=True)
            assert len(ranked) == len(expected[q]), q
            if len(ranked) < 50:  # all of them, bm25 order among the indexed ones
                assert sorted(ranked) == sorted(expected[q]), q
        if left == 0:
            break
        remaining = backlog.index_pending(250)
        assert remaining == max(left - 250, 0)
        left, slices = remaining, slices + 1
    assert slices == BACKLOG // 250
    assert backlog.check_integrity() == []
    for q in asked:
        assert ids(backlog, q) == expected[q], q


def test_a_search_indexes_a_little_of_a_large_backlog_itself(
    stores: tuple[ChatStore, ChatStore],
) -> None:
    backlog, _ = stores
    assert ids(backlog, OLDEST) == [1]  # the oldest: indexed last, read from the queue
    assert backlog.index_pending(0) == BACKLOG - INLINE_INDEX
    assert backlog.search("ok") != []  # a Latin query leaves the queue alone
    assert backlog.index_pending(0) == BACKLOG - INLINE_INDEX


def test_changes_while_queued_are_searched_as_they_are_now(
    stores: tuple[ChatStore, ChatStore],
) -> None:
    """The index may hold an older text of a queued message: it is not trusted."""
    backlog, _ = stores
    conv = backlog.create_conversation("新的")
    edited = backlog.add_message(conv.id, "user", "原来的说法")
    backlog.index_pending(1)  # the newest: now in the index
    backlog.update_message(edited.id, "改过的说法", MessageStatus.COMPLETE)  # queued again
    streaming = backlog.add_message(conv.id, "assistant", "正在写", MessageStatus.STREAMING)
    backlog.update_message(streaming.id, "正在写原来的", MessageStatus.STREAMING)
    gone = backlog.create_conversation("删掉")
    backlog.add_message(gone.id, "user", "原来的说法也在这里")
    backlog.delete_conversation(gone.id)
    assert backlog.index_pending(0) > INLINE_INDEX  # what follows reads the queue
    assert ids(backlog, "原来的说法") == []
    assert ids(backlog, "改过的") == [edited.id]
    assert ids(backlog, "正在写") == []  # not while it streams, as the index
    backlog.update_message(streaming.id, "写完了", MessageStatus.COMPLETE)
    assert ids(backlog, "写完") == [streaming.id]
    backlog.undo_delete(gone.id)
    assert len(ids(backlog, "原来的说法")) == 1


def test_segment_makes_each_cjk_character_a_token() -> None:
    text = "Explain Python 的列表推导式, please: 日本語のテキスト 한국어ok"
    assert segment(text).split() == [
        *["Explain", "Python"],
        *"的列表推导式",
        ",",
        *["please:"],
        *"日本語のテキスト",
        *"한국어",
        "ok",
    ]
