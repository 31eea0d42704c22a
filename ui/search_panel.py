"""Search across all chats: a box above the sidebar list and its results.

Typing is debounced; the controller runs the (FTS5) query and hands back
``SearchHit``s, shown with the matched words highlighted. Choosing one opens
the conversation at that message.
"""

from __future__ import annotations

import html
import time

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QLineEdit, QListWidget, QListWidgetItem, QWidget

from engine.history.types import SearchHit

DEBOUNCE_MS = 150


class SearchBox(QLineEdit):
    query_changed = Signal(str)  # debounced

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("search_box")
        self.setAccessibleName("Search all chats")
        self.setPlaceholderText("Search all chats (Ctrl+F)")
        self.setClearButtonEnabled(True)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(lambda: self.query_changed.emit(self.text().strip()))
        self.textChanged.connect(lambda _t: self._timer.start())


class SearchResults(QListWidget):
    hit_activated = Signal(int, int, list)  # conversation id, message id, matched words

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("search_results")
        self.setAccessibleName("Search results")
        self.setWordWrap(True)
        self._hits: list[SearchHit] = []
        self.itemActivated.connect(self._on_item)
        self.itemClicked.connect(self._on_item)

    def show_hits(self, hits: list[SearchHit], query: str) -> None:
        self.clear()
        self._hits = list(hits)
        if not hits:
            item = QListWidgetItem(f"No messages contain “{query}”.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.addItem(item)
            return
        for index, hit in enumerate(hits):
            snippet = "".join(
                f"<b><u>{html.escape(text)}</u></b>" if match else html.escape(text)
                for text, match in hit.parts()
            )
            when = (
                time.strftime("%d %b %Y", time.localtime(hit.created_at)) if hit.created_at else ""
            )
            # Found in an attached document: which one, and where in it.
            source = f"<br><small>In {html.escape(hit.source)}:</small>" if hit.source else ""
            label = QLabel(
                f"<b>{html.escape(hit.title)}</b> <small>{when}</small>{source}<br>{snippet}"
            )
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setContentsMargins(4, 3, 4, 3)
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, index)
            where = f" (in {hit.source})" if hit.source else ""
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{hit.title}{where}: {hit.snippet}")
            item.setSizeHint(label.sizeHint())
            self.addItem(item)
            self.setItemWidget(item, label)

    @Slot(QListWidgetItem)
    def _on_item(self, item: QListWidgetItem) -> None:
        index = item.data(Qt.ItemDataRole.UserRole)
        if index is None:
            return
        hit = self._hits[int(index)]
        words = [text for text, match in hit.parts() if match]
        self.hit_activated.emit(hit.conversation_id, hit.message_id, words)
