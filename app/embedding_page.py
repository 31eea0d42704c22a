"""The optional embedding model: offered on the Model page (and by a document chip's
"Get it"), downloaded through the model manager's one verified, resumable download,
used as soon as it is there (no restart), deleted from the same page.

GUI thread. The download is the manager's (``ModelManager.start_download``, without a
switch: an embedding model is never the chat's model); its progress shows in the Model
page's bar and the window's download strip like any download. When it ends well the
document controller loads the model on its own llama.cpp context and gives the
documents already stored their vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Slot

from app.chat.documents import DocumentController
from app.model_manager import ModelManager
from app.notifier import Notifier
from engine.errors import CatalogError, KnownError
from engine.models.catalog import CatalogEntry, installed_path
from engine.models.embedding_models import embedding_entries
from engine.models.library import delete_model, partial_download_bytes
from engine.models.types import DownloadOutcome
from engine.units import format_bytes
from ui.embedding_section import EmbeddingRow, EmbeddingSection, add_to_page
from ui.settings_dialog import SettingsDialog

__all__ = ["EmbeddingModels"]

log = logging.getLogger(__name__)

INTRO = (
    "Attached documents too long to read whole are searched for the passages that answer "
    "each question. Without an embedding model Hearth finds them by their words; with "
    "one, also by meaning (a passage that says it in other words). It runs on this "
    "computer, beside the chat model."
)


class EmbeddingModels(QObject):
    def __init__(
        self,
        manager: ModelManager,
        documents: DocumentController,
        notifier: Notifier,
        entries: Callable[[], list[CatalogEntry]] = embedding_entries,
    ) -> None:
        super().__init__()
        self.manager, self.documents, self.notifier = manager, documents, notifier
        self._entries = entries
        self.section: EmbeddingSection | None = None
        self._started: CatalogEntry | None = None  # the embedding download under way
        manager.download_ended.connect(self._on_download_ended)
        manager.progressed.connect(self._refresh)
        manager.changed.connect(self._refresh)
        documents.embedding_wanted.connect(self.get_recommended)

    @property
    def models_dir(self) -> Path:
        return self.manager.models_dir

    def entries(self) -> list[CatalogEntry]:
        try:
            return self._entries()
        except CatalogError as exc:
            log.warning("%s", exc.message)
            return []

    # --- the Model page -------------------------------------------------------------------
    def attach(self, dialog: SettingsDialog) -> None:
        """A new Settings window: the section goes at the end of its Model page."""
        section = EmbeddingSection()
        if not add_to_page(dialog, "model", section):
            section.deleteLater()
            return
        section.download_requested.connect(self._on_download_requested)
        section.delete_requested.connect(self._on_delete_requested)
        section.destroyed.connect(self._on_section_gone)
        self.section = section
        self._refresh()

    @Slot()
    def _on_section_gone(self) -> None:
        self.section = None

    def rows(self) -> list[EmbeddingRow]:
        in_use = self.documents.embedder.name if self.documents.embedder is not None else ""
        downloading = self.manager.downloading
        out = []
        for entry in self.entries():
            path = installed_path(entry, self.models_dir)
            kept = partial_download_bytes(self.models_dir, entry.filename)
            if downloading is not None and downloading.id == entry.id:
                state = "Downloading…"
            elif path is not None:
                state = "In use" if path.name == in_use else "Downloaded"
            elif kept:
                state = f"Paused ({format_bytes(kept)} kept)"
            else:
                state = "Not downloaded"
            size = ("about " if entry.size_estimated else "") + format_bytes(entry.size)
            note = entry.quality.note if entry.quality else ""
            out.append(
                EmbeddingRow(
                    id=entry.id,
                    name=f"{entry.name} ({entry.license})",
                    size=size,
                    state=state,
                    note=note,
                    installed=path is not None,
                    downloading=state == "Downloading…",
                )
            )
        return out

    @Slot()
    @Slot(object, str)
    def _refresh(self, *_args: object) -> None:
        if self.section is not None:
            self.section.set_rows(INTRO, self.rows())

    # --- download ------------------------------------------------------------------------
    @Slot()
    def get_recommended(self) -> None:
        """A chip's "Get it": the first (recommended) model, unless one is there."""
        entries = self.entries()
        if not entries:
            self.notifier.error("Hearth's catalog lists no embedding model: reinstall Hearth.")
            return
        if any(installed_path(e, self.models_dir) for e in entries):
            self.documents.load_embedder(self._on_ready)  # there already: use it
            return
        self.download(entries[0])

    @Slot(str)
    def _on_download_requested(self, entry_id: str) -> None:
        entry = next((e for e in self.entries() if e.id == entry_id), None)
        if entry is not None:
            self.download(entry)

    def download(self, entry: CatalogEntry) -> None:
        self.manager.start_download(entry, switch_to=None)
        now = self.manager.downloading
        if now is not None and now.id == entry.id:  # started (or already under way)
            self._started = entry
        self._refresh()

    @Slot(str)
    def _on_download_ended(self, outcome: str) -> None:
        entry, self._started = self._started, None
        if entry is not None and outcome == DownloadOutcome.DONE:
            log.info("embedding model %s downloaded: loading it", entry.filename)
            self.documents.load_embedder(self._on_ready)
        self._refresh()

    def _on_ready(self, name: str) -> None:
        self.notifier.info(
            f"The embedding model {name} is in use: documents are now searched by meaning "
            "as well as by their words."
        )
        self._refresh()

    # --- delete --------------------------------------------------------------------------
    @Slot(str)
    def _on_delete_requested(self, entry_id: str) -> None:
        entry = next((e for e in self.entries() if e.id == entry_id), None)
        path = installed_path(entry, self.models_dir) if entry is not None else None
        if entry is None or path is None:
            return
        question = (
            f"Delete {entry.name} ({format_bytes(entry.size)}) from {self.models_dir}? "
            "Documents are then searched by their words only. You can download it again later."
        )
        if not self.manager.ask("Delete the embedding model?", question, "Delete"):
            return
        embedder = self.documents.embedder
        if embedder is not None and embedder.name == path.name:
            self.documents.release_embedder(lambda: self._delete(entry, path))
        else:
            self._delete(entry, path)

    def _delete(self, entry: CatalogEntry, path: Path) -> None:
        try:
            delete_model(path, self.models_dir)
        except KnownError as exc:
            self.notifier.error(exc.message)
            return
        log.info("deleted the embedding model %s", path)
        self.notifier.info(f"Deleted {entry.name}. Documents are searched by their words now.")
        self.documents.load_embedder(self._on_ready)  # another one, if there is one
        self._refresh()
