"""What the model reads of the documents attached to a chat: each whole when it fits,
else the passages that answer the current question, numbered for citations.

Whole or retrieved (``plan_modes``): the documents a chat's messages carry are read
whole while together they take at most ``WHOLE_SHARE`` (60%) of what the chat leaves
free in the context window. The other 40% is room for the reply (1,024 tokens by
default, thinking up to 4,096) and for a few follow-up turns before the window fills;
a larger share made a second question overflow an 8k window with a 4k-token document.
The person can pin a document to either mode; AUTO decides by size.

Where the text goes: a whole document is put into the message it was attached to, so
it stays at the same place in the prompt turn after turn and llama.cpp reuses it from
the cache. Retrieved passages change with every question, so they go into the last
question, after everything that stays the same; the message the document was attached
to keeps a note that it is read by passages.

The query (``conversation_queries``): the last question, and the last three questions
with the start of the last reply. Each is searched with BM25 and the rankings are fused
by reciprocal rank fusion (``rrf``, with vector rankings when an embedding model is
installed), so "and the second one?" still finds the passages of the topic before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from engine.history.doc_index import ChunkHit, DocumentStore, StoredDocument
from engine.history.types import DocMode, StoredMessage
from engine.types import DocumentPart, Role

__all__ = [
    "MAX_PASSAGES",
    "RETRIEVE_SHARE",
    "WHOLE_SHARE",
    "AttachedDocument",
    "DocMode",
    "DocumentPrompt",
    "VectorRanking",
    "attached_documents",
    "conversation_queries",
    "documents_prompt",
    "plan_modes",
    "render_passages",
    "render_whole",
    "rrf",
]

WHOLE_SHARE = 0.6
# Retrieved passages take at most this share of the free room, and at most MAX_PASSAGES.
RETRIEVE_SHARE = 0.3
MAX_PASSAGES = 8
RRF_K = 60  # the constant of Cormack et al. (2009); ranks below ~60 barely count
# The same estimate as engine.documents.tokens (this domain does not import it): the
# chat's own text, before the model's tokenizer measures the rendered turn.
_CHARS_PER_TOKEN = 3.3

# chunk ids of these documents ranked by an embedding model's similarity to a query
VectorRanking = Callable[[Sequence[int], str], Sequence[int]]


@dataclass(frozen=True, slots=True)
class AttachedDocument:
    """A document as a chat carries it: its part, the message holding it, its index
    (None when it has none: not indexed, so it can only be read whole), the mode asked."""

    part: DocumentPart
    message_id: int
    document: StoredDocument | None = None
    mode: DocMode = DocMode.AUTO

    @property
    def sha256(self) -> str:
        return self.part.sha256

    @property
    def label(self) -> str:
        return self.part.name or "document"

    @property
    def tokens(self) -> int:
        return (
            self.document.tokens if self.document is not None else estimate_tokens(self.part.text)
        )

    @property
    def retrievable(self) -> bool:
        return self.document is not None and self.document.indexed > 0


@dataclass(frozen=True, slots=True)
class DocumentPrompt:
    """What prompt_of puts in place of each document part ((message id, sha256) -> text),
    the passages before the last question's text, the chunk id of each citation
    number, and the mode each document was read in (by sha256)."""

    rendered: Mapping[tuple[int, str], str] = field(default_factory=dict)
    passages: str = ""
    citations: tuple[int, ...] = ()
    modes: Mapping[str, DocMode] = field(default_factory=dict)


K = TypeVar("K", bound=Hashable)


def rrf(rankings: Sequence[Sequence[K]], *, k: int = RRF_K) -> list[K]:
    """Reciprocal rank fusion: items by the sum of 1 / (k + rank) over the rankings."""
    score: dict[K, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            score[item] = score.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(score, key=lambda item: -score[item])


def attached_documents(
    store: DocumentStore, messages: Sequence[StoredMessage], modes: Mapping[str, DocMode]
) -> list[AttachedDocument]:
    """The documents on ``messages``, each with its index and the mode asked for it."""
    out: list[AttachedDocument] = []
    for m in messages:
        for part in m.attachments:
            if isinstance(part, DocumentPart):
                index = store.document_by_hash(part.sha256)
                out.append(
                    AttachedDocument(part, m.id, index, modes.get(part.sha256, DocMode.AUTO))
                )
    return out


def plan_modes(docs: Sequence[AttachedDocument], free_tokens: int) -> dict[str, DocMode]:
    """WHOLE or RETRIEVE for each document (by sha256). Pinned ones as pinned; the AUTO
    ones whole, smallest first, while all whole ones take at most WHOLE_SHARE of
    ``free_tokens``. A document with no passages indexed yet can only be read whole."""
    room = WHOLE_SHARE * max(free_tokens, 0)
    out: dict[str, DocMode] = {}
    unique = list({d.sha256: d for d in docs}.values())
    for d in unique:
        if d.mode is DocMode.WHOLE or not d.retrievable:
            out[d.sha256] = DocMode.WHOLE
            room -= d.tokens
        elif d.mode is DocMode.RETRIEVE:
            out[d.sha256] = DocMode.RETRIEVE
    for d in sorted((d for d in unique if d.sha256 not in out), key=lambda d: d.tokens):
        fits = d.tokens <= room
        out[d.sha256] = DocMode.WHOLE if fits else DocMode.RETRIEVE
        room -= d.tokens if fits else 0
    return out


class _Said(Protocol):
    @property
    def role(self) -> Role: ...
    @property
    def content(self) -> str: ...


def conversation_queries(messages: Sequence[_Said]) -> list[str]:
    """The searches for the next reply: the last question alone, then the last three
    questions and the start of the last reply (for a follow-up that names nothing).
    ``content`` is what the person and the model said, never a document's text."""
    questions = [m.content for m in messages if m.role == "user" and m.content]
    if not questions:
        return []
    replies = [m.content for m in messages if m.role == "assistant"]
    context = " ".join([*questions[-3:], replies[-1][:600] if replies else ""])
    return [questions[-1], context]


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def render_whole(name: str, text: str, pages: int | None = None) -> str:
    extra = f' pages="{pages}"' if pages else ""
    return f'<document name="{_attr(name or "document")}"{extra}>\n{text}\n</document>'


