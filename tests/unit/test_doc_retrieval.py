"""Documents in the chat store (engine.history.doc_index, doc_prompt, turns) on a real
SQLite file: stored once per content, indexing that goes on after a stop, BM25 search,
whole-or-retrieve, the query built from the conversation, passages with citation
numbers in the prompt, deletion with everything that hangs on a document."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from app.doc_ingest import IngestCancelled, ingest_bytes, ingest_file
from engine.history.doc_index import fts_query
from engine.history.doc_prompt import (
    WHOLE_SHARE,
    AttachedDocument,
    DocMode,
    conversation_queries,
    plan_modes,
    rrf,
)
from engine.history.store import ChatStore
from engine.history.turns import ChatSettings, PromptMessages, prompt_of, prompt_with_documents
from engine.history.types import MessageStatus
from engine.types import DocumentPart, Message
from tests.fixtures.documents import pdf_bytes
from tests.unit.cipher_modes import both_ciphers, connect_raw

pytestmark = both_ciphers

TOPICS = {
    "Tomatoes": "Tomatoes need six hours of sun and deep watering twice a week.",
    "Basil": "Basil hates cold nights; bring the pots indoors below ten degrees.",
    "Aphids": "Aphids are washed off with a jet of water or a soap spray.",
    "Compost": "Compost heaps are turned every fortnight to keep them aerobic.",
    "Pruning": "Prune apple trees in late winter, cutting crossing branches first.",
}


def guide_markdown(repeat: int = 1) -> bytes:
    """A Markdown guide: one section per topic, each with filler paragraphs."""
    lines = ["# Garden guide", ""]
    for topic, fact in TOPICS.items():
        lines += [f"## {topic}", "", fact, ""]
        for i in range(repeat):
            lines += [f"General note {i} about gardens, soil, weather and seasons.", ""]
    return "\n".join(lines).encode()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def _question(store: ChatStore, text: str, *attach: tuple[str, bytes]) -> tuple[int, int]:
    """A new chat whose first question carries the documents ``attach`` (name, bytes),
    read and indexed as the window does it."""
    conv = store.create_conversation("t")
    parts = tuple(ingest_bytes(store, name, data).part for name, data in attach)
    q = store.add_message(conv.id, "user", text, attachments=parts)
    return conv.id, q.id


def test_stored_once_per_content_and_searchable(store: ChatStore) -> None:
    doc = ingest_bytes(store, "guide.md", guide_markdown()).document
    again = ingest_bytes(store, "copy-of-guide.md", guide_markdown())
    assert again.document == doc and again.name == "copy-of-guide.md"
    assert again.text == guide_markdown().decode() and again.mime == "text/markdown"
    assert doc.complete and doc.chunk_count == doc.indexed == len(TOPICS)
    hits = store.search_chunks([doc.id], "when should I prune apple trees?")
    assert hits[0].chunk.heading == "Garden guide › Pruning"
    assert hits[0].chunk.location == "lines 29–31"
    assert "crossing branches" in hits[0].chunk.text


def test_stemming_finds_other_forms(store: ChatStore) -> None:
    doc = ingest_bytes(store, "guide.md", guide_markdown()).document
    assert store.search_chunks([doc.id], "watered")[0].chunk.heading.endswith("Tomatoes")


def test_query_text_is_never_fts_syntax(store: ChatStore) -> None:
    doc = ingest_bytes(store, "guide.md", guide_markdown()).document
    for text in ['"unbalanced', "NEAR(a b)", "col:x OR", "*", "AND", "-basil"]:
        store.search_chunks([doc.id], text)  # never raises
    assert fts_query("What is the basil doing?") == '"basil"'
    assert fts_query("the a of") == ""


def test_indexing_cancelled_half_way_goes_on_later(
    store: ChatStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop after the first batch keeps it; the next attach stores only the rest."""
    import app.doc_ingest as ingest

    monkeypatch.setattr(ingest, "BATCH", 10)
    data = guide_markdown(repeat=200)
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def stop_after_first(done: int, total: int) -> None:
        seen.append((done, total))
        cancel.set()

    with pytest.raises(IngestCancelled):
        ingest_bytes(store, "big.md", data, cancel=cancel, progress=stop_after_first)
    total = seen[0][1]
    assert total > ingest.BATCH
    half = store.document_by_hash(__import__("hashlib").sha256(data).hexdigest())
    assert half is not None and not half.complete and half.indexed == ingest.BATCH
    resumed: list[int] = []
    doc = ingest_bytes(store, "big.md", data, progress=lambda d, t: resumed.append(d)).document
    assert doc.complete and doc.indexed == total
    assert resumed[0] == min(2 * ingest.BATCH, total)  # the first batch was not redone
    with closing(connect_raw(store.path)) as db:
        rows = db.execute("SELECT count(*), count(DISTINCT idx) FROM doc_chunks").fetchone()
    assert rows == (total, total)


