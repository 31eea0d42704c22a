"""The sidebar's history actions: search, pin, undo a delete, export, import.

GUI thread, like the store. Kept apart from ChatController, which owns the
reply in progress; these only read and write the store and refresh the list.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot

from engine.errors import KnownError

if TYPE_CHECKING:
    from app.controller import ChatController


class HistoryActions(QObject):
    def __init__(self, chat: ChatController) -> None:
        super().__init__(chat)
        self.chat = chat
        window = chat.window
        window.search_requested.connect(self._on_search_requested)
        window.search_results.hit_activated.connect(self._on_hit_activated)
        window.pin_requested.connect(self._on_pin_requested)
        window.undo_delete_requested.connect(self._on_undo_delete)
        window.export_requested.connect(self._on_export_requested)
        window.import_requested.connect(self._on_import_requested)

    @Slot(str)
    def _on_search_requested(self, query: str) -> None:
        try:
            hits = self.chat.store.search(query, limit=50)
        except KnownError as exc:
            self.chat.window.show_error(exc.message)
            return
        self.chat.window.search_results.show_hits(hits, query)

    @Slot(int, int, list)
    def _on_hit_activated(self, conv_id: int, msg_id: int, words: list[str]) -> None:
        self.chat.store.select_variant(msg_id)  # the hit may be in another version of a turn
        self.chat.open_conversation(conv_id)
        self.chat.window.chat_view.jump_to(msg_id, words)

    @Slot(int, bool)
    def _on_pin_requested(self, conv_id: int, pinned: bool) -> None:
        self.chat.store.set_pinned(conv_id, pinned)
        self.chat.refresh_conversation(conv_id)

    @Slot(int)
    def _on_undo_delete(self, conv_id: int) -> None:
        conv = self.chat.store.undo_delete(conv_id)
        if conv is not None:
            self.chat.window.conversations.upsert(conv)
            self.chat.window.statusBar().showMessage(f"Restored “{conv.title}”.", 4000)

    @Slot(object, str, str)
    def _on_export_requested(self, conv_id: int | None, fmt: str, path: str) -> None:
        from engine.history.export import json_chunks, markdown_chunks, write_export

        ids = None if conv_id is None else [conv_id]
        chunks = (
            markdown_chunks(self.chat.store, ids)
            if fmt == "md"
            else json_chunks(self.chat.store, ids)
        )
        try:
            write_export(Path(path), chunks)
        except KnownError as exc:
            self.chat.window.show_error(exc.message)
            return
        self.chat.window.statusBar().showMessage(f"Exported to {path}.", 5000)

    @Slot(str)
    def _on_import_requested(self, path: str) -> None:
        from engine.history.export import import_json

        try:
            ids = import_json(self.chat.store, Path(path).read_bytes())
        except OSError as exc:
            self.chat.window.show_error(f"Hearth could not read {path} ({exc.strerror}).")
            return
        except KnownError as exc:
            self.chat.window.show_error(exc.message)
            return
        for conv_id in ids:
            self.chat.refresh_conversation(conv_id)
        n = len(ids)
        text = f"Imported {n} conversation{'' if n == 1 else 's'}."
        self.chat.window.statusBar().showMessage(text, 5000)
