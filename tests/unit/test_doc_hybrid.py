"""Hybrid retrieval with a real embedding model (issue 14): a passage that answers the
question in other words (no word in common, so BM25 cannot find it) reaches the prompt
when an embedding model's ranking is fused with BM25, and does not without one.

Real parts: the store (SQLite FTS5), the chunker, llama.cpp running all-MiniLM-L6-v2
converted to GGUF at test time (tests/fixtures/minilm_gguf.py), the turn's document
step (documents_prompt) as a reply uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.doc_ingest import embed_document, ingest_bytes, vector_ranking
from engine.history.doc_prompt import AttachedDocument, documents_prompt
from engine.history.store import ChatStore
from engine.inference.embedding import Embedder, EmbedderClosed
from engine.types import Message
from tests.fixtures.minilm_gguf import minilm_gguf

pytestmark = pytest.mark.model

ANSWER = "To halt the vehicle, press the brake pedal firmly and evenly until it is still."
QUESTION = "How do I stop my car?"
# Passages that share the question's words ("stop", "car") but do not answer it.
DECOYS = {
    "Buses": "The bus stop by the car park is served every ten minutes on weekdays.",
    "Parking": "Car parking permits stop being valid at the end of each calendar month.",
    "Gardens": "Tomatoes need six hours of sun and deep watering twice a week.",
    "Baking": "Knead the dough for ten minutes, then let it rise in a warm place.",
}


def manual() -> bytes:
    lines = ["# Handbook", ""]
    sections = {**DECOYS, "Braking": ANSWER}
    for i, (heading, fact) in enumerate(sections.items()):
        lines += [f"## {heading}", "", fact, ""]
        lines += [f"Further remarks, number {i}, on unrelated household matters.", ""] * 30
    return "\n".join(lines).encode()


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    e = Embedder(minilm_gguf())
    yield e
    e.close()


def test_hybrid_finds_the_paraphrase_bm25_misses(tmp_path: Path, embedder: Embedder) -> None:
    with ChatStore(tmp_path / "chats.sqlite3") as store:
        done = ingest_bytes(store, "handbook.md", manual())
        doc = done.document
        assert doc.chunk_count >= len(DECOYS) + 1  # a passage per section at least
        (answer,) = [h for h in store.chunks(doc.id) if ANSWER in h.chunk.text]
        bm25 = [h.id for h in store.search_chunks([doc.id], QUESTION, 40)]
        assert bm25 and answer.id not in bm25  # no word in common: words alone miss it
        assert embed_document(store, embedder, doc.id) == doc.chunk_count
        rank = vector_ranking(store, embedder)
        assert list(rank([doc.id], QUESTION))[:1] == [answer.id]  # by meaning, it comes first
        conv = store.create_conversation("t")
        q = store.add_message(conv.id, "user", QUESTION, attachments=(done.part,))
        attached = [AttachedDocument(done.part, q.id, doc)]
        said = [Message("user", QUESTION)]
        # A context too small for the whole handbook (~5k tokens): room for a few passages.
        words = documents_prompt(store, said, attached, n_ctx=4096)
        hybrid = documents_prompt(store, said, attached, n_ctx=4096, vector_ranking=rank)
        assert answer.id not in words.citations and ANSWER not in words.passages
        assert answer.id in hybrid.citations and ANSWER in hybrid.passages


def test_a_closed_embedder_says_so_instead_of_touching_freed_memory() -> None:
    """Deleting the model closes it while a document may still be embedded on another
    thread: later calls raise EmbedderClosed (a query's goes without: None)."""
    e = Embedder(minilm_gguf())
    (vector,) = e.embed(["a sentence"])
    assert len(vector) == 4 * e.dims
    e.close()
    e.close()  # twice is fine
    with pytest.raises(EmbedderClosed):
        e.embed(["another"])
    assert e.embed_now("a question") is None


def test_a_question_is_embedded_after_the_models_query_prefix() -> None:
    e = Embedder(minilm_gguf(), query_prefix="Represent this sentence: ")
    try:
        (with_prefix,) = e.embed(["Represent this sentence: where is the key?"])
        (bare,) = e.embed(["where is the key?"])
        assert e.embed_now("where is the key?") == with_prefix != bare
    finally:
        e.close()