def test_ingest_file_and_pdf_pages(store: ChatStore, tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    pages = [[f"Filler line {i} on page {p}." for i in range(40)] for p in range(1, 6)]
    pages[3][5] = "The reset button is behind the battery cover."
    path.write_bytes(pdf_bytes(pages))
    attached = ingest_file(store, path)
    doc = attached.document
    assert (doc.kind, doc.pages, attached.mime) == ("pdf", 5, "application/pdf")
    hit = store.search_chunks([doc.id], "where is the reset button")[0]
    assert hit.chunk.page == 4 and hit.chunk.location == "page 4"


def test_delete_document_removes_chunks_index_and_citations(store: ChatStore) -> None:
    doc = ingest_bytes(store, "guide.md", guide_markdown()).document
    conv_id, _q = _question(store, "basil?")
    reply = store.add_message(conv_id, "assistant", "Indoors [1].")
    hit = store.search_chunks([doc.id], "basil")[0]
    store.set_citations(reply.id, [hit.id])
    assert store.citations(reply.id)[1].chunk.text == hit.chunk.text
    store.delete_document(doc.id)
    assert store.citations(reply.id) == {}
    assert store.search_chunks([doc.id], "basil") == []
    with closing(connect_raw(store.path)) as db:
        assert db.execute("SELECT count(*) FROM doc_chunks").fetchone()[0] == 0
        # the external-content index holds no stale rows for them
        found = db.execute(
            "SELECT count(*) FROM doc_chunks_fts WHERE doc_chunks_fts MATCH 'basil'"
        ).fetchone()[0]
        assert found == 0
    assert store.check_integrity(quick=False) == []


def test_citations_go_with_their_reply(store: ChatStore) -> None:
    doc = ingest_bytes(store, "guide.md", guide_markdown()).document
    conv_id, _q = _question(store, "basil?")
    reply = store.add_message(conv_id, "assistant", "x")
    ids = [h.id for h in store.search_chunks([doc.id], "basil aphids")]
    store.set_citations(reply.id, ids)
    assert list(store.citations(reply.id)) == list(range(1, len(ids) + 1))
    store.delete_message(reply.id)
    assert store.citations(reply.id) == {}


# -- the plan, the query, fusion ------------------------------------------------------


def _doc(
    store: ChatStore, data: bytes, name: str, mode: DocMode = DocMode.AUTO
) -> AttachedDocument:
    done = ingest_bytes(store, name, data)
    return AttachedDocument(done.part, 1, done.document, mode)


def test_plan_whole_when_it_fits_in_the_share(store: ChatStore) -> None:
    small = _doc(store, guide_markdown(), "small.md")
    big = _doc(store, guide_markdown(repeat=50), "big.md")
    free = int(small.tokens / WHOLE_SHARE) + 1
    assert plan_modes([small, big], free) == {
        small.sha256: DocMode.WHOLE,
        big.sha256: DocMode.RETRIEVE,
    }
    assert plan_modes([small], free - 2) == {small.sha256: DocMode.RETRIEVE}
    # the person's choice wins both ways
    pinned = _doc(store, guide_markdown(repeat=50), "big.md", DocMode.WHOLE)
    forced = _doc(store, guide_markdown(), "small.md", DocMode.RETRIEVE)
    assert plan_modes([pinned, forced], 100) == {
        big.sha256: DocMode.WHOLE,
        small.sha256: DocMode.RETRIEVE,
    }


def test_a_document_without_an_index_is_read_whole(store: ChatStore) -> None:
    """Not indexed (imported from another Hearth, say): whole, the only way it can be."""
    part = ingest_bytes(store, "big.md", guide_markdown(repeat=50)).part
    unindexed = AttachedDocument(replace(part, sha256="0" * 64), 1, None)
    assert plan_modes([unindexed], 100) == {"0" * 64: DocMode.WHOLE}


def test_queries_come_from_the_conversation() -> None:
    chat = [
        Message("user", "How do I keep basil alive?"),
        Message("assistant", "Basil hates cold nights."),
        Message("user", "And what temperature exactly?"),
    ]
    last, context = conversation_queries(chat)
    assert last == "And what temperature exactly?"
    assert "basil" in context and "cold nights" in context
    assert conversation_queries([]) == []


def test_rrf_rewards_agreement() -> None:
    assert rrf([["a", "b", "c"], ["b", "c", "a"]]) == ["b", "a", "c"]
    assert rrf([]) == []


# -- the prompt -----------------------------------------------------------------------


def _prompt(
    store: ChatStore, conv_id: int, n_ctx: int = 8192, **settings: object
) -> PromptMessages:
    return prompt_with_documents(
        store,
        store.messages(conv_id),
        ChatSettings(**settings),
        n_ctx=n_ctx,  # type: ignore[arg-type]
    )


def test_whole_document_goes_into_its_message(store: ChatStore) -> None:
    conv_id, _ = _question(store, "Summarise this.", ("guide.md", guide_markdown()))
    prompt = _prompt(store, conv_id)
    (question,) = prompt.messages
    assert question.content.startswith('<document name="guide.md">\n# Garden guide')
    assert question.content.endswith("</document>\n\nSummarise this.")
    assert all(fact in question.content for fact in TOPICS.values())
    assert not any(isinstance(p, DocumentPart) for p in question.parts)  # text, not a file
    assert prompt.citations == ()
    # without a context size (no model), documents are read whole too
    assert prompt_of(store.messages(conv_id), ChatSettings()).messages == prompt.messages


def test_long_document_gives_passages_with_citation_numbers(store: ChatStore) -> None:
    conv_id, _ = _question(
        store, "When do I prune the apple trees?", ("guide.md", guide_markdown(repeat=300))
    )
    prompt = _prompt(store, conv_id)
    (question,) = prompt.messages
    text = question.content
    assert text.startswith('<document name="guide.md">\n(Too long to read whole')
    assert "[1] guide.md, lines " in text and "(Garden guide › Pruning)" in text
    assert TOPICS["Pruning"] in text
    assert text.endswith("\n\nWhen do I prune the apple trees?")
    first = store.chunk(prompt.citations[0])
    assert first is not None and first.chunk.heading.endswith("Pruning")


def test_the_person_can_pin_a_mode(store: ChatStore) -> None:
    conv_id, _ = _question(store, "What is in it?", ("guide.md", guide_markdown()))
    sha = store.messages(conv_id)[0].attachments[0].sha256
    passages = _prompt(store, conv_id, document_modes={sha: DocMode.RETRIEVE})
    assert "(Too long to read whole" in passages.messages[0].content
    assert passages.citations
    big_id, _ = _question(store, "Prune?", ("big.md", guide_markdown(repeat=300)))
    big_sha = store.messages(big_id)[0].attachments[0].sha256
    whole = _prompt(store, big_id, n_ctx=2048, document_modes={big_sha: DocMode.WHOLE})
    assert "General note 299" in whole.messages[0].content and not whole.citations
    settings = ChatSettings(document_modes={sha: DocMode.RETRIEVE, big_sha: DocMode.AUTO})
    assert ChatSettings.from_json(settings.to_json()).document_modes == {sha: DocMode.RETRIEVE}


def test_follow_up_that_names_nothing_keeps_the_topic(store: ChatStore) -> None:
    conv_id, _ = _question(
        store, "How cold can basil get?", ("guide.md", guide_markdown(repeat=300))
    )
    store.add_message(conv_id, "assistant", "Not below ten degrees.")
    store.add_message(conv_id, "user", "Why is that?")
    prompt = _prompt(store, conv_id)
    cited = [store.chunk(c) for c in prompt.citations]
    assert cited and cited[0] is not None and cited[0].chunk.heading.endswith("Basil")
    # passages go into the last question; the first keeps only the note
    assert "[1] guide.md" in prompt.messages[-1].content
    assert "[1]" not in prompt.messages[0].content


def test_question_without_topic_words_gets_passages_across_the_document(
    store: ChatStore,
) -> None:
    conv_id, _ = _question(store, "Summarise it please.", ("guide.md", guide_markdown(repeat=300)))
    prompt = _prompt(store, conv_id)
    indices = [store.chunk(c).chunk.index for c in prompt.citations]  # type: ignore[union-attr]
    assert len(indices) > 1 and indices == sorted(indices) and indices[-1] > 10


def test_prompt_without_documents_is_unchanged(store: ChatStore) -> None:
    conv_id, _ = _question(store, "Hi")
    store.add_message(conv_id, "assistant", "Hello", status=MessageStatus.COMPLETE)
    messages = store.messages(conv_id)
    assert _prompt(store, conv_id, n_ctx=4096) == prompt_of(messages, ChatSettings())


def test_index_goes_with_the_last_message_holding_the_document(store: ChatStore) -> None:
    conv_id, q = _question(store, "Prune?", ("guide.md", guide_markdown()))
    sha = store.messages(conv_id)[0].attachments[0].sha256
    other, _ = _question(store, "Basil?", ("guide.md", guide_markdown()))
    store.delete_message(q)
    assert store.document_by_hash(sha) is not None  # the other chat still holds it
    store.delete_conversation(other)
    store.purge_deleted()
    assert store.document_by_hash(sha) is None
    with closing(connect_raw(store.path)) as db:
        assert db.execute("SELECT count(*) FROM doc_chunks").fetchone()[0] == 0


def test_export_import_round_trip_indexes_the_documents_again(
    store: ChatStore, tmp_path: Path
) -> None:
    """JSON carries the document (its file and text); the importing Hearth indexes it, so
    a long one is read by passages there too."""
    from app.doc_ingest import index_stored
    from engine.history.export import export_json, import_json

    conv_id, _ = _question(store, "When to prune?", ("guide.md", guide_markdown(repeat=300)))
    before = _prompt(store, conv_id)
    assert before.citations
    reply = store.add_message(conv_id, "assistant", "In late winter [1].")
    store.set_citations(reply.id, before.citations)
    cited = {n: h.chunk for n, h in store.citations(reply.id).items()}
    data = export_json(store, exported_at=1.0)
    other = ChatStore(tmp_path / "other.sqlite3")
    try:
        (new_id,) = import_json(other, data)
        (part,) = other.messages(new_id)[0].attachments
        assert part.name == "guide.md" and other.unindexed_documents() == [
            (part.sha256, "guide.md")
        ]
        assert index_stored(other) == 1 and other.unindexed_documents() == []
        question, new_reply = other.messages(new_id)
        after = prompt_with_documents(other, [question], ChatSettings(), n_ctx=8192)
        assert after.messages == before.messages  # the same passages, numbered the same
        # the reply's citations open the same passages there
        assert {n: h.chunk for n, h in other.citations(new_reply.id).items()} == cited
        assert export_json(other, exported_at=1.0) == data  # byte for byte
        assert len(after.citations) == len(before.citations)
        assert index_stored(other) == 0  # never twice
    finally:
        other.close()


def test_an_index_never_sent_is_pruned_after_a_day(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = ChatStore(tmp_path / "chats.sqlite3", clock=lambda: now[0])
    try:
        kept_id, _ = _question(store, "Prune?", ("guide.md", guide_markdown()))
        ingest_bytes(store, "draft.md", b"# Draft\n\nNever sent.\n")  # composer only
        assert store.prune_documents() == 0  # not a day old yet
        now[0] += 86_400
        assert store.prune_documents() == 1
        sha = store.messages(kept_id)[0].attachments[0].sha256
        assert store.document_by_hash(sha) is not None  # a sent one stays
    finally:
        store.close()


def test_documents_in_an_encrypted_history(tmp_path: Path) -> None:
    """Chunks, their search index and citations live in the chat database: an encrypted
    one (issue 17) keeps them, searches them and, opened with a second connection as
    the background reader does, writes them."""
    key = bytes(range(32))
    path = tmp_path / "secret.sqlite3"
    store = ChatStore(path, key=key)
    try:
        conv_id, _ = _question(store, "Prune?", ("guide.md", guide_markdown(repeat=300)))
        prompt = _prompt(store, conv_id)
        first = store.chunk(prompt.citations[0])
        assert first is not None and first.chunk.heading.endswith("Pruning")
        with ChatStore.second(path) as reader:  # the background reader's connection
            done = ingest_bytes(reader, "notes.md", b"# Notes\n\nThe spare key is under the pot.\n")
        assert store.search_chunks([done.document.id], "spare key")
    finally:
        store.close()
    assert b"crossing branches" not in path.read_bytes()
