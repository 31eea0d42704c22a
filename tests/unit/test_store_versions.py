"""Versions of a turn: regenerate, edit and regenerate, switch, delete one message."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from engine.history.store import SCHEMA_VERSION, ChatStore, MessageStatus, StoredMessage
from tests.unit.cipher_modes import both_ciphers

pytestmark = both_ciphers


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def shown(store: ChatStore, conv_id: int) -> list[str]:
    """The active path as 'text' or 'text [i/n]' for a turn with versions."""
    return [
        m.content + (f" [{m.variant_index + 1}/{m.variant_count}]" if m.variant_count > 1 else "")
        for m in store.messages(conv_id)
    ]


def chat(store: ChatStore) -> tuple[int, list[StoredMessage]]:
    conv = store.create_conversation()
    texts = [("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2")]
    return conv.id, [store.add_message(conv.id, role, text) for role, text in texts]  # type: ignore[arg-type]


def test_regenerate_keeps_every_version(store: ChatStore) -> None:
    conv_id, (_q1, _a1, q2, a2) = chat(store)
    second = store.add_variant(a2.id, "", MessageStatus.STREAMING)
    assert (second.parent_id, second.role, second.variant_index, second.variant_count) == (
        q2.id,
        "assistant",
        1,
        2,
    )
    store.update_message(second.id, "A2 again", MessageStatus.COMPLETE)
    third = store.add_variant(a2.id, "A2 third")  # from any version: same turn
    assert shown(store, conv_id) == ["Q1", "A1", "Q2", "A2 third [3/3]"]
    assert [v.content for v in store.variants(second.id)] == ["A2", "A2 again", "A2 third"]
    assert [v.active for v in store.variants(a2.id)] == [False, False, True]

    store.select_variant(a2.id)
    assert shown(store, conv_id) == ["Q1", "A1", "Q2", "A2 [1/3]"]
    store.select_variant(second.id)
    assert shown(store, conv_id) == ["Q1", "A1", "Q2", "A2 again [2/3]"]
    store.select_variant(second.id)  # choosing the shown one changes nothing
    assert shown(store, conv_id) == ["Q1", "A1", "Q2", "A2 again [2/3]"]
    # The conversation goes on from the version shown.
    q3 = store.add_message(conv_id, "user", "Q3")
    assert q3.parent_id == second.id
    assert shown(store, conv_id)[-2:] == ["A2 again [2/3]", "Q3"]
    store.select_variant(third.id)
    assert shown(store, conv_id) == ["Q1", "A1", "Q2", "A2 third [3/3]"]
    with pytest.raises(KeyError):
        store.select_variant(9999)
    with pytest.raises(KeyError):
        store.add_variant(9999, "nothing to vary")
    assert store.variants(9999) == [] and store.message(9999) is None


def test_edit_a_question_and_regenerate_from_there(store: ChatStore) -> None:
    conv_id, (q1, a1, _q2, a2) = chat(store)
    store.add_variant(a1.id, "A1 redone")  # a choice inside the old branch
    store.select_variant(a1.id)
    # Edit Q1: the edited text is a new version of the first turn; what followed
    # the old Q1 stays in the old branch.
    edited = store.add_variant(q1.id, "Q1 edited")
    assert edited.parent_id is None and edited.variant_count == 2
    assert shown(store, conv_id) == ["Q1 edited [2/2]"]
    reply = store.add_message(conv_id, "assistant", "", MessageStatus.STREAMING)
    assert reply.parent_id == edited.id
    store.update_message(reply.id, "A1 for the edit", MessageStatus.COMPLETE)
    assert shown(store, conv_id) == ["Q1 edited [2/2]", "A1 for the edit"]

    # Back to the first version: the old branch, as it was left (A1, not A1 redone).
    store.select_variant(q1.id)
    assert shown(store, conv_id) == ["Q1 [1/2]", "A1 [1/2]", "Q2", "A2"]
    # Jumping to a message deep in another branch (a search hit) shows its branch.
    store.select_variant(reply.id)
    assert shown(store, conv_id) == ["Q1 edited [2/2]", "A1 for the edit"]
    store.select_variant(a2.id)
    assert shown(store, conv_id) == ["Q1 [1/2]", "A1 [1/2]", "Q2", "A2"]
    # Every version of every turn is still there, oldest first.
    assert [m.content for m in store.all_messages(conv_id)] == [
        "Q1", "A1", "Q2", "A2", "A1 redone", "Q1 edited", "A1 for the edit",
    ]  # fmt: skip
    assert sum(m.active for m in store.all_messages(conv_id)) == 5


def test_edit_a_later_question_keeps_the_start(store: ChatStore) -> None:
    conv_id, (_q1, a1, q2, _a2) = chat(store)
    store.add_message(conv_id, "user", "Q3")
    edited = store.add_variant(q2.id, "Q2 edited")
    assert edited.parent_id == a1.id
    assert shown(store, conv_id) == ["Q1", "A1", "Q2 edited [2/2]"]
    store.select_variant(q2.id)
    assert shown(store, conv_id) == ["Q1", "A1", "Q2 [1/2]", "A2", "Q3"]


def test_delete_one_message_keeps_what_follows(store: ChatStore) -> None:
    conv_id, (q1, a1, q2, a2) = chat(store)
    assert store.delete_message(a1.id) == [a1.id]
    assert shown(store, conv_id) == ["Q1", "Q2", "A2"]
    assert store.message(q2.id).parent_id == q1.id  # type: ignore[union-attr]
    assert store.delete_message(q1.id) == [q1.id]  # the first one
    assert shown(store, conv_id) == ["Q2", "A2"]
    assert store.message(q2.id).parent_id is None  # type: ignore[union-attr]
    assert store.delete_message(a2.id) == [a2.id]  # the last one
    assert shown(store, conv_id) == ["Q2"]
    assert store.delete_message(a2.id) == []  # already gone
    assert store.add_message(conv_id, "assistant", "A2 new").parent_id == q2.id


def test_delete_a_version_takes_its_branch(store: ChatStore) -> None:
    conv_id, (q1, a1, q2, a2) = chat(store)
    a1b = store.add_variant(a1.id, "A1b")
    q2b = store.add_message(conv_id, "user", "Q2b")
    store.select_variant(a2.id)
    assert shown(store, conv_id) == ["Q1", "A1 [1/2]", "Q2", "A2"]
    # Deleting A1 (one of two versions) removes what followed it, and A1b shows.
    assert sorted(store.delete_message(a1.id)) == sorted([a1.id, q2.id, a2.id])
    assert shown(store, conv_id) == ["Q1", "A1b", "Q2b"]
    assert store.message(a1b.id).variant_count == 1  # type: ignore[union-attr]
    assert [m.id for m in store.all_messages(conv_id)] == [q1.id, a1b.id, q2b.id]


def test_a_version_whose_parent_has_versions_of_its_own(store: ChatStore) -> None:
    """Deleting a lone message between versioned turns: its children move up."""
    conv_id, (_q1, a1, q2, a2) = chat(store)
    a2b = store.add_variant(a2.id, "A2b")
    assert store.delete_message(q2.id) == [q2.id]
    assert shown(store, conv_id) == ["Q1", "A1", "A2b [2/2]"]
    assert [v.id for v in store.variants(a2.id)] == [a2.id, a2b.id]
    assert store.message(a2.id).parent_id == a1.id  # type: ignore[union-attr]


# -- schema v2 -> v3 (the CJK search index) ------------------------------------------

# Written by Hearth's v2 store code (git 95f465b; the script is
# data/make_store_v2.txt): a chat with a thinking reply and a second version,
# a pinned Chinese chat, a Japanese chat with per-chat settings, a mixed chat
# whose reply was left STREAMING by a process that died, and a deleted chat.
V2_FILE = Path(__file__).parent / "data" / "store_v2.sqlite3"
V2_TIME = 1_700_000_000.0  # the file's clock, so its deleted chat can still be undone


# Plain only: a v2 file was written by Hearth 0.2, which never encrypted.
@pytest.mark.plain_file
def test_a_v2_file_upgrades_to_v3_keeping_everything(tmp_path: Path) -> None:
    path = tmp_path / "hearth.sqlite3"
    path.write_bytes(V2_FILE.read_bytes())
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        before = db.execute("SELECT * FROM messages ORDER BY id").fetchall()
        convs_before = db.execute("SELECT * FROM conversations ORDER BY id").fetchall()
    with ChatStore(path, clock=lambda: V2_TIME + 3600) as store:
        assert [(c.id, c.title, c.pinned) for c in store.list_conversations()] == [
            (2, "中文聊天", True),
            (4, "Mixed", False),
            (3, "日本語", False),
            (1, "Trip to Lyon", False),
        ]
        lyon = store.messages(1)
        assert [m.content for m in lyon] == [
            "What should I see in Lyon?",
            "See the Fourvière basilica.",
        ]
        assert (lyon[1].variant_index, lyon[1].variant_count) == (1, 2)
        assert store.variants(lyon[1].id)[0].thinking == "They like walking."
        assert store.conversation_settings(3) == {"thinking": "off"}
        assert store.messages(4)[-1].status is MessageStatus.INTERRUPTED
        assert store.undo_delete(5) is not None
        # Latin search as before; CJK words found inside sentences, even the reply
        # the crash cut (indexed by the recovery at open).
        assert [h.message_id for h in store.search("traboules")] == [2]
        assert [h.message_id for h in store.search("中文")] == [5, 4]
        assert [h.message_id for h in store.search("テキスト")] == [7, 6]
        assert [h.message_id for h in store.search("推导")] == [9, 8]
        assert [h.message_id for h in store.search("删除")] == [10]
        assert store.check_integrity(quick=False) == []
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        full = db.execute("SELECT * FROM messages ORDER BY id").fetchall()
        # v4 added the model that wrote each reply, v6 the tool parts (issue 16): ""
        # for these.
        assert {row[-2] for row in full} == {""} and {row[-1] for row in full} == {""}
        after = [row[:-2] for row in full]
        # Nothing lost: only the dead process' reply changed (streaming -> interrupted).
        assert [row for row in after if row[0] != 9] == [row for row in before if row[0] != 9]
        assert len(db.execute("SELECT * FROM conversations").fetchall()) == len(convs_before)
