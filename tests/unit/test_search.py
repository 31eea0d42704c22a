"""Search across all chats: real SQLite FTS5, kept in step by triggers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.history import schema as store_schema
from engine.history.search import fts_query, snippet
from engine.history.store import ChatStore, MessageStatus
from engine.history.types import HIGHLIGHT_END, HIGHLIGHT_START, SearchHit
from tests.unit.cipher_modes import both_ciphers, connect_raw

pytestmark = both_ciphers


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def found(store: ChatStore, query: str) -> list[str]:
    return [h.snippet.replace(HIGHLIGHT_START, "[").replace(HIGHLIGHT_END, "]") for h in
            store.search(query)]  # fmt: skip


def fts_is_sound(store: ChatStore) -> bool:
    return store.check_integrity(quick=True) == []


def test_this_python_has_fts5() -> None:
    assert store_schema.has_fts5(), f"SQLite {sqlite3.sqlite_version} without FTS5"


def test_without_fts5_the_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    # An SQLite built without FTS5 cannot be had here (Debian's has it): fake the probe.
    monkeypatch.setattr(store_schema, "has_fts5", lambda: False)
    with pytest.raises(StoreError) as info:
        store_schema.require_fts5()
    assert sqlite3.sqlite_version in str(info.value)
    assert "full-text search (FTS5)" in str(info.value)


def test_finds_words_across_chats_with_highlights(store: ChatStore) -> None:
    lyon = store.create_conversation("Lyon")
    store.add_message(lyon.id, "user", "Where should I eat in Lyon?")
    reply = store.add_message(lyon.id, "assistant", "Try a bouchon near Place Bellecour.")
    rome = store.create_conversation("Rome")
    store.add_message(rome.id, "user", "And in Rome, where to eat well?")
    hits = store.search("eat")
    assert {(h.conversation_id, h.title) for h in hits} == {(lyon.id, "Lyon"), (rome.id, "Rome")}
    (hit,) = store.search("bouchon")
    assert isinstance(hit, SearchHit)
    assert (hit.conversation_id, hit.message_id, hit.role) == (lyon.id, reply.id, "assistant")
    assert hit.created_at == reply.created_at
    assert hit.snippet == f"Try a {HIGHLIGHT_START}bouchon{HIGHLIGHT_END} near Place Bellecour."
    assert hit.parts() == [
        ("Try a ", False),
        ("bouchon", True),
        (" near Place Bellecour.", False),
    ]
    # Every word must occur; case and accents do not matter.
    assert found(store, "EAT lyon") == ["Where should I [eat] in [Lyon]?"]
    assert found(store, "place BELLÉCOUR") == ["Try a bouchon near [Place] [Bellecour]."]


def test_newest_first_or_best_first(store: ChatStore) -> None:
    conv = store.create_conversation()
    long = store.add_message(conv.id, "user", "tea " + "filler words here " * 30)
    best = store.add_message(conv.id, "user", "tea tea tea")
    newest = store.add_message(conv.id, "user", "green tea")
    hits = store.search("tea")
    assert [h.message_id for h in hits] == [newest.id, best.id, long.id]
    assert {h.rank for h in hits} == {0.0}
    ranked = store.search("tea", ranked=True)
    assert [h.message_id for h in ranked] == [best.id, newest.id, long.id]
    assert ranked[0].rank < ranked[1].rank < ranked[2].rank < 0  # bm25: lower is better
    assert ranked[0].snippet.count(HIGHLIGHT_START) == 3
    assert len(store.search("tea", limit=2)) == len(store.search("tea", 2, ranked=True)) == 2
    assert store.search("tea", limit=0) == []
    store.delete_conversation(conv.id)
    assert store.search("tea") == store.search("tea", ranked=True) == []


def test_the_last_word_is_a_prefix(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "The lighthouse keeper")
    store.add_message(conv.id, "user", "light reading")
    assert sorted(found(store, "lig")) == ["The [lighthouse] keeper", "[light] reading"]
    assert found(store, "lighth") == ["The [lighthouse] keeper"]
    assert found(store, "light keep") == []  # only the last word is a prefix...
    assert found(store, "lighthouse keep") == ["The [lighthouse] [keeper]"]


@pytest.mark.parametrize(
    "query",
    ['"', '""', "AND", "OR NOT", "NEAR(a b", "a*", "*", "-x", "^start", "col:val", "(", ")",
     "'", "a AND", "\\", "%", "_", "NOT", "{a b}", "+", "!!!", "", "   ", "\x00"],
)  # fmt: skip
def test_fts_syntax_in_what_people_type_is_just_text(store: ChatStore, query: str) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "a AND b OR NOT c NEAR(a b) col:val start")
    store.search(query)  # never raises
    assert fts_is_sound(store)


def test_operators_are_matched_as_words(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "cats and dogs")
    store.add_message(conv.id, "user", "cats or birds")
    assert found(store, "cats AND") == ["[cats] [and] dogs"]
    assert found(store, 'or "birds"') == ["cats [or] [birds]"]
    assert found(store, "NOT") == []
    assert fts_query('say "hi" ') == '"say" """hi"""*'
    assert fts_query("?! ...") is None


def test_thinking_is_never_searched(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "assistant", "The answer is 42.", thinking="ponder deeply")
    assert store.search("ponder") == []
    assert found(store, "answer") == ["The [answer] is 42."]


def test_the_index_follows_every_change(store: ChatStore) -> None:
    conv = store.create_conversation("Story")
    reply = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    store.update_message(reply.id, "Once upon", thinking="plotting")
    assert store.search("upon") == []  # a reply is indexed once, when it is finished
    store.update_message(reply.id, "Once upon a time", MessageStatus.STOPPED)
    assert found(store, "time") == ["Once upon a [time]"]
    assert fts_is_sound(store)
    # Continuing it takes it out of the index until it is finished again.
    store.update_message(reply.id, "Once upon a time", MessageStatus.STREAMING)
    store.update_message(reply.id, "Once upon a time there was")
    assert store.search("time") == []
    store.update_message(reply.id, "Once upon a time there was", MessageStatus.COMPLETE)
    assert found(store, "there") == ["Once upon a time [there] was"]
    store.update_message(reply.id, "Once upon a time", thinking="only thinking changed")
    assert store.search("there") == [] and len(store.search("time")) == 1
    version = store.add_variant(reply.id, "A different tale")
    assert found(store, "tale") == ["A different [tale]"]
    assert found(store, "once") == ["[Once] upon a time"]  # other versions are found too
    store.delete_message(version.id)
    assert store.search("tale") == []
    streaming = store.add_message(conv.id, "user", "never finished", MessageStatus.STREAMING)
    store.delete_message(streaming.id)  # was never indexed: nothing to take out
    assert fts_is_sound(store)

    store.delete_conversation(conv.id)
    assert store.search("once") == []  # deleted chats are not found...
    store.undo_delete(conv.id)
    assert len(store.search("once")) == 1  # ...until the delete is undone
    store.delete_conversation(conv.id)
    assert store.purge_deleted() == 1
    assert store.search("once") == []
    assert fts_is_sound(store)
    store.rebuild_search_index()
    assert fts_is_sound(store)


def test_snippets_of_long_messages_center_on_the_match() -> None:
    words = [("needle", False)]
    text = " ".join(f"w{i}" for i in range(500)) + " the needle here " + "tail " * 300
    cut = snippet(text, words, size=6)
    assert cut == f"…w499 the {HIGHLIGHT_START}needle{HIGHLIGHT_END} here tail tail…"
    assert snippet("needle\n\nnext   line", words) == (
        f"{HIGHLIGHT_START}needle{HIGHLIGHT_END} next line"
    )
    end = snippet("a b c d e f g needle", words, size=4)
    assert end == f"…e f g {HIGHLIGHT_START}needle{HIGHLIGHT_END}"
    # A window with more of the words wins over the first match alone.
    both = snippet("alpha x x x x x x x x x alpha beta", [("alpha", False), ("beta", True)], 3)
    assert both.endswith(f"{HIGHLIGHT_START}alpha{HIGHLIGHT_END} {HIGHLIGHT_START}beta"
                         f"{HIGHLIGHT_END}")  # fmt: skip


def test_parts_survive_stray_markers() -> None:
    hit = SearchHit(1, 2, "t", f"a{HIGHLIGHT_END}b {HIGHLIGHT_START}c", 0.0)
    assert "".join(text for text, _ in hit.parts()) == "ab c"


def test_a_reply_cut_by_a_crash_is_indexed_on_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    with ChatStore(path) as first:
        conv = first.create_conversation()
        msg = first.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
        first.update_message(msg.id, "half a sentence")
        assert first.search("sentence") == []
    with ChatStore(path) as second:
        (hit,) = second.search("sentence")
        assert hit.message_id == msg.id
        assert second.message(msg.id).status is MessageStatus.INTERRUPTED  # type: ignore[union-attr]
        assert fts_is_sound(second)


def test_the_quick_way_to_a_snippet_agrees_with_the_thorough_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import random

    from engine.history import search

    rng = random.Random(7)
    vocab = ["tea", "teapot", "green", "Tea,", "(steep)", "cup", "x_y", "water", "boil"] * 3
    cases = []
    for _ in range(300):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(50, 400)))
        query = rng.choice(["tea", "te", "green cup", "steep", "boil wat", "water", "tea te"])
        cases.append((text, search._query_words(query)))
    quick = [snippet(text, words) for text, words in cases]
    monkeypatch.setattr(search, "_near_first_match", lambda c, w, s: (0, len(c)))
    monkeypatch.setattr(search, "_word_pattern", lambda words: None)  # fold every token
    thorough = [snippet(text, words) for text, words in cases]

    def marked(snip: str) -> set[str]:
        return {text.lower() for text, hit in SearchHit(0, 0, "", snip, 0.0).parts() if hit}

    # The quick way looks near the first match only: it may miss a window further
    # on that holds more of the words, and otherwise finds the same snippet.
    assert all(marked(q) for q in quick)
    differ = [(q, t) for q, t in zip(quick, thorough, strict=True) if q != t]
    assert len(differ) <= len(cases) // 20
    assert all(len(marked(t)) > len(marked(q)) for q, t in differ), differ
    accented = "word " * 300 + "the Café is open"
    assert f"{HIGHLIGHT_START}Café{HIGHLIGHT_END}" in snippet(accented, [("cafe", False)])


# -- Chinese, Japanese, Korean: no spaces between words --------------------------------


def test_cjk_words_are_found_inside_sentences(store: ChatStore) -> None:
    conv = store.create_conversation()
    zh = store.add_message(conv.id, "assistant", "我们使用中文进行全文搜索，效果很好。")
    ja = store.add_message(conv.id, "user", "日本語のテキストを検索できますか")
    ko = store.add_message(conv.id, "assistant", "한국어 문장에서 검색합니다")
    mixed = store.add_message(conv.id, "user", "Explain Python 的列表推导式 please")
    ids = lambda q: [h.message_id for h in store.search(q)]  # noqa: E731
    assert ids("中文") == [zh.id]
    assert ids("文进") == [zh.id]  # any run of characters, not only "words"
    assert ids("中") == [zh.id]  # the first keystroke of search as you type
    assert ids("中文 效果") == [zh.id]  # every term, anywhere in the message
    assert ids("中文 日本") == []
    assert ids("テキスト") == [ja.id]
    assert ids("검색") == [ko.id]
    assert ids("python 推导") == [mixed.id]
    assert ids("推导 pyth") == [mixed.id]  # the last Latin word is still a prefix
    assert ids("文中") == []  # characters in that order only
    assert found(store, "中文") == ["我们使用[中][文]进行全文搜索，效果很好。"]
    assert store.search("中文", ranked=True)[0].message_id == zh.id
    assert fts_is_sound(store)


def test_latin_search_does_not_change_with_cjk_in_the_history(store: ChatStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "Where is the café?")
    store.add_message(conv.id, "assistant", "The café 咖啡馆 is on the left.")
    assert found(store, "cafe") == ["The [café] 咖啡馆 is on the left.", "Where is the [café]?"]
    assert found(store, "咖啡") == ["The café [咖][啡]馆 is on the left."]


def test_the_cjk_index_follows_every_change(store: ChatStore) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
    store.update_message(msg.id, "正在写中文", MessageStatus.STREAMING)
    assert store.search("中文") == []  # not indexed while it streams (as messages_fts)
    store.update_message(msg.id, "写好了中文回答", MessageStatus.COMPLETE)
    assert [h.message_id for h in store.search("中文")] == [msg.id]
    store.update_message(msg.id, "改成日本語", MessageStatus.COMPLETE)
    assert store.search("中文") == [] and [h.message_id for h in store.search("日本")] == [msg.id]
    store.update_message(msg.id, "now plain English", MessageStatus.COMPLETE)
    assert store.search("日本") == []
    other = store.add_message(conv.id, "user", "再见中文")
    store.delete_message(other.id)
    assert store.search("中文") == []
    keep = store.add_message(conv.id, "user", "保留中文")
    store.delete_conversation(conv.id)
    assert store.search("中文") == []  # deleted chats are not searched
    store.undo_delete(conv.id)
    assert [h.message_id for h in store.search("中文")] == [keep.id]
    assert fts_is_sound(store)


def test_cjk_written_by_another_program_is_found(store: ChatStore, tmp_path: Path) -> None:
    """The triggers are plain SQL: a script or the sqlite3 shell can write messages."""
    conv = store.create_conversation()
    with connect_raw(tmp_path / "chats.sqlite3") as db:
        db.execute(
            "INSERT INTO messages (conversation_id, role, content, status, created_at)"
            " VALUES (?, 'user', '别的程序写的中文', 'complete', 0)",
            (conv.id,),
        )
    assert len(store.search("中文")) == 1
    store.rebuild_search_index()
    assert len(store.search("中文")) == 1
    assert fts_is_sound(store)
