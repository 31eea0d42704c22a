"""Attaching a document: read it, store its text, chunk and index it in the chat store.

Runs off the GUI thread (a background job with its own store connection) and in
``hearth chat --file``; no Qt. A document already stored with the same content is
never read or indexed again; one whose indexing stopped half way (the app quit) goes
on from its last stored batch, because chunking is deterministic and batches are
committed in order.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.documents.chunking import Chunk, chunk_document
from engine.documents.extract import extract_bytes, read_file
from engine.documents.types import DocKind, DocumentError
from engine.history.doc_index import DocChunk, DocumentStore, StoredDocument
from engine.types import AttachmentPart, DocumentPart

if TYPE_CHECKING:
    from engine.history.store import ChatStore
    from engine.history.turns import ChatSettings, PromptMessages
    from engine.inference.embedding import Embedder

log = logging.getLogger(__name__)

__all__ = ["BATCH", "IngestCancelled", "Ingested", "ingest_bytes", "ingest_file", "preview_prompt"]

# Chunks per transaction: ~25 ms of writing each (bench/documents.py), so a cancel or
# a quit loses at most one batch and the GUI's own writes wait at most that long.
BATCH = 200

_MIME = {
    DocKind.PDF: "application/pdf",
    DocKind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    DocKind.HTML: "text/html",
    DocKind.CSV: "text/csv",
    DocKind.MARKDOWN: "text/markdown",
}

Progress = Callable[[int, int], None]  # chunks stored so far, of how many


@dataclass(frozen=True, slots=True)
class Ingested:
    """A document ready to attach: what its attachment part keeps, and its index."""

    sha256: str
    name: str
    mime: str
    size: int
    text: str  # what the model reads of it whole
    document: StoredDocument
    data: bytes

    @property
    def part(self) -> DocumentPart:
        """The attachment part to send with a message (ChatStore.add_message)."""
        return DocumentPart(
            sha256=self.sha256,
            name=self.name,
            mime=self.mime,
            size=self.size,
            text=self.text,
            data=self.data,
        )


class IngestCancelled(Exception):
    """The person cancelled: what was stored stays, and the next attach goes on from it."""


def ingest_file(
    store: DocumentStore,
    path: Path,
    *,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> Ingested:
    """The file at ``path``, read and indexed. Raises DocumentError with a sentence,
    StoreError, or IngestCancelled."""
    return ingest_bytes(store, path.name, read_file(path), cancel=cancel, progress=progress)


def attach_files(store: DocumentStore, paths: Sequence[Path]) -> tuple[DocumentPart, ...]:
    """``hearth chat --file``: each file read and indexed, as parts for the question.
    Raises DocumentError with the sentence for the first file that cannot be read."""
    return tuple(ingest_file(store, path).part for path in paths)


def index_stored(store: ChatStore, cancel: threading.Event | None = None) -> int:
    """Index every stored document that has no finished index (after an import, or an
    indexing the app quit in the middle of); returns how many. A document that cannot
    be read again is left to be read whole."""
    done = 0
    for sha, name in store.unindexed_documents():
        data = store.attachment_data(sha)
        if data is None:
            continue
        try:
            ingest_bytes(store, name, data, cancel=cancel)
        except IngestCancelled:
            break  # what was stored stays; the next start goes on from it
        except DocumentError as e:
            log.warning("stored document %s was not indexed: %s", name, e)
            continue
        done += 1
    return done


def ingest_bytes(
    store: DocumentStore,
    name: str,
    data: bytes,
    *,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> Ingested:
    sha = hashlib.sha256(data).hexdigest()
    stored = store.document_by_hash(sha)
    doc = extract_bytes(name, data)
    mime = _MIME.get(doc.kind) or mimetypes.guess_type(name)[0] or "text/plain"
    if stored is not None and stored.complete:
        return Ingested(sha, name, mime, len(data), doc.text, stored, data)
    if stored is None:
        stored = store.add_document(
            sha, kind=doc.kind.value, tokens=doc.tokens, pages=doc.pages, lines=doc.lines
        )
    chunks = chunk_document(doc)
    for start in range(stored.indexed, len(chunks), BATCH):
        if cancel is not None and cancel.is_set():
            raise IngestCancelled
        store.add_chunks(stored.id, [_row(c) for c in chunks[start : start + BATCH]])
        if progress is not None:
            progress(min(start + BATCH, len(chunks)), len(chunks))
    store.finish_document(stored.id, len(chunks))
    done = store.document(stored.id)
    assert done is not None
    return Ingested(sha, name, mime, len(data), doc.text, done, data)


def _row(c: Chunk) -> DocChunk:
    return DocChunk(
        c.index, c.text, c.heading, c.page, c.page_end, c.line_start, c.line_end, c.tokens
    )


# Chunks per embedding call: one llama.cpp batch of ~300-token chunks in a 512 context
# each; progress and cancel are checked between calls.
EMBED_BATCH = 16


def embed_document(
    store: DocumentStore,
    embedder: Embedder,
    doc_id: int,
    *,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> int:
    """Give every chunk of a document a vector from ``embedder`` (those it has already
    are skipped, so a stopped run goes on); returns how many were made."""
    total = len(store.chunks(doc_id))
    made = 0
    while batch := store.unembedded(doc_id, embedder.name, EMBED_BATCH):
        if cancel is not None and cancel.is_set():
            raise IngestCancelled
        texts = [
            f"{h.chunk.heading}\n{h.chunk.text}" if h.chunk.heading else h.chunk.text for h in batch
        ]
        vectors = embedder.embed(texts)
        store.add_vectors(embedder.name, {h.id: v for h, v in zip(batch, vectors, strict=True)})
        made += len(batch)
        if progress is not None:
            progress(total - len(store.unembedded(doc_id, embedder.name, total)), total)
    return made


def vector_ranking(
    store: DocumentStore, embedder: Embedder
) -> Callable[[Sequence[int], str], Sequence[int]]:
    """What documents_prompt fuses with BM25: chunk ids by similarity to a query."""

    def rank(doc_ids: Sequence[int], query: str) -> Sequence[int]:
        # Asked while a reply is being prepared: never wait for a document's indexing.
        vector = embedder.embed_now(query)
        return [] if vector is None else store.rank_by_vector(doc_ids, embedder.name, vector)

    return rank


def preview_prompt(
    store: ChatStore,
    conv_id: int | None,
    question: str,
    settings: ChatSettings,
    files: Sequence[Path],
    *,
    n_ctx: int,
) -> PromptMessages:
    """``hearth chat --show-prompt --file``: what the model would read for ``question``
    with ``files`` attached after the chat ``conv_id`` (None: a new chat), whole or by
    passages as a real turn decides it, without writing to the chats: the chat so far
    and the files are read into a scratch store in memory (never a file, so nothing of
    an encrypted history lands on disk in the clear). Raises DocumentError."""
    from engine.history.store import ChatStore
    from engine.history.turns import prompt_with_documents

    with ChatStore(Path(":memory:")) as scratch:
        chat = scratch.create_conversation("preview")
        for m in store.messages(conv_id) if conv_id is not None else []:
            parts: list[AttachmentPart] = []
            for part in m.attachments:
                data = store.attachment_data(part.sha256) or b""
                if isinstance(part, DocumentPart):
                    parts.append(ingest_bytes(scratch, part.name, data).part)
                else:
                    parts.append(replace(part, data=data))
            scratch.add_message(
                chat.id, m.role, m.content, m.status, thinking=m.thinking, attachments=parts
            )
        attached = tuple(ingest_file(scratch, path).part for path in files)
        scratch.add_message(chat.id, "user", question, attachments=attached)
        return prompt_with_documents(scratch, scratch.messages(chat.id), settings, n_ctx=n_ctx)
