"""The retrieval index of attached documents in the chat database: chunks, BM25 search,
vectors, and which passages each reply was given.

The chunks are made by engine.documents (this domain does not read files); they arrive
here as plain rows. The index is kept once per content (the file's SHA-256, as its
attachment names it): attaching the same file again, in any chat, reuses it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from engine.history.db import StoreDatabase

__all__ = ["ChunkHit", "DocChunk", "DocumentStore", "StoredDocument", "fts_query"]


@dataclass(frozen=True, slots=True)
class StoredDocument:
    id: int
    sha256: str
    kind: str  # engine.documents.DocKind's value
    pages: int | None
    lines: int | None
    tokens: int  # the estimate of its whole text
    chunk_count: int | None  # None until indexing finished
    indexed: int  # chunks stored so far

    @property
    def complete(self) -> bool:
        return self.chunk_count is not None and self.indexed >= self.chunk_count


@dataclass(frozen=True, slots=True)
class DocChunk:
    """A passage of a document as stored (engine.documents.Chunk's fields)."""

    index: int
    text: str
    heading: str = ""
    page: int | None = None
    page_end: int | None = None
    line_start: int | None = None
    line_end: int | None = None
    tokens: int = 0

    @property
    def location(self) -> str:
        """Where it is, for a citation: "page 3", "pages 3–4", "lines 10–24", "line 7"."""
        if self.page is not None:
            end = self.page_end
            return f"pages {self.page}–{end}" if end and end != self.page else f"page {self.page}"
        if self.line_start is None:
            return ""
        if self.line_end is None or self.line_end == self.line_start:
            return f"line {self.line_start}"
        return f"lines {self.line_start}–{self.line_end}"


@dataclass(frozen=True, slots=True)
class ChunkHit:
    id: int  # the chunk's row id (what citations keep)
    document_id: int
    chunk: DocChunk
    rank: float = 0.0  # bm25: lower is better


_DOC_COLS = (
    "d.id, d.sha256, d.kind, d.pages, d.lines, d.tokens, d.chunk_count,"
    " (SELECT count(*) FROM doc_chunks c WHERE c.document_id = d.id)"
)
_CHUNK_COLS = "c.id, c.document_id, c.idx, c.text, c.heading, c.page, c.page_end, c.line_start,"
_CHUNK_COLS += " c.line_end, c.tokens"


def _document(row: Any) -> StoredDocument:
    return StoredDocument(*row)


def _hit(row: Any, rank: float = 0.0) -> ChunkHit:
    cid, doc_id, idx, text, heading, page, page_end, start, end, tokens = row[:10]
    return ChunkHit(
        cid, doc_id, DocChunk(idx, text, heading, page, page_end, start, end, tokens), rank
    )


_WORD = re.compile(r"\w+", re.UNICODE)
# Words that carry no topic: with OR semantics they would rank every passage.
_STOPWORDS = """a an and are as at be been but by can could did do does doing for from had has
    have how i if in into is it its me my no not of on or our please so than that the
    their them then there these they this those to us was we were what when where which
    who whom why will with would you your about tell say said doc document file
    explain show give summarise summarize"""
STOPWORDS = frozenset(_STOPWORDS.split())


def fts_query(text: str) -> str:
    """An FTS5 query matching any of the words of ``text`` (stopwords left out), each
    quoted, so no text is read as FTS5 syntax; "" when no word is left."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in STOPWORDS and word not in words and (len(word) > 1 or word.isdigit()):
            words.append(word)
    return " OR ".join(f'"{w}"' for w in words[:64])


def _chunk_row(c: DocChunk) -> tuple[object, ...]:
    return (c.index, c.heading, c.text, c.page, c.page_end, c.line_start, c.line_end, c.tokens)


class DocumentStore(StoreDatabase):
    """The documents half of the chat store (ChatStore inherits it)."""

    def document_by_hash(self, sha256: str) -> StoredDocument | None:
        rows = self._rows(f"SELECT {_DOC_COLS} FROM documents d WHERE d.sha256 = ?", (sha256,))
        return _document(rows[0]) if rows else None

    def unindexed_documents(self) -> list[tuple[str, str]]:
        """(sha256, name) of attached documents whose index is missing or unfinished:
        imported from a file, or cut short when the app quit while indexing."""
        rows = self._rows(
            "SELECT a.sha256, min(a.name) FROM attachments a WHERE a.kind = 'document'"
            " AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.sha256 = a.sha256"
            " AND d.chunk_count IS NOT NULL) GROUP BY a.sha256"
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def document(self, doc_id: int) -> StoredDocument | None:
        rows = self._rows(f"SELECT {_DOC_COLS} FROM documents d WHERE d.id = ?", (doc_id,))
        return _document(rows[0]) if rows else None

    def add_document(
        self,
        sha256: str,
        *,
        kind: str,
        tokens: int,
        pages: int | None = None,
        lines: int | None = None,
    ) -> StoredDocument:
        """Start a document's index (its chunks come next); the one already started for
        this content if there is one."""
        with self._writing():
            self._db.execute(
                "INSERT INTO documents (sha256, kind, pages, lines, tokens, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                (sha256, kind, pages, lines, tokens, self._clock()),
            )
        stored = self.document_by_hash(sha256)
        assert stored is not None
        return stored

    def add_chunks(self, doc_id: int, chunks: Sequence[DocChunk]) -> None:
        """Store a batch of chunks in one transaction; a chunk stored already (the same
        index, from an indexing that stopped half way) is left as it is."""
        with self._writing():
            self._db.executemany(
                "INSERT INTO doc_chunks (document_id, idx, heading, text, page, page_end,"
                " line_start, line_end, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (document_id, idx) DO NOTHING",
                [
                    (
                        doc_id,
                        c.index,
                        c.heading,
                        c.text,
                        c.page,
                        c.page_end,
                        c.line_start,
                        c.line_end,
                        c.tokens,
                    )
                    for c in chunks
                ],
            )

    def finish_document(self, doc_id: int, chunk_count: int) -> None:
        with self._writing():
            self._db.execute(
                "UPDATE documents SET chunk_count = ? WHERE id = ?", (chunk_count, doc_id)
            )

    def document_ids(self) -> list[int]:
        """The documents whose index is finished, the newest first (what an embedding
        model downloaded later gives vectors to: the chats in use first)."""
        rows = self._rows("SELECT id FROM documents WHERE chunk_count IS NOT NULL ORDER BY id DESC")
        return [int(r[0]) for r in rows]

    def prune_documents(self, older_than_s: float = 86_400.0) -> int:
        """Remove the indexes of documents no message holds, made at least
        ``older_than_s`` ago: attached in the composer and never sent (a day's grace
        keeps one the person is about to send). Returns how many."""
        with self._writing():
            cur = self._db.execute(
                "DELETE FROM documents WHERE created_at <= ? AND NOT EXISTS"
                " (SELECT 1 FROM attachments a WHERE a.sha256 = documents.sha256)",
                (self._clock() - older_than_s,),
            )
        return cur.rowcount

    def delete_document(self, doc_id: int) -> None:
        """The document, its chunks, their index entries, vectors and citations."""
        with self._writing():
            self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))

    def chunks(self, doc_id: int, indices: Iterable[int] | None = None) -> list[ChunkHit]:
        """A document's chunks in order (``indices``: only those)."""
        sql = f"SELECT {_CHUNK_COLS} FROM doc_chunks c WHERE c.document_id = ?"
        params: list[object] = [doc_id]
        if indices is not None:
            wanted = list(indices)
            sql += f" AND c.idx IN ({','.join('?' * len(wanted))})"
            params += wanted
        return [_hit(r) for r in self._rows(sql + " ORDER BY c.idx", params)]

    def chunk(self, chunk_id: int) -> ChunkHit | None:
        rows = self._rows(f"SELECT {_CHUNK_COLS} FROM doc_chunks c WHERE c.id = ?", (chunk_id,))
        return _hit(rows[0]) if rows else None

    def search_chunks(self, doc_ids: Sequence[int], query: str, limit: int = 20) -> list[ChunkHit]:
        """The chunks of ``doc_ids`` that best match any word of ``query``, best first
        (BM25; a heading's words count twice a body's)."""
        match = fts_query(query)
        if not match or not doc_ids:
            return []
        marks = ",".join("?" * len(doc_ids))
        try:
            rows = self._db.execute(
                f"SELECT {_CHUNK_COLS}, bm25(doc_chunks_fts, 2.0, 1.0) AS rank"
                " FROM doc_chunks_fts JOIN doc_chunks c ON c.id = doc_chunks_fts.rowid"
                f" WHERE doc_chunks_fts MATCH ? AND c.document_id IN ({marks})"
                " ORDER BY rank LIMIT ?",
                (match, *doc_ids, limit),
            ).fetchall()
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as e:
            raise self._failure("search the documents of", e) from e
        return [_hit(r, float(r[10])) for r in rows]

    # -- vectors (an embedding model's) ---------------------------------------------

    def add_vectors(self, model: str, vectors: Mapping[int, bytes]) -> None:
        with self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO doc_vectors (chunk_id, model, vector) VALUES (?, ?, ?)",
                [(cid, model, v) for cid, v in vectors.items()],
            )

    def unembedded(self, doc_id: int, model: str, limit: int = 64) -> list[ChunkHit]:
        """Chunks of a document that have no vector from ``model`` yet, in order."""
        rows = self._rows(
            f"SELECT {_CHUNK_COLS} FROM doc_chunks c WHERE c.document_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM doc_vectors v WHERE v.chunk_id = c.id AND v.model = ?)"
            " ORDER BY c.idx LIMIT ?",
            (doc_id, model, limit),
        )
        return [_hit(r) for r in rows]

    def rank_by_vector(
        self, doc_ids: Sequence[int], model: str, query: bytes, limit: int = 40
    ) -> list[int]:
        """Chunk ids of ``doc_ids`` by cosine similarity to ``query`` (unit vectors, so
        a dot product), best first; only chunks ``model`` has embedded."""
        import numpy as np  # here: only a chat with an embedding model needs it

        stored = self.vectors(doc_ids, model)
        if not stored:
            return []
        ids = list(stored)
        matrix = np.frombuffer(b"".join(stored.values()), dtype=np.float32)
        q = np.frombuffer(query, dtype=np.float32)
        if matrix.size != len(ids) * q.size:
            return []  # vectors of another size: a different model under the same name
        scores = matrix.reshape(len(ids), q.size) @ q
        best = np.argsort(-scores)[:limit]
        return [ids[int(i)] for i in best]

    def vectors(self, doc_ids: Sequence[int], model: str) -> dict[int, bytes]:
        """The chunks' vectors by chunk id (those embedded so far)."""
        marks = ",".join("?" * len(doc_ids))
        rows = self._rows(
            "SELECT v.chunk_id, v.vector FROM doc_vectors v JOIN doc_chunks c"
            f" ON c.id = v.chunk_id WHERE v.model = ? AND c.document_id IN ({marks})",
            (model, *doc_ids),
        )
        return {int(r[0]): cast(bytes, r[1]) for r in rows}

    # -- citations ------------------------------------------------------------------

    def set_citations(self, message_id: int, chunk_ids: Sequence[int]) -> None:
        """The passages reply ``message_id`` was given: chunk_ids[0] is [1], and so on."""
        with self._writing():
            self._db.execute("DELETE FROM doc_citations WHERE message_id = ?", (message_id,))
            self._db.executemany(
                "INSERT INTO doc_citations (message_id, number, sha256, chunk_idx)"
                " SELECT ?, ?, d.sha256, c.idx FROM doc_chunks c"
                " JOIN documents d ON d.id = c.document_id WHERE c.id = ?",
                [(message_id, n, cid) for n, cid in enumerate(chunk_ids, 1)],
            )

    def citation_refs(self, message_ids: Sequence[int]) -> dict[int, list[tuple[int, str, int]]]:
        """(number, sha256, chunk index) of each reply's passages: what an export keeps."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        out: dict[int, list[tuple[int, str, int]]] = {}
        for mid, number, sha, idx in self._rows(
            "SELECT message_id, number, sha256, chunk_idx FROM doc_citations"
            f" WHERE message_id IN ({marks}) ORDER BY message_id, number",
            tuple(message_ids),
        ):
            out.setdefault(int(mid), []).append((int(number), str(sha), int(idx)))
        return out

    def add_citation_refs(self, refs: Mapping[int, Sequence[tuple[int, str, int]]]) -> None:
        """Store citations as ``citation_refs`` gave them (an import), by message id."""
        with self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO doc_citations (message_id, number, sha256, chunk_idx)"
                " VALUES (?, ?, ?, ?)",
                [(mid, n, sha, idx) for mid, rows in refs.items() for n, sha, idx in rows],
            )

    def citations(self, message_id: int) -> dict[int, ChunkHit]:
        """The passages a reply was given, by the number it cites them with (those whose
        document is still indexed)."""
        rows = self._rows(
            f"SELECT {_CHUNK_COLS}, k.number FROM doc_citations k"
            " JOIN documents d ON d.sha256 = k.sha256"
            " JOIN doc_chunks c ON c.document_id = d.id AND c.idx = k.chunk_idx"
            " WHERE k.message_id = ? ORDER BY k.number",
            (message_id,),
        )
        return {int(r[10]): _hit(r) for r in rows}

    def sources(self, message_ids: Sequence[int]) -> dict[int, tuple[tuple[int, str], ...]]:
        """For each reply that was given passages: (number, "report.pdf, page 4"), in
        order, the name as the document was attached."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = self._rows(
            "SELECT k.message_id, k.number, c.idx, c.text, c.heading, c.page, c.page_end,"
            " c.line_start, c.line_end, c.tokens,"
            " (SELECT a.name FROM attachments a WHERE a.sha256 = d.sha256 LIMIT 1)"
            " FROM doc_citations k JOIN documents d ON d.sha256 = k.sha256"
            " JOIN doc_chunks c ON c.document_id = d.id AND c.idx = k.chunk_idx"
            f" WHERE k.message_id IN ({marks}) ORDER BY k.message_id, k.number",
            tuple(message_ids),
        )
        out: dict[int, list[tuple[int, str]]] = {}
        for mid, number, idx, text, heading, page, page_end, start, end, tokens, name in rows:
            chunk = DocChunk(idx, text, heading, page, page_end, start, end, tokens)
            label = ", ".join(p for p in (name or "document", chunk.location) if p)
            out.setdefault(int(mid), []).append((int(number), label))
        return {mid: tuple(labels) for mid, labels in out.items()}
