"""Documents with real llama.cpp: the starter model (SmolLM2-135M) answering with a
document read whole and with retrieved passages (what the model was given and which
citations the reply keeps, not its prose), and embeddings on a context of their own.

No dedicated embedding GGUF can be obtained here (no network): the embeddings come
from the starter model itself, mean-pooled (engine.inference.embedding says why that is
fine for wiring and weak for retrieval quality). The vector tests assert what holds for
any model: a chunk's own text is its nearest neighbour."""

from __future__ import annotations

import array
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.doc_ingest import embed_document, ingest_bytes, vector_ranking
from engine.history.store import ChatStore
from engine.history.turns import ChatSettings, PromptMessages, prompt_with_documents
from engine.inference.embedding import Embedder
from engine.inference.session import ChatSession
from engine.types import Message, ReplyDone, SamplingParams, TextDelta
from tests.unit.test_doc_retrieval import TOPICS, guide_markdown

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, top_k=1, seed=0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


@pytest.fixture(scope="module")
def embedder(starter_model_path: Path) -> Iterator[Embedder]:
    e = Embedder(starter_model_path, n_ctx=512)
    yield e
    e.close()


def _ask(store: ChatStore, question: str, name: str, data: bytes) -> int:
    conv = store.create_conversation("t")
    part = ingest_bytes(store, name, data).part
    store.add_message(conv.id, "user", question, attachments=(part,))
    return conv.id


def _prompt(store: ChatStore, conv_id: int, n_ctx: int = 2048, **kw: object) -> PromptMessages:
    messages = store.messages(conv_id)
    return prompt_with_documents(store, messages, ChatSettings(), n_ctx=n_ctx, **kw)  # type: ignore[arg-type]


def _reply(session: ChatSession, store: ChatStore, conv_id: int) -> str:
    prompt = _prompt(store, conv_id)
    events = list(session.stream(prompt.messages, GREEDY))
    assert isinstance(events[-1], ReplyDone)
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_model_answers_with_the_document_inlined(
    smol_session: ChatSession, store: ChatStore
) -> None:
    conv_id = _ask(store, "How often do tomatoes need watering?", "guide.md", guide_markdown())
    prompt = _prompt(store, conv_id)
    rendered = smol_session.render_prompt(prompt.messages)
    assert '<document name="guide.md">' in rendered and TOPICS["Tomatoes"] in rendered
    assert prompt.citations == ()
    assert _reply(smol_session, store, conv_id).strip()


def test_model_answers_from_retrieved_passages(smol_session: ChatSession, store: ChatStore) -> None:
    """2048-token context, a ~25k-token guide: passages, and the reply keeps them."""
    question = "When should apple trees be pruned?"
    conv_id = _ask(store, question, "guide.md", guide_markdown(repeat=400))
    prompt = _prompt(store, conv_id)
    rendered = smol_session.render_prompt(prompt.messages)
    assert "[1] guide.md, lines" in rendered and TOPICS["Pruning"] in rendered
    assert len(smol_session.tokenize(rendered)) < 2048 - GREEDY.max_tokens
    text = _reply(smol_session, store, conv_id)
    reply = store.add_message(conv_id, "assistant", text)
    store.set_citations(reply.id, prompt.citations)
    cited = store.citations(reply.id)
    assert cited[1].chunk.heading == "Garden guide › Pruning"


def test_embeddings_on_their_own_context(
    embedder: Embedder, smol_session: ChatSession, store: ChatStore
) -> None:
    vectors = embedder.embed(["basil and cold nights", "pruning apple trees"])
    assert embedder.dims == 576 and len(vectors) == 2
    for v in vectors:
        floats = array.array("f", v)
        assert len(floats) == 576
        assert math.isclose(math.sqrt(sum(x * x for x in floats)), 1.0, rel_tol=1e-3)
    # the chat model's own session still answers: the embedder did not touch its context
    events = list(smol_session.stream([Message("user", "Hi")], GREEDY))
    assert isinstance(events[-1], ReplyDone)


def test_vectors_for_every_chunk_and_fused_retrieval(embedder: Embedder, store: ChatStore) -> None:
    done = ingest_bytes(store, "guide.md", guide_markdown(repeat=6))
    doc_id = done.document.id
    made = embed_document(store, embedder, doc_id)
    chunks = store.chunks(doc_id)
    assert made == len(chunks) and embed_document(store, embedder, doc_id) == 0
    target = chunks[len(chunks) // 2]
    rank = vector_ranking(store, embedder)
    query = f"{target.chunk.heading}\n{target.chunk.text}"
    assert rank([doc_id], query)[0] == target.id
    conv = store.create_conversation("t")
    store.add_message(
        conv.id, "user", "When should apple trees be pruned?", attachments=(done.part,)
    )
    prompt = _prompt(store, conv.id, n_ctx=1024, vector_ranking=rank)
    assert prompt.citations
    first = store.chunk(prompt.citations[0])
    assert first is not None and first.chunk.heading.endswith("Pruning")


def test_a_query_never_waits_for_an_indexing_embedder(embedder: Embedder, store: ChatStore) -> None:
    """While another thread embeds a document, a turn's query goes without vectors."""
    done = ingest_bytes(store, "guide.md", guide_markdown())
    rank = vector_ranking(store, embedder)
    with embedder._lock:  # what embed() holds while a document is embedded
        assert embedder.embed_now("pruning") is None
        assert rank([done.document.id], "pruning") == []
    assert embedder.embed_now("pruning") is not None
