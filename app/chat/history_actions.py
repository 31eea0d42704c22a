"""The sidebar's history actions: search, pin, undo a delete, export, import.

GUI thread, like the store, except export and import: they read the file and
write the store through a connection of their own on a thread of their own
(``run_in_background``), and come back here to show the result. They know
nothing of the reply in progress, and reach the open chat through a two-method
``Navigator`` (the ConversationController).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Slot

from app.background import BackgroundOp, Report, run_in_background
from app.notifier import Notifier
from engine.errors import KnownError
from engine.history.store import ChatStore
from ui.main_window import MainWindow


class Navigator(Protocol):
    def open_conversation(self, conv_id: int) -> None: ...
    def refresh_conversation(self, conv_id: int) -> None: ...


class HistoryActions(QObject):
    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        navigator: Navigator,
        notifier: Notifier,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.window = window
        self.store = store
        self.navigator = navigator
        self.notifier = notifier
        # Export and import run on threads of their own; one of each at a time.
        self._export: BackgroundOp[Any] | None = None
        self._import: BackgroundOp[Any] | None = None
        window.search_requested.connect(self._on_search_requested)
        window.search_results.hit_activated.connect(self._on_hit_activated)
        window.pin_requested.connect(self._on_pin_requested)
        window.undo_delete_requested.connect(self._on_undo_delete)
        window.export_requested.connect(self._on_export_requested)
        window.import_requested.connect(self._on_import_requested)

    @Slot(str)
    def _on_search_requested(self, query: str) -> None:
        with self.notifier.guard():
            self.window.search_results.show_hits(self.store.search(query, limit=50), query)

    @Slot(int, int, list)
    def _on_hit_activated(self, conv_id: int, msg_id: int, words: list[str]) -> None:
        # The hit may be in another version of a turn: that version is shown.
        with self.notifier.guard():
            self.store.select_variant(msg_id)
        self.navigator.open_conversation(conv_id)
        self.window.chat_view.jump_to(msg_id, words)

    @Slot(int, bool)
    def _on_pin_requested(self, conv_id: int, pinned: bool) -> None:
        with self.notifier.guard():
            self.store.set_pinned(conv_id, pinned)
        self.navigator.refresh_conversation(conv_id)

    @Slot(int)
    def _on_undo_delete(self, conv_id: int) -> None:
        with self.notifier.guard():
            conv = self.store.undo_delete(conv_id)
            if conv is not None:
                self.window.conversations.upsert(conv)
                self.notifier.info(f"Restored “{conv.title}”.")

    @Slot(object, str, str)
    def _on_export_requested(self, conv_id: int | None, fmt: str, path: str) -> None:
        if self._export is not None:  # until its result is back here
            self.notifier.error(
                f"Hearth is still {self._export.what[0].lower()}{self._export.what[1:]}. "
                "Wait until it is done, then export again."
            )
            return
        db_path, target = self.store.path, Path(path)
        ids = None if conv_id is None else [conv_id]

        def export(_report: Report, _cancel: threading.Event) -> None:
            # A connection of its own: the store's belongs to this (the GUI) thread.
            from engine.history.export import json_chunks, markdown_chunks, write_export

            with ChatStore.second(db_path, read_only=True) as reader, reader.snapshot():
                chunks = markdown_chunks(reader, ids) if fmt == "md" else json_chunks(reader, ids)
                write_export(target, chunks)

        def done(_: None) -> None:
            self._export = None
            if self.store.encrypted:  # issue 17: the copy does not keep the encryption
                self.notifier.info(
                    f"Exported to {path}. That file is not encrypted: keep it somewhere "
                    "safe, or delete it when you are done with it.",
                    10_000,
                )
                return
            self.notifier.info(f"Exported to {path}.", 5000)

        def failed(sentence: str) -> None:
            self._export = None
            self.notifier.clear_info()
            self.notifier.error(sentence)

        self.notifier.info(f"Exporting to {path}…", 0)
        self._export = run_in_background(export, done, failed, what=f"Exporting to {path}")

    @Slot(str)
    def _on_import_requested(self, path: str) -> None:
        if self._import is not None:
            self.notifier.error(
                "An import is already under way. Wait until it is done, then import again."
            )
            return
        db_path, source = self.store.path, Path(path)

        def import_(_report: Report, cancel: threading.Event) -> list[int]:
            # Read, check and write on a connection of its own (SQLite has one writer
            # at a time: the GUI's writes wait for this transaction, a moment).
            from engine.history.export import import_json

            try:
                data = source.read_bytes()
            except OSError as exc:
                raise KnownError(f"Hearth could not read {path} ({exc.strerror}).") from exc
            from app.doc_ingest import index_stored

            with ChatStore.second(db_path) as writer:
                ids = import_json(writer, data)
                index_stored(writer, cancel)  # their documents, so long ones go by passages
                return ids

        def done(ids: list[int]) -> None:
            self._import = None
            for conv_id in ids:
                self.navigator.refresh_conversation(conv_id)
            n = len(ids)
            self.notifier.info(f"Imported {n} conversation{'' if n == 1 else 's'}.", 5000)

        def failed(sentence: str) -> None:
            self._import = None
            self.notifier.clear_info()
            self.notifier.error(sentence)

        self.notifier.info(f"Importing {path}…", 0)
        self._import = run_in_background(import_, done, failed, what=f"Importing {path}")
