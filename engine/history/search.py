"""Full-text search over the answer text of every live conversation (SQLite FTS5).

What a person types is never FTS5 syntax: each word becomes a quoted phrase
(so ``AND``, ``"``, ``*``, ``-``, ``:`` and parentheses are just text), the
words must all occur, and the last one matches as a prefix, for search as you
type. Thinking is not indexed (see store_schema).

A query with Chinese, Japanese or Korean text goes to a second index
(``messages_cjk``) in which every CJK character is a token: "中文" is then the
phrase "中 文", found inside any sentence. Messages reach that index through a
queue the triggers fill (``cjk_pending``): a CJK query indexes up to
``INLINE_INDEX`` of them first, and reads any still queued after that directly
(``_unindexed_matches``), so its answer is complete while a large backlog (the
v2 -> v3 migration, an import) waits for ``index_pending_cjk`` calls in idle time.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from typing import Any, cast

from engine.history.cipher import Database
from engine.history.schema import CJK_RANGES
from engine.history.types import HIGHLIGHT_END, HIGHLIGHT_START, SearchHit
from engine.types import Role

SNIPPET_TOKENS = 12
# A ranked search computes bm25 for the newest CANDIDATES matches only: ranking
# every match of a common word in 500,000 messages takes longer than a keystroke.
CANDIDATES = 400


_CJK = re.compile(f"[{CJK_RANGES}]")
_CJK_RUN = re.compile(f"[{CJK_RANGES}]+")
_CJK_BATCH = 500
# A CJK query indexes at most this many queued messages itself (~50 µs each,
# bench/RESULTS.md: ~10 ms); more are read directly (~1-2 µs each) and left to
# index_pending_cjk in idle time (app.background).
INLINE_INDEX = 200


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def segment(text: str) -> str:
    """``text`` with spaces around each CJK character: one token each for unicode61."""
    # One substitution per run of CJK characters, not per character: 24 µs instead
    # of 190 µs for 300 characters of Chinese (the tokens are the same).
    return _CJK_RUN.sub(_spaced, text)


def _spaced(run: re.Match[str]) -> str:
    return " " + " ".join(run.group()) + " "


def fts_query(text: str) -> str | None:
    """The FTS5 query for what a person typed, or None if it has no word to look for."""
    # unicode61 splits on anything that is not a letter, digit or private-use
    # character, so a term without any of those would match nothing.
    terms = [t for t in text.split() if any(ch.isalnum() for ch in t)]
    if not terms:
        return None
    cjk = has_cjk(text)
    quoted = ['"' + (segment(t) if cjk else t).replace('"', '""') + '"' for t in terms]
    if not (cjk and _CJK.search(terms[-1][-1])):  # a CJK character is a whole token
        quoted[-1] += "*"
    return " ".join(quoted)


def index_pending_cjk(db: Database, limit: int | None = None) -> int:
    """Bring up to ``limit`` (default: all) of the messages the triggers queued into
    the CJK index, newest first, in transactions of at most ``_CJK_BATCH``; returns
    how many are still queued. Replies still streaming are left out: their last
    save, to a finished status, queues them again."""
    left = limit
    while left is None or left > 0:
        batch = _CJK_BATCH if left is None else min(left, _CJK_BATCH)
        ids = [
            r[0]
            for r in db.execute("SELECT id FROM cjk_pending ORDER BY id DESC LIMIT ?", (batch,))
        ]
        if ids:
            _index(db, ids)
        if len(ids) < batch:
            return 0  # one connection, one thread: nothing was queued meanwhile
        if left is not None:
            left -= batch
    return pending_cjk(db)


def pending_cjk(db: Database) -> int:
    """How many messages wait for the CJK index (0.1 ms for 20,000)."""
    return int(db.execute("SELECT count(*) FROM cjk_pending").fetchone()[0])


def _index(db: Database, ids: list[int]) -> None:
    marks = ",".join("?" * len(ids))
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute(
            f"SELECT id, content FROM messages WHERE id IN ({marks}) AND status != 'streaming'",
            ids,
        ).fetchall()
        db.execute(f"DELETE FROM messages_cjk WHERE rowid IN ({marks})", ids)
        db.executemany(
            "INSERT INTO messages_cjk (rowid, text) VALUES (?, ?)",
            [(mid, segment(content)) for mid, content in rows if has_cjk(content)],
        )
        db.execute(f"DELETE FROM cjk_pending WHERE id IN ({marks})", ids)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def search(db: Database, text: str, limit: int = 50, *, ranked: bool = False) -> list[SearchHit]:
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
    table, backlog = "messages_fts", False
    if has_cjk(text):
        table = "messages_cjk"
        backlog = index_pending_cjk(db, INLINE_INDEX) > 0
    # Still queued: the index may hold an older text of these (or none), so they are
    # left out of it and read directly; ranked, after the ones bm25 could rank.
    unqueued = " AND f.rowid NOT IN (SELECT id FROM cjk_pending)" if backlog else ""
    if ranked:
        rows = _ranked(db, table, query, limit, unqueued)
        if backlog and len(rows) < limit:
            rows += _unindexed_matches(db, text, limit - len(rows))
    else:
        # The FTS table drives the loop, in rowid order (no sort): see bench/RESULTS.md.
        rows = db.execute(
            f"""
            SELECT m.id, m.content, m.conversation_id, m.role, m.created_at, c.title, 0.0
            FROM {table} AS f
            JOIN messages AS m ON m.id = f.rowid
            JOIN conversations AS c ON c.id = m.conversation_id
            WHERE {table} MATCH ? AND c.deleted_at IS NULL{unqueued}
            ORDER BY f.rowid DESC LIMIT ?
            """,
            (query, limit),
        ).fetchall()
        if backlog:
            # Newer than the oldest of a full page, or they could not make it in.
            floor = rows[-1][0] if len(rows) == limit else 0
            rows += _unindexed_matches(db, text, limit, above=floor)
            rows = sorted(rows, key=lambda row: -row[0])[:limit]
    if len(rows) < limit:
        rows += _attachment_name_matches(db, text, limit - len(rows), {r[0] for r in rows})
    # Snippets are cut here, not by FTS5's snippet(): that re-runs the match per
    # row, ~1 ms each for a common word.
    cjk = table == "messages_cjk"
    tokens, size = (_CJK_TOKEN, 3 * SNIPPET_TOKENS) if cjk else (_TOKEN, SNIPPET_TOKENS)
    words = _query_words(text, tokens)
    return [
        SearchHit(
            cid,
            mid,
            title,
            snippet(content, words, size, tokens=tokens),
            rank,
            cast(Role, role),
            created,
        )
        for mid, content, cid, role, created, title, rank in rows
    ]


def _ranked(db: Database, table: str, query: str, limit: int, unqueued: str = "") -> list[Any]:
    ranked = db.execute(
        f"""
        SELECT hit.rowid, hit.rank FROM (
            SELECT rowid, rank FROM {table} AS f WHERE {table} MATCH ?{unqueued}
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


def _attachment_name_matches(db: Database, text: str, limit: int, seen: set[int]) -> list[Any]:
    """Messages with an attachment whose file name holds ``text`` (issue 13: "the
    screenshot I sent yesterday"), newest first; the name is their snippet. The
    attachments table is small (one row per file shown), so a scan is cheap. The CROSS
    JOIN keeps it the outer loop: ordered by ``m.id``, SQLite walked every message
    instead (50 ms at 100,000 messages on each search with fewer hits than asked, 2x
    that on an encrypted file, whose scan outgrows the page cache; bench/RESULTS.md)."""
    needle = text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if not needle:
        return []
    rows = db.execute(
        """
        SELECT m.id, a.name, m.conversation_id, m.role, m.created_at, c.title, 0.0
        FROM attachments AS a
        CROSS JOIN messages AS m ON m.id = a.message_id
        JOIN conversations AS c ON c.id = m.conversation_id
        WHERE a.name LIKE ? ESCAPE '\\' AND c.deleted_at IS NULL
            AND m.status != 'streaming'
        ORDER BY a.message_id DESC LIMIT ?
        """,
        (f"%{needle}%", limit + len(seen)),
    ).fetchall()
    out, found = [], set(seen)
    for row in rows:
        if row[0] not in found:
            found.add(row[0])
            out.append(row)
    return out[:limit]


def _unindexed_matches(db: Database, text: str, limit: int, *, above: int = 0) -> list[Any]:
    """Up to ``limit`` rows (as ``search`` selects them, newest first, id > ``above``)
    of the messages still queued for the CJK index that the index would match.

    Every CJK character of the query must be in the text (``instr``, in SQLite,
    ~1 µs per message of 300 characters); then each term, as a regex of its tokens
    (``_phrase_pattern``). Words with letters the index folds (café for cafe) are
    compared token by token, folded as the snippets fold them.
    """
    terms = [t for t in text.split() if any(ch.isalnum() for ch in t)]
    last_is_prefix = not _CJK.search(terms[-1][-1])  # as fts_query
    term_tokens = [_fold_tokens(_CJK_TOKEN.findall(t)) for t in terms]
    patterns = [
        _phrase_pattern(tuple(tokens), last_is_prefix and i == len(terms) - 1)
        for i, tokens in enumerate(term_tokens)
    ]
    latin = any(not _CJK.fullmatch(t) for tokens in term_tokens for t in tokens)
    # The same, as a substring of the message's tokens joined by NULs.
    phrases = ["\0" + "\0".join(tokens) + "\0" for tokens in term_tokens]
    if last_is_prefix:
        phrases[-1] = phrases[-1][:-1]
    chars = sorted({ch for t in terms for ch in _CJK.findall(t)})
    contains = "".join(" AND instr(m.content, ?) > 0" for _ in chars)
    cursor = db.execute(
        f"""
        SELECT m.id, m.content, m.conversation_id, m.role, m.created_at, c.title, 0.0
        FROM cjk_pending AS p
        JOIN messages AS m ON m.id = p.id
        JOIN conversations AS c ON c.id = m.conversation_id
        WHERE p.id > ? AND m.status != 'streaming' AND c.deleted_at IS NULL{contains}
        ORDER BY p.id DESC
        """,
        (above, *chars),
    )
    found: list[Any] = []
    for row in cursor:
        lowered = row[1].lower()
        if all(pattern.search(lowered) for pattern in patterns) or (
            latin and _FOLDED.search(lowered) and _has_phrases(row[1], phrases)
        ):
            found.append(row)
            if len(found) == limit:
                break
    cursor.close()
    return found


def _has_phrases(content: str, phrases: list[str]) -> bool:
    tokens = "\0" + "\0".join(_fold_tokens(_CJK_TOKEN.findall(content))) + "\0"
    return all(phrase in tokens for phrase in phrases)


def _fold_tokens(tokens: list[str]) -> list[str]:
    """Tokens folded as the index folds them; CJK characters as they are."""
    return [
        t.lower() if t.isascii() else t if _CJK.fullmatch(t) else "".join(map(_index_fold, t))
        for t in tokens
    ]


@functools.cache
def _index_fold(char: str) -> str:
    """One character as unicode61 remove_diacritics 2 folds it (not ``_fold``: it
    keeps ß and Greek accents, folds ς to σ). Agrees with SQLite 3.40's on all but
    7 of the 1,134 letters and digits of Latin, Greek and Cyrillic."""
    folded = char.casefold()
    lower = folded if len(folded) == 1 else char.lower()
    base = "".join(c for c in unicodedata.normalize("NFD", lower) if not unicodedata.combining(c))
    return base if base.isascii() else lower


# A letter or digit that is neither CJK nor ASCII: folding may change it.
_FOLDED = re.compile(f"[^\\W\\x00-\\x7f{CJK_RANGES}]")
# A letter or digit of a Latin (not CJK) token.
_LATIN = f"[^\\W_{CJK_RANGES}]"


@functools.lru_cache(maxsize=32)
def _phrase_pattern(tokens: tuple[str, ...], prefix: bool) -> re.Pattern[str]:
    """Where a phrase of (folded) tokens is in a lowercased text: CJK characters
    with only separators between, other tokens whole (the last may be a prefix)."""
    parts: list[str] = []
    for i, token in enumerate(tokens):
        cjk = _CJK.fullmatch(token) is not None
        if i > 0:
            both_latin = not cjk and not _CJK.fullmatch(tokens[i - 1])
            parts.append(r"[\W_]+" if both_latin else r"[\W_]*")
        parts.append(re.escape(token))
        if not cjk:
            if i == 0:  # not inside a longer token; checked after the literal, which
                # lets re look for the literal first (3x faster than a lookbehind first)
                parts.append(f"(?<!{_LATIN}.{{{len(token)}}})")
            if not (prefix and i == len(tokens) - 1):
                parts.append(f"(?!{_LATIN})")
    return re.compile("".join(parts))


# unicode61's idea of a token: runs of letters and digits (not underscores).
_TOKEN = re.compile(r"[^\W_]+")
# The same, but each CJK character a token of its own (as in messages_cjk).
_CJK_TOKEN = re.compile(f"[{CJK_RANGES}]|(?:(?![{CJK_RANGES}])[^\\W_])+")
_GAP = re.compile(r"[\W_]")


def _fold(word: str) -> str:
    """Case- and accent-blind, like the index (unicode61 remove_diacritics 2)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _query_words(text: str, pattern: re.Pattern[str] = _TOKEN) -> list[tuple[str, bool]]:
    """The folded tokens of a query, each with whether it matches as a prefix."""
    # CJK characters stay as typed: the index does not fold them either (unicode61
    # removes diacritics from Latin letters only; NFKD would take Hangul apart).
    tokens = [t if _CJK.fullmatch(t) else _fold(t) for t in pattern.findall(text)]
    return [(t, i == len(tokens) - 1) for i, t in enumerate(tokens)]


def snippet(
    content: str,
    words: list[tuple[str, bool]],
    size: int = SNIPPET_TOKENS,
    *,
    tokens: re.Pattern[str] = _TOKEN,
) -> str:
    """About ``size`` tokens of ``content`` around its best match, matches marked.
    ``tokens``: what a token is (``_CJK_TOKEN`` for a CJK query)."""
    lo, hi = _near_first_match(content, words, size)
    cut = _cut(content, lo, hi, words, size, tokens)
    if cut is None:  # the best window ran into the end of the part looked at
        cut = _cut(content, 0, len(content), words, size, tokens)
    return cut or " ".join(content.split())[:80]


def _cut(
    content: str,
    lo: int,
    hi: int,
    words: list[tuple[str, bool]],
    size: int,
    pattern: re.Pattern[str] = _TOKEN,
) -> str | None:
    tokens = list(pattern.finditer(content, lo, hi))
    if not tokens:
        return "" if hi == len(content) else None

    cjk = pattern is _CJK_TOKEN and any(_CJK.fullmatch(w) for w, _ in words)
    hits = _cjk_hits(content, tokens, words) if cjk else _hits(content, tokens, words)
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
    before = start > 0 or pattern.search(content, 0, tokens[0].start()) is not None
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
    if end < len(tokens) or pattern.search(content, tokens[-1].end()) is not None:
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


def _cjk_hits(
    content: str, tokens: list[re.Match[str]], words: list[tuple[str, bool]]
) -> dict[int, str]:
    """``_hits`` for a CJK query: each run of CJK characters in the query is found
    as a string (中文 marks 中文, not every 文: the phrase query matched it so);
    the other words as usual."""
    runs: list[list[str]] = []
    others: list[tuple[str, bool]] = []
    previous = False
    for word, prefix in words:  # consecutive CJK characters of the query form a run
        cjk = _CJK.fullmatch(word) is not None
        if cjk and previous:
            runs[-1].append(word)
        elif cjk:
            runs.append([word])
        else:
            others.append((word, prefix))
        previous = cjk
    index = {t.start(): i for i, t in enumerate(tokens)}
    lo, hi = tokens[0].start(), tokens[-1].end()
    hits = _hits(content, tokens, others) if others else {}
    for run in runs:
        text = "".join(run)
        pos = content.find(text, lo, hi)
        while pos >= 0:
            for k, char in enumerate(run):
                if (i := index.get(pos + k)) is not None:
                    hits[i] = char
            pos = content.find(text, pos + len(text), hi)
    return hits


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
