"""Search in the text of tool calls and their results (issue 16).

``tool_fts`` (schema v7) indexes, per reply, its calls' names and arguments and its
results; ``messages_fts`` keeps indexing exactly the answer text. A search asks both
and merges: a reply found by its answer is listed once, with its answer's snippet;
one found only by a tool's text gets a snippet of that text.
"""

from __future__ import annotations

from typing import cast

from engine.history.cipher import Database
from engine.history.search import _query_words, fts_query, snippet
from engine.history.types import SearchHit
from engine.types import Role

__all__ = ["with_tool_hits"]


def with_tool_hits(
    db: Database, text: str, hits: list[SearchHit], limit: int, *, ranked: bool
) -> list[SearchHit]:
    """``hits`` (from the answer text) with the replies whose tools' text matches."""
    query = fts_query(text)
    if query is None or limit <= 0:
        return hits
    rows = db.execute(
        """
        SELECT m.id, t.text, m.conversation_id, m.role, m.created_at, c.title
        FROM tool_fts AS t
        JOIN messages AS m ON m.id = t.rowid
        JOIN conversations AS c ON c.id = m.conversation_id
        WHERE tool_fts MATCH ? AND c.deleted_at IS NULL
        ORDER BY t.rowid DESC LIMIT ?
        """,
        (query, limit),
    ).fetchall()
    if not rows:
        return hits
    seen = {h.message_id for h in hits}
    words = _query_words(text)
    extra = [
        SearchHit(cid, mid, title, snippet(tool_text or "", words), 0.0, cast(Role, role), created)
        for mid, tool_text, cid, role, created, title in rows
        if mid not in seen
    ]
    if ranked:  # bm25 orders the answers; tool-only matches come after them
        return (hits + extra)[:limit]
    return sorted(hits + extra, key=lambda h: -h.message_id)[:limit]
