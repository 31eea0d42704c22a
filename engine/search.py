"""Full-text search over the answer text of every live conversation (SQLite FTS5).

What a person types is never FTS5 syntax: each word becomes a quoted phrase
(so ``AND``, ``"``, ``*``, ``-``, ``:`` and parentheses are just text), the
words must all occur, and the last one matches as a prefix, for search as you
type. Thinking is not indexed (see store_schema).
"""

from __future__ import annotations

import bisect
import functools
import re
import sqlite3
import unicodedata
from typing import Any, cast

from engine.types import HIGHLIGHT_END, HIGHLIGHT_START, Role, SearchHit

SNIPPET_TOKENS = 12
# A ranked search computes bm25 for the newest CANDIDATES matches only: ranking
# every match of a common word in 500,000 messages takes longer than a keystroke.
CANDIDATES = 400


def fts_query(text: str) -> str | None:
    """The FTS5 query for what a person typed, or None if it has no word to look for."""
    # unicode61 splits on anything that is not a letter, digit or private-use
    # character, so a term without any of those would match nothing.
    terms = [t for t in text.split() if any(ch.isalnum() for ch in t)]
    if not terms:
        return None
    quoted = ['"' + t.replace('"', '""') + '"' for t in terms]
    quoted[-1] += "*"
    return " ".join(quoted)


def search(
    db: sqlite3.Connection, text: str, limit: int = 50, *, ranked: bool = False
) -> list[SearchHit]:
    """Up to ``limit`` messages of live conversations that match ``text``.

    Newest first by default: FTS5 walks its doclists backwards and stops at
    ``limit``, so the cost hardly grows with the history. ``ranked=True``
    orders by bm25 among the newest ``CANDIDATES`` matches instead; bm25 needs
    each word's document count, a walk over its whole doclist (~10-30 ms for
    a word in most of 500,000 messages).
    """
    query = fts_query(text)
    if query is None or limit <= 0:
        return []
    if ranked:
        rows = _ranked(db, query, limit)
    else:
        # The FTS table drives the loop, in rowid order (no sort): see bench/RESULTS.md.
        rows = db.execute(
            """
            SELECT m.id, m.content, m.conversation_id, m.role, m.created_at, c.title, 0.0
            FROM messages_fts AS f
            JOIN messages AS m ON m.id = f.rowid
            JOIN conversations AS c ON c.id = m.conversation_id
            WHERE messages_fts MATCH ? AND c.deleted_at IS NULL
            ORDER BY f.rowid DESC LIMIT ?
            """,
            (query, limit),
        ).fetchall()
    # Snippets are cut here, not by FTS5's snippet(): that re-runs the match per
    # row, ~1 ms each for a common word.
    words = _query_words(text)
    return [
        SearchHit(cid, mid, title, snippet(content, words), rank, cast(Role, role), created)
        for mid, content, cid, role, created, title, rank in rows
    ]


def _ranked(db: sqlite3.Connection, query: str, limit: int) -> list[Any]:
    ranked = db.execute(
        """
        SELECT hit.rowid, hit.rank FROM (
            SELECT rowid, rank FROM messages_fts WHERE messages_fts MATCH ?
            ORDER BY rowid DESC LIMIT ?
        ) AS hit
        JOIN messages AS m ON m.id = hit.rowid
        JOIN conversations AS c ON c.id = m.conversation_id
        WHERE c.deleted_at IS NULL
        ORDER BY hit.rank, hit.rowid DESC LIMIT ?
        """,
        (query, CANDIDATES, limit),
    ).fetchall()
    if not ranked:
        return []
    rows = db.execute(
        f"""
        SELECT m.id, m.content, m.conversation_id, m.role, m.created_at, c.title
        FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
        WHERE m.id IN ({",".join("?" * len(ranked))})
        """,
        [mid for mid, _ in ranked],
    ).fetchall()
    found = {row[0]: row for row in rows}
    return [(*found[mid], rank) for mid, rank in ranked if mid in found]


# unicode61's idea of a token: runs of letters and digits (not underscores).
_TOKEN = re.compile(r"[^\W_]+")
_GAP = re.compile(r"[\W_]")


