"""Documents in the window: the files attached to the next message (read and indexed in
the background, a chip each), how each sent document is read, and the passages a reply
cites (opened from its [n]).

The reading runs on a thread of its own with a second store connection (app.doc_ingest):
the window never waits for a 1,000-page PDF. Send waits for the chips: a question is
never sent without a document the person attached.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QUrl, Signal, Slot
from PySide6.QtGui import QCursor, QDesktopServices
from PySide6.QtWidgets import QMenu

from app.background import BackgroundOp, Report, run_in_background
from app.doc_ingest import (
    IngestCancelled,
    Ingested,
    embed_document,
    index_stored,
    ingest_file,
    vector_ranking,
)
from app.engine_client import EngineClient
from app.notifier import Notifier
from engine.errors import KnownError
from engine.history.doc_prompt import (
    RETRIEVE_SHARE,
    WHOLE_SHARE,
    VectorRanking,
    attached_documents,
    estimate_tokens,
    plan_modes,
)
from engine.history.store import ChatStore
from engine.history.turns import ChatSettings
from engine.history.types import DocMode, StoredMessage
from engine.inference.embedding import EmbedderClosed
from engine.models.embedding_models import (
    WHAT_EMBEDDINGS_ADD,
    installed_embedding,
    query_prefix,
)
from engine.types import DocumentPart
from engine.units import format_bytes
from ui.document_chip import DocumentChip, DocumentChipInfo, mode_label
from ui.main_window import MainWindow
from ui.passage_dialog import PassageDialog

if TYPE_CHECKING:
    from engine.inference.embedding import Embedder

__all__ = ["DocumentController"]

log = logging.getLogger(__name__)

_MODE_NAMES = {
    DocMode.AUTO: "Automatic (whole when it fits, else passages)",
    DocMode.WHOLE: "Read whole",
    DocMode.RETRIEVE: "Only the passages that answer each question",
}


@dataclass(eq=False)
class _Pending:
    path: Path
    chip: DocumentChip
    job: BackgroundOp[Ingested] | None = None
    done: Ingested | None = None
    mode: DocMode = DocMode.AUTO
    failed: bool = False


class DocumentController(QObject):
    # The person changed how a chat's document is read (chat id): measure it again.
    modes_changed = Signal(int)
    # A chip's "Get it": download the recommended embedding model (app/embedding_page.py).
    embedding_wanted = Signal()
    # The documents of the next message changed (read, removed, mode): the meter counts them.
    pending_changed = Signal()

    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        engine: EngineClient,
        notifier: Notifier,
        current_chat: Callable[[], int | None],
    ) -> None:
        super().__init__()
        self.window, self.store, self.engine, self.notifier = window, store, engine, notifier
        self._current_chat = current_chat
        self._pending: list[_Pending] = []
        self._indexing: BackgroundOp[int] | None = None
        self._closed = False
        self.embedder: Embedder | None = None  # an embedding model, when one is installed
        self._embedder_job: BackgroundOp[Embedder | None] | None = None
        self._embedding: BackgroundOp[int] | None = None  # stored documents' vectors
        window.attachments.files_chosen.connect(self._on_files)
        window.files_dropped.connect(self._on_files)
        window.composer.files_pasted.connect(self._on_files)
        window.chat_view.citation_requested.connect(self._on_citation_requested)
        window.chat_view.document_requested.connect(self._on_document_requested)

    def load_embedder(self, on_ready: Callable[[str], None] | None = None) -> None:
        """In the background: the catalog's embedding model, if one is in the models
        folder (documents are then found by meaning too, not only by their words).
        Called at start and again after one is downloaded (no restart); then the
        documents already stored get their vectors too, and ``on_ready`` hears its name."""
        models_dir = self.engine.models_dir

        def op(_report: Report, _cancel: threading.Event) -> Embedder | None:
            from engine.inference.embedding import Embedder  # loads llama.cpp when used

            found = installed_embedding(models_dir)
            if found is None:
                return None
            return Embedder(found, query_prefix=query_prefix(found))

        def done(embedder: Embedder | None) -> None:
            if self._closed:
                if embedder is not None:
                    embedder.close()
                return
            old, self.embedder = self.embedder, embedder
            if old is not None and old is not embedder:
                old.close()
            if embedder is not None:
                for pending in self._pending:  # "Get it" is done
                    pending.chip.withdraw_embedding_offer()
                self._embed_stored(embedder)
                if on_ready is not None:
                    on_ready(embedder.name)

        self._embedder_job = run_in_background(
            op, done, self.notifier.error, what="Loading the embedding model"
        )

    def release_embedder(self, then: Callable[[], None]) -> None:
        """Stop using the embedding model (it is about to be deleted): words only from
        now on. It is closed off the GUI thread (a batch being embedded finishes first,
        seconds on a slow CPU), then ``then`` runs."""
        embedder, self.embedder = self.embedder, None
        if self._embedding is not None:
            self._embedding.cancel()  # its next batch finds the model closed
        if embedder is None:
            then()
            return

        def close(_report: Report, _cancel: threading.Event) -> None:
            embedder.close()

        run_in_background(
            close, lambda _none: then(), self.notifier.error, what="Closing the embedding model"
        )

    def _embed_stored(self, embedder: Embedder) -> None:
        """In the background: vectors for the chunks of the documents stored before the
        model was there (a stopped run goes on where it was)."""
        db_path = self.store.path

        def op(_report: Report, cancel: threading.Event) -> int:
            with ChatStore.second(db_path) as store:
                return sum(
                    embed_document(store, embedder, doc_id, cancel=cancel)
                    for doc_id in store.document_ids()
                )

        self._embedding = run_in_background(
            op, lambda n: log.info("embedded %d stored passages", n),
            lambda sentence: log.warning("%s", sentence),
            what="Embedding stored documents", on_cancelled=lambda: None,
            cancelled_by=(IngestCancelled, EmbedderClosed),
        )  # fmt: skip

    def vector_ranking(self) -> VectorRanking | None:
        """Chunk ids by meaning, for the turn model (None: words only, BM25)."""
        return vector_ranking(self.store, self.embedder) if self.embedder else None

    def index_missing(self) -> None:
        """In the background: index the stored documents that have no finished index
        (the app quit while indexing one; an import from before this version)."""
        db_path = self.store.path

        def op(_report: Report, cancel: threading.Event) -> int:
            with ChatStore.second(db_path) as store:
                store.prune_documents()  # indexes of files attached and never sent
                return index_stored(store, cancel)

        self._indexing = run_in_background(
            op, lambda n: None, lambda sentence: log.warning("%s", sentence),
            what="Indexing stored documents",
        )  # fmt: skip

    def shutdown(self) -> None:
        """Stop reading and indexing (what was stored stays, and goes on at the next
        start) and wait for the threads, before the store closes."""
        self._closed = True  # a result still queued for the GUI thread is dropped
        jobs: list[BackgroundOp[Any]] = [p.job for p in self._pending if p.job is not None]
        jobs += [j for j in (self._indexing, self._embedder_job, self._embedding) if j]
        for job in jobs:
            job.cancel()
        for job in jobs:
            job.join()
        if self.embedder is not None:
            self.embedder.close()
            self.embedder = None

    # --- the next message's documents ---------------------------------------------------
    @Slot(list)
    def _on_files(self, paths: list[str]) -> None:
        self.attach(paths)

    def attach(self, paths: list[str]) -> None:
        for raw in paths:
            path = Path(raw)
            try:
                size = path.stat().st_size
            except OSError:
                size = 0  # ingest_file says what is wrong with it
            chip = DocumentChip(DocumentChipInfo(path.name, size, 0))
            pending = _Pending(path, chip)
            self._pending.append(pending)
            self.window.attachments.add_chip(chip)
            chip.set_progress(0, 0)
            chip.remove_requested.connect(lambda p=pending: self._remove(p))
            chip.cancel_requested.connect(lambda p=pending: self._remove(p))
            chip.mode_requested.connect(lambda mode, p=pending: self._set_mode(p, mode))
            self._read(pending)

    def _read(self, pending: _Pending) -> None:
        db_path = self.store.path

        embedder = self.embedder

        def op(report: Report, cancel: threading.Event) -> Ingested:
            store = ChatStore.second(db_path)  # this thread's own connection
            try:
                done = ingest_file(store, pending.path, cancel=cancel, progress=report)
                # Vectors too, on the embedder's own context; deleted meanwhile
                # (EmbedderClosed): the document is read, and found by its words only.
                with contextlib.suppress(EmbedderClosed):
                    if embedder is not None:
                        embed_document(
                            store, embedder, done.document.id, cancel=cancel, progress=report
                        )
                return done
            finally:
                store.close()

        pending.job = run_in_background(
            op,
            lambda done: self._on_read(pending, done),
            lambda sentence: self._on_failed(pending, sentence),
            what=f"Reading {pending.path.name}",
            progress=pending.chip.set_progress,
            on_cancelled=lambda: None,
            cancelled_by=(IngestCancelled,),
        )

    def _on_read(self, pending: _Pending, done: Ingested) -> None:
        if self._closed or pending not in self._pending:  # removed, or the app quit
            return
        pending.job, pending.done = None, done
        doc = done.document
        info = DocumentChipInfo(
            done.name, done.size, doc.tokens, doc.pages, pending.mode, self._read_as(doc.tokens)
        )
        pending.chip.set_info(info)
        pending.chip.set_ready()
        if info.read_as is DocMode.RETRIEVE and self.embedder is None:
            pending.chip.offer_embedding(WHAT_EMBEDDINGS_ADD)
            pending.chip.embedding_requested.connect(self.embedding_wanted)
        self.pending_changed.emit()

    def _on_failed(self, pending: _Pending, sentence: str) -> None:
        if self._closed or pending not in self._pending:
            return
        pending.job, pending.failed = None, True
        pending.chip.set_error(sentence)

    def _read_as(self, tokens: int) -> DocMode:
        """What AUTO will make of a document of ``tokens`` in the open chat, by the
        model's context (the model's own tokenizer measures the turn at Send)."""
        info = self.engine.model_info
        if info is None:
            return DocMode.WHOLE
        chat = sum(estimate_tokens(m.content) for m in self._current_messages())
        room = WHOLE_SHARE * max(info.n_ctx - chat, 0)
        room -= sum(p.done.document.tokens for p in self._pending if p.done is not None)
        room += tokens  # (counted just above when it is ready)
        return DocMode.WHOLE if tokens <= room else DocMode.RETRIEVE

    def _current_messages(self) -> list[StoredMessage]:
        conv_id = self._current_chat()
        try:
            return [] if conv_id is None else self.store.messages(conv_id)
        except KnownError:
            return []

    def _remove(self, pending: _Pending) -> None:
        if pending.job is not None:
            pending.job.cancel()  # what it stored stays: attaching it again goes on from there
        if pending in self._pending:
            self._pending.remove(pending)
        self.window.attachments.remove_chip(pending.chip)
        self.pending_changed.emit()

    def _set_mode(self, pending: _Pending, mode: DocMode) -> None:
        pending.mode = mode
        pending.chip.set_info(replace(pending.chip.info, mode=mode))
        self.pending_changed.emit()

    def pending_tokens(self) -> int:
        """About what the documents of the next message will cost the context, as the
        turn will read them: whole ones all their tokens, those read by passages (pinned,
        or too long for Automatic) at most the passages' share of what is left."""
        info = self.engine.model_info
        whole = passages = 0
        for p in self._pending:
            if p.done is None:
                continue
            tokens = p.done.document.tokens
            mode = p.mode if p.mode is not DocMode.AUTO else self._read_as(tokens)
            if mode is DocMode.WHOLE:
                whole += tokens
            else:
                passages += tokens
        if passages and info is not None:
            chat = sum(estimate_tokens(m.content) for m in self._current_messages())
            passages = min(passages, int(RETRIEVE_SHARE * max(info.n_ctx - chat - whole, 0)))
        return whole + passages

    def waiting_sentence(self) -> str:
        """ "" when the attached documents are ready to send; else what to wait for."""
        reading = [p.path.name for p in self._pending if p.job is not None]
        if reading:
            return (
                f"{', '.join(reading)} is still being read: send when its chip shows its "
                "pages, or remove it to send without it."
            )
        return ""

    def parts(self) -> tuple[DocumentPart, ...]:
        """The documents to send with the next message (those that could be read)."""
        return tuple(p.done.part for p in self._pending if p.done is not None)

    def sent(self, conv_id: int) -> None:
        """The message went with the documents: keep each pinned mode with the chat, and
        empty the composer's row."""
        modes = {p.done.sha256: p.mode for p in self._pending if p.done is not None}
        pinned = {sha: m for sha, m in modes.items() if m is not DocMode.AUTO}
        if pinned:
            self._save_modes(conv_id, pinned)
        for pending in list(self._pending):
            if pending.job is None:
                self._pending.remove(pending)
                self.window.attachments.remove_chip(pending.chip)
        self.pending_changed.emit()

    def _save_modes(self, conv_id: int, modes: Mapping[str, DocMode]) -> None:
        with self.notifier.guard():
            settings = ChatSettings.from_json(self.store.conversation_settings(conv_id))
            merged = {**settings.document_modes, **modes}
            self.store.set_conversation_settings(
                conv_id, settings.with_(document_modes=merged).to_json()
            )

    # --- sent documents and citations ---------------------------------------------------
    def sources(
        self, messages: list[StoredMessage]
    ) -> tuple[dict[int, tuple[tuple[int, str], ...]], dict[str, str]]:
        """What the chat view shows: each reply's passages, and each document's line."""
        replies = [m.id for m in messages if m.role == "assistant"]
        sources = self.store.sources(replies)
        modes = self._modes(messages[0].conversation_id) if messages else {}
        info = self.engine.model_info
        read_as: dict[str, DocMode] = {}
        if info is not None:  # what AUTO makes of each with the loaded model's window
            attached = attached_documents(self.store, messages, modes)
            chat = sum(estimate_tokens(m.content) for m in messages)
            read_as = plan_modes(attached, info.n_ctx - chat)
        details: dict[str, str] = {}
        for m in messages:
            for part in m.attachments:
                if isinstance(part, DocumentPart) and part.sha256 not in details:
                    index = self.store.document_by_hash(part.sha256)
                    size = (
                        f"{index.pages} pages" if index and index.pages else format_bytes(part.size)
                    )
                    tokens = index.tokens if index else estimate_tokens(part.text)
                    mode = modes.get(part.sha256, DocMode.AUTO)
                    auto = read_as.get(part.sha256)
                    chip = DocumentChipInfo(part.name, part.size, tokens, mode=mode, read_as=auto)
                    details[part.sha256] = f"{size} · ~{tokens:,} tokens · {mode_label(chip)}"
        return sources, details

    def _modes(self, conv_id: int) -> dict[str, DocMode]:
        try:
            return dict(
                ChatSettings.from_json(self.store.conversation_settings(conv_id)).document_modes
            )
        except KnownError:
            return {}

    @Slot(int, str)
    def _on_document_requested(self, msg_id: int, sha: str) -> None:
        """A document's line in a question: how it is read, or open it."""
        msg = self.store.message(msg_id)
        if msg is None:
            return
        part = next((a for a in msg.attachments if a.sha256 == sha), None)
        if not isinstance(part, DocumentPart):
            return
        current = self._modes(msg.conversation_id).get(sha, DocMode.AUTO)
        menu = QMenu(self.window)
        for mode, text in _MODE_NAMES.items():
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(mode is current)
            action.triggered.connect(
                lambda _=False, m=mode: self._change_mode(msg.conversation_id, sha, m)
            )
        menu.addSeparator()
        menu.addAction(f"Open {part.name}", lambda: self._open(part))
        menu.popup(QCursor.pos())

    def _change_mode(self, conv_id: int, sha: str, mode: DocMode) -> None:
        self._save_modes(conv_id, {sha: mode})
        name = next(
            (
                a.name
                for m in self.store.messages(conv_id)
                for a in m.attachments
                if a.sha256 == sha
            ),
            "The document",
        )
        said = {
            DocMode.AUTO: "whole when it fits, else by passages",
            DocMode.WHOLE: "whole",
            DocMode.RETRIEVE: "by the passages that answer each question",
        }[mode]
        self.notifier.info(f"{name} is now read {said}, from the next reply on.")
        self.modes_changed.emit(conv_id)

    def _open(self, part: DocumentPart) -> None:
        """The original file, written to a temporary folder and opened by the system."""
        data = self.store.attachment_data(part.sha256)
        if data is None:
            self.notifier.error(f"{part.name} is no longer stored: attach it again.")
            return
        try:
            folder = Path(tempfile.mkdtemp(prefix="hearth-doc-"))
            path = folder / (Path(part.name).name or "document")
            path.write_bytes(data)
        except OSError as e:
            self.notifier.error(
                f"Could not write {part.name} to open it ({e.strerror or e}): free some disk "
                "space and try again."
            )
            return
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    @Slot(int, int)
    def _on_citation_requested(self, reply_id: int, number: int) -> None:
        with self.notifier.guard():
            hit = self.store.citations(reply_id).get(number)
            if hit is None:
                self.notifier.info("That passage is no longer stored (its document was removed).")
                return
            doc = self.store.document(hit.document_id)
            name, part = "document", None
            if doc is not None:
                for m in self.store.messages(self.store.message(reply_id).conversation_id):  # type: ignore[union-attr]
                    for a in m.attachments:
                        if isinstance(a, DocumentPart) and a.sha256 == doc.sha256:
                            name, part = a.name, a
            c = hit.chunk
            dialog = PassageDialog(
                number,
                name,
                c.location,
                c.heading,
                c.text,
                can_open=part is not None,
                parent=self.window,
            )
            if part is not None:
                dialog.open_button.clicked.connect(lambda: self._open(part))
            dialog.setModal(False)
            dialog.show()