def render_note(doc: AttachedDocument) -> str:
    return (
        f'<document name="{_attr(doc.label)}">\n(Too long to read whole: the passages '
        "relevant to each question are given with it.)\n</document>"
    )


def render_passages(passages: Sequence[tuple[str, ChunkHit]]) -> str:
    """Numbered passages, each with its document, place and section, and how to cite."""
    parts = [
        "Passages from the attached documents. Answer from them, and cite each passage "
        "you use by its number in brackets, like [1]."
    ]
    for number, (name, hit) in enumerate(passages, 1):
        c = hit.chunk
        head = f"[{number}] {name}" + (f", {c.location}" if c.location else "")
        head += f" ({c.heading})" if c.heading else ""
        parts.append(f"{head}\n{c.text}")
    return "\n\n".join(parts)


def documents_prompt(
    store: DocumentStore,
    messages: Sequence[_Said],
    attached: Sequence[AttachedDocument],
    *,
    n_ctx: int,
    vector_ranking: VectorRanking | None = None,
) -> DocumentPrompt:
    """What the model reads of ``attached`` (documents on ``messages``, the chat as the
    model reads it, each message's own text only) for the next reply.

    ``vector_ranking``: from an embedding model; None without one (BM25 alone)."""
    if not attached:
        return DocumentPrompt()
    free = n_ctx - sum(estimate_tokens(m.content) for m in messages)
    modes = plan_modes(attached, free)
    rendered: dict[tuple[int, str], str] = {}
    shown: set[str] = set()
    for d in attached:
        if d.sha256 in shown:  # attached again later: read once, at its first place
            rendered[(d.message_id, d.sha256)] = (
                f'<document name="{_attr(d.label)}">(the same document as above)</document>'
            )
            continue
        shown.add(d.sha256)
        pages = d.document.pages if d.document is not None else None
        rendered[(d.message_id, d.sha256)] = (
            render_whole(d.label, d.part.text, pages)
            if modes[d.sha256] is DocMode.WHOLE
            else render_note(d)
        )
    retrieved = [
        d for d in attached if modes[d.sha256] is DocMode.RETRIEVE and d.document is not None
    ]
    hits = _retrieve(store, messages, retrieved, free, vector_ranking)
    names = {d.document.id: d.label for d in retrieved if d.document is not None}
    return DocumentPrompt(
        rendered=rendered,
        passages=render_passages([(names[h.document_id], h) for h in hits]) if hits else "",
        citations=tuple(h.id for h in hits),
        modes=modes,
    )


def _retrieve(
    store: DocumentStore,
    messages: Sequence[_Said],
    docs: Sequence[AttachedDocument],
    free: int,
    vector_ranking: VectorRanking | None,
) -> list[ChunkHit]:
    ids = list(dict.fromkeys(d.document.id for d in docs if d.document is not None))
    if not ids:
        return []
    budget = max(1, int(RETRIEVE_SHARE * max(free, 0)))
    rankings: list[list[int]] = []
    by_id: dict[int, ChunkHit] = {}
    for query in conversation_queries(messages):
        found = store.search_chunks(ids, query, limit=40)
        by_id.update((h.id, h) for h in found)
        rankings.append([h.id for h in found])
        if vector_ranking is not None:
            rankings.append(list(vector_ranking(ids, query)))
    fused = rrf([r for r in rankings if r])
    if not fused:
        # Nothing matched (a question with no topic words, "summarise this"): passages
        # spread evenly across each document, so the model sees its outline at least.
        return _spread(store, ids, budget)
    out: list[ChunkHit] = []
    used = 0
    for cid in fused:
        hit = by_id.get(cid) or store.chunk(cid)
        if hit is None:
            continue
        if out and (used + hit.chunk.tokens > budget or len(out) >= MAX_PASSAGES):
            break
        out.append(hit)
        used += hit.chunk.tokens
    return out


def _spread(store: DocumentStore, ids: Sequence[int], budget: int) -> list[ChunkHit]:
    out: list[ChunkHit] = []
    per_doc = max(1, MAX_PASSAGES // len(ids))
    for doc_id in ids:
        chunks = store.chunks(doc_id)
        if not chunks:
            continue
        step = max(1, len(chunks) // per_doc)
        out.extend(chunks[::step][:per_doc])
    kept: list[ChunkHit] = []
    used = 0
    for hit in out:
        if kept and used + hit.chunk.tokens > budget:
            break
        kept.append(hit)
        used += hit.chunk.tokens
    return kept
