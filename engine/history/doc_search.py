"""The sidebar's search inside attached documents (issue 14): the documents' own FTS5
index (``doc_chunks_fts``, porter-stemmed, one per content) answers, and each message
that carries a matching document is a hit whose snippet is the best passage and whose
``source`` says which document and where ("manual.pdf, page 12")."""

from __future__ import annotations

from typing import Any, cast

from engine.history.cipher import Database
from engine.history.search import (
    _TOKEN,
    CANDIDATES,
    SNIPPET_TOKENS,
    _hits,
    _query_words,
    _word_pattern,
    fts_query,
    has_cjk,
    snippet,
)
from engine.history.types import HIGHLIGHT_END, HIGHLIGHT_START, SearchHit
from engine.types import Role
from engine.units import location_label

__all__ = ["with_document_hits"]


def with_document_hits(
    db: Database, text: str, hits: list[SearchHit], limit: int
) -> list[SearchHit]:
    """``hits`` (from the messages' own text), then, up to ``limit``, the messages
    whose attached document holds every word (issue 14)."""
    query = fts_query(text)
    # The chunks' index is porter-stemmed unicode61 words: a CJK query is not asked of it.
    if query is None or len(hits) >= limit or has_cjk(text):
        return hits
    return hits + _document_matches(db, query, text, limit - len(hits), hits)


def _document_matches(
    db: Database, query: str, text: str, limit: int, hits: list[SearchHit]
) -> list[SearchHit]:
    """Messages whose attached document holds all the words (issue 14), through the
    documents' own FTS5 index (one per content, shared by every message that attached
    the file): the best passage's words are the snippet and ``source`` names the
    document and where in it ("manual.pdf, page 12"). At most ``CANDIDATES`` passages
    are ranked: a common word in a 1,000-page PDF costs a few ms, not a scan."""
    seen = {h.message_id for h in hits}
    chunks = db.execute(
        """
        SELECT c.id, c.document_id, c.text, c.page, c.page_end, c.line_start, c.line_end
        FROM doc_chunks_fts AS f JOIN doc_chunks AS c ON c.id = f.rowid
        WHERE doc_chunks_fts MATCH ? ORDER BY f.rank LIMIT ?
        """,
        (query, CANDIDATES),
    ).fetchall()
    best: dict[int, tuple[Any, ...]] = {}
    for row in chunks:  # best first: the first passage of each document is its best
        best.setdefault(int(row[1]), tuple(row))
    if not best:
        return []
    marks = ",".join("?" * len(best))
    holders = db.execute(
        f"""
        SELECT m.id, d.id, a.name, m.conversation_id, m.role, m.created_at, c.title
        FROM documents AS d
        JOIN attachments AS a ON a.sha256 = d.sha256 AND a.kind = 'document'
        JOIN messages AS m ON m.id = a.message_id
        JOIN conversations AS c ON c.id = m.conversation_id
        WHERE d.id IN ({marks}) AND c.deleted_at IS NULL AND m.status != 'streaming'
        ORDER BY m.id DESC LIMIT ?
        """,
        (*best, limit + len(seen)),
    ).fetchall()
    words = _query_words(text, _TOKEN)
    out: list[SearchHit] = []
    for mid, doc_id, name, cid, role, created, title in holders:
        if mid in seen or len(out) >= limit:
            continue
        seen.add(mid)
        _, _, passage, page, page_end, line_start, line_end = best[int(doc_id)]
        where = location_label(page, line_start, line_end, page_end)
        out.append(
            SearchHit(
                cid,
                mid,
                title,
                _passage_snippet(passage, words, 2 * SNIPPET_TOKENS),
                0.0,
                cast(Role, role),
                created,
                source=f"{name}, {where}" if where else str(name),
            )
        )
    return out


def _passage_snippet(passage: str, words: list[tuple[str, bool]], size: int) -> str:
    """A document passage's snippet from the start of the sentence (or line) of its
    first match, so it reads "The reset button is behind the battery cover", not
    "…behind the battery cover"; else as a message's snippet."""
    pattern = _word_pattern(tuple(words))
    found = pattern.search(passage) if pattern is not None else None
    if found is None:
        return snippet(passage, words, size)
    at = found.start()
    sentence = passage.rfind(". ", 0, at)
    start = max(sentence + 2 if sentence >= 0 else 0, passage.rfind("\n", 0, at) + 1)
    tokens = list(_TOKEN.finditer(passage, start))
    if at - start > 160 or not tokens:
        return snippet(passage, words, size)
    hits = _hits(passage, tokens, words)
    pieces = ["…"] if start > 0 else []
    pos = tokens[0].start()
    for i, token in enumerate(tokens[:size]):
        pieces.append(passage[pos : token.start()])
        marked = HIGHLIGHT_START + token.group() + HIGHLIGHT_END
        pieces.append(marked if i in hits else token.group())
        pos = token.end()
    pieces.append("…" if len(tokens) > size else passage[pos:])
    return " ".join("".join(pieces).split())
