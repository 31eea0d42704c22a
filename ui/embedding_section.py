"""The Model page's "Embedding model for documents" section: the catalog's embedding
models with their size and state, and Download / Delete.

Optional models: without one, attached documents are searched by their words (BM25);
with one, by meaning too. The download itself shows in the Model page's own progress
bar (the same verified, resumable download as a chat model); this section says which
model it is and what it adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.theme import mute

__all__ = ["EmbeddingRow", "EmbeddingSection", "add_to_page"]


@dataclass(frozen=True, slots=True)
class EmbeddingRow:
    id: str
    name: str
    size: str  # "about 21 MB"
    state: str  # "In use", "Downloaded", "Not downloaded", "Downloading…", "8 MB kept"
    note: str = ""
    installed: bool = False
    downloading: bool = False


class EmbeddingSection(QGroupBox):
    download_requested = Signal(str)  # catalog id
    delete_requested = Signal(str)  # catalog id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Embedding model for documents (optional)", parent)
        self.setObjectName("embedding_section")
        self.intro = QLabel("")
        self.intro.setObjectName("embedding_intro")
        self.intro.setWordWrap(True)
        mute(self.intro)
        self.list = QTreeWidget()
        self.list.setObjectName("embedding_list")
        self.list.setAccessibleName("Embedding models")
        self.list.setHeaderLabels(["Model", "Size", "State"])
        self.list.setRootIsDecorated(False)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.list.setMaximumHeight(88)
        self.list.currentItemChanged.connect(self._update_buttons)
        self.list.itemActivated.connect(lambda *_: self._on_download())
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("embedding_download_button")
        self.download_button.setAccessibleName("Download the selected embedding model")
        self.download_button.clicked.connect(self._on_download)
        self.delete_button = QPushButton("Delete file…")
        self.delete_button.setObjectName("embedding_delete_button")
        self.delete_button.setAccessibleName("Delete the selected embedding model")
        self.delete_button.clicked.connect(self._on_delete)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.download_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self._rows: list[EmbeddingRow] = []

    def set_rows(self, intro: str, rows: list[EmbeddingRow]) -> None:
        current = self.selected()
        self.intro.setText(intro)
        self._rows = rows
        self.list.clear()
        for row in rows:
            item = QTreeWidgetItem([row.name, row.size, row.state])
            item.setData(0, Qt.ItemDataRole.UserRole, row.id)
            if row.note:
                for column in range(3):
                    item.setToolTip(column, row.note)
            self.list.addTopLevelItem(item)
            if row.id == (current.id if current else rows[0].id):
                self.list.setCurrentItem(item)
        for column in (1, 2):
            self.list.resizeColumnToContents(column)
        self._update_buttons()

    def selected(self) -> EmbeddingRow | None:
        item = self.list.currentItem()
        if item is None:
            return None
        wanted = item.data(0, Qt.ItemDataRole.UserRole)
        return next((r for r in self._rows if r.id == wanted), None)

    @Slot()
    def _update_buttons(self, *_args: object) -> None:
        row = self.selected()
        busy = any(r.downloading for r in self._rows)
        self.download_button.setEnabled(row is not None and not row.installed and not busy)
        self.delete_button.setEnabled(row is not None and row.installed)
        if row is not None and not row.installed and not row.downloading:
            self.download_button.setText(f"Download ({row.size})")
        else:
            self.download_button.setText("Download")

    @Slot()
    def _on_download(self) -> None:
        row = self.selected()
        if row is not None and not row.installed and not row.downloading:
            self.download_requested.emit(row.id)

    @Slot()
    def _on_delete(self) -> None:
        row = self.selected()
        if row is not None and row.installed:
            self.delete_requested.emit(row.id)


def add_to_page(stack_owner: QWidget, page_id: str, widget: QWidget) -> bool:
    """Put ``widget`` at the end of a Settings page's content (before its stretch),
    without the dialog knowing: the pages are named ``page:<id>``."""
    page = stack_owner.findChild(QWidget, f"page:{page_id}")
    layout = page.layout() if page is not None else None
    if not isinstance(layout, QVBoxLayout):
        return False
    layout.insertWidget(max(layout.count() - 1, 0), widget)  # the last item is the stretch
    return True