def _fold(word: str) -> str:
    """Case- and accent-blind, like the index (unicode61 remove_diacritics 2)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _query_words(text: str) -> list[tuple[str, bool]]:
    """The folded tokens of a query, each with whether it matches as a prefix."""
    tokens = [_fold(t) for t in _TOKEN.findall(text)]
    return [(t, i == len(tokens) - 1) for i, t in enumerate(tokens)]


def snippet(content: str, words: list[tuple[str, bool]], size: int = SNIPPET_TOKENS) -> str:
    """About ``size`` tokens of ``content`` around its best match, matches marked."""
    lo, hi = _near_first_match(content, words, size)
    cut = _cut(content, lo, hi, words, size)
    if cut is None:  # the best window ran into the end of the part looked at
        cut = _cut(content, 0, len(content), words, size)
    return cut or " ".join(content.split())[:80]


def _cut(content: str, lo: int, hi: int, words: list[tuple[str, bool]], size: int) -> str | None:
    tokens = list(_TOKEN.finditer(content, lo, hi))
    if not tokens:
        return "" if hi == len(content) else None

    hits = _hits(content, tokens, words)
    # The window that holds the most different query words, the earliest if tied.
    order, wanted = list(hits), len({w for w, _ in words})
    start, best = 0, 0
    for i in order:
        first = max(0, i - 2)
        window = order[bisect.bisect_left(order, first) : bisect.bisect_left(order, first + size)]
        found = len({hits[j] for j in window})
        if found > best:
            start, best = first, found
            if found == wanted:
                break
    if start + size > len(tokens):
        if hi < len(content):
            return None
        start = max(0, len(tokens) - size)  # a full window near the end too
    end = min(len(tokens), start + size)
    before = start > 0 or _TOKEN.search(content, 0, tokens[0].start()) is not None
    pieces = ["…"] if before else []
    pos = tokens[start].start()
    for i in range(start, end):
        token = tokens[i]
        pieces.append(content[pos : token.start()])
        if i in hits:
            pieces.append(HIGHLIGHT_START + token.group() + HIGHLIGHT_END)
        else:
            pieces.append(token.group())
        pos = token.end()
    if end < len(tokens) or _TOKEN.search(content, tokens[-1].end()) is not None:
        pieces.append(content[pos : tokens[end].start() if end < len(tokens) else hi].rstrip())
        pieces.append("…")
    else:
        pieces.append(content[pos:])
    return " ".join("".join(pieces).split())  # one line


def _hits(
    content: str, tokens: list[re.Match[str]], words: list[tuple[str, bool]]
) -> dict[int, str]:
    """{token index: the query word it matches} for the tokens of a snippet window."""
    pattern = _word_pattern(tuple(words))
    if pattern is not None:  # plain words: one regex pass, in C
        index = {t.start(): i for i, t in enumerate(tokens)}
        hits = {
            index[m.start()]: words[int(cast(str, m.lastgroup)[1:])][0]
            for m in pattern.finditer(content, tokens[0].start(), tokens[-1].end())
            if m.start() in index
        }
        if hits:
            return hits
    # Accents on either side (café for cafe): fold each token as the index does.

    def matched(token: str) -> str | None:
        folded = token.lower() if token.isascii() else _fold(token)
        for word, prefix in words:
            if folded == word or (prefix and folded.startswith(word)):
                return word
        return None

    return {i: w for i, t in enumerate(tokens) if (w := matched(t.group())) is not None}


@functools.lru_cache(maxsize=8)
def _word_pattern(words: tuple[tuple[str, bool], ...]) -> re.Pattern[str] | None:
    """Whole tokens equal to (or, for a prefix, starting with) a query word."""
    if not words or not all(w.isascii() for w, _ in words):
        return None
    rest = r"[^\W_]*"  # the rest of a token
    alternatives = "|".join(
        f"(?P<w{i}>{re.escape(w)}{rest if prefix else ''})" for i, (w, prefix) in enumerate(words)
    )
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)


def _near_first_match(content: str, words: list[tuple[str, bool]], size: int) -> tuple[int, int]:
    """The part of a long ``content`` worth tokenizing: around the first plain match.

    Folding every token of a long reply costs more than the query; a regex finds
    the first match of an unaccented word in microseconds. Accented or non-ASCII
    words fall back to the whole text.
    """
    reach = 8 * size  # characters: about `size` tokens of English
    if len(content) <= 3 * reach:
        return 0, len(content)
    pattern = _word_pattern(tuple(words))
    found = pattern.search(content) if pattern is not None else None
    if found is None:
        return 0, len(content)
    lo = max(0, found.start() - reach)
    if lo > 0:  # start after a whole word, not inside one
        gap = _GAP.search(content, lo)
        lo = gap.end() if gap is not None and gap.end() <= found.start() else found.start()
    return lo, min(len(content), found.start() + 3 * reach)
