"""The sidebar's history actions: search, pin, undo a delete, export, import.

GUI thread, like the store. They only read and write the store and show the
result; they know nothing of the reply in progress, and reach the open chat
through a two-method ``Navigator`` (the ConversationController).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, Slot

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
        from engine.history.export import json_chunks, markdown_chunks, write_export

        ids = None if conv_id is None else [conv_id]
        with self.notifier.guard() as g:
            chunks = (
                markdown_chunks(self.store, ids) if fmt == "md" else json_chunks(self.store, ids)
            )
            write_export(Path(path), chunks)
        if not g.failed:
            self.notifier.info(f"Exported to {path}.", 5000)

    @Slot(str)
    def _on_import_requested(self, path: str) -> None:
        from engine.history.export import import_json

        try:
            ids = import_json(self.store, Path(path).read_bytes())
        except OSError as exc:
            self.notifier.error(f"Hearth could not read {path} ({exc.strerror}).")
            return
        except KnownError as exc:
            self.notifier.known(exc)
            return
        for conv_id in ids:
            self.navigator.refresh_conversation(conv_id)
        n = len(ids)
        self.notifier.info(f"Imported {n} conversation{'' if n == 1 else 's'}.", 5000)
