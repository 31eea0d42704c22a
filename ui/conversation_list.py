"""The sidebar's list of conversations, newest first."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    Qt,
    Signal,
)
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QMenu, QWidget

from engine.history.types import Conversation

Index = QModelIndex | QPersistentModelIndex
ID_ROLE = Qt.ItemDataRole.UserRole + 1


def _key(conv: Conversation) -> tuple[bool, float, int]:
    return (conv.pinned, conv.updated_at, conv.id)


def _position(rows: list[Conversation], key: tuple[bool, float, int]) -> int:
    """Where a conversation with this sort key goes: pinned first, then newest first."""
    row = 0
    while row < len(rows) and _key(rows[row]) > key:
        row += 1
    return row


def _when(ts: float) -> str:
    return time.strftime("%d %b %Y, %H:%M", time.localtime(ts))


class ConversationListModel(QAbstractListModel):
    """Rows are engine Conversation records; edits become ``rename_requested``."""

    rename_requested = Signal(int, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Conversation] = []
        self._more: Callable[[int], list[Conversation]] | None = None
        # True while the model itself changes rows: Qt then moves the view's
        # current index, which is not the person choosing another chat.
        self.updating = False

    # --- Qt model API -------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        conv = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return ("📌 " if conv.pinned else "") + conv.title
        if role == Qt.ItemDataRole.EditRole:
            return conv.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{conv.title}\nLast message: {_when(conv.updated_at)}"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return conv.title
        if role == ID_ROLE:
            return conv.id
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsEditable if index.isValid() else base

    def setData(self, index: Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        title = str(value).strip()
        conv = self._rows[index.row()]
        if not title or title == conv.title:
            return False
        self.rename_requested.emit(conv.id, title)
        return True

    # --- updates from the controller ----------------------------------------
    def set_conversations(
        self, rows: list[Conversation], more: Callable[[int], list[Conversation]] | None = None
    ) -> None:
        """Show ``rows``; ``more(offset)`` fetches the next page when the person
        scrolls to the end (so 10,000 chats open as fast as 200)."""
        with self._updating():
            self.beginResetModel()
            self._rows = list(rows)
            self._more = more
            self.endResetModel()

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return self._more is not None and not parent.isValid()

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if self._more is None or parent.isValid():
            return
        known = {conv.id for conv in self._rows}
        page = [conv for conv in self._more(len(self._rows)) if conv.id not in known]
        if not page:
            self._more = None
            return
        with self._updating():
            self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows) + len(page) - 1)
            self._rows.extend(page)
            self.endInsertRows()

    def upsert(self, conv: Conversation) -> None:
        """Insert or update one conversation, keeping newest-first order.

        An existing row is updated in place and moved (not removed and
        re-inserted), so a selection on it stays on it."""
        key = _key(conv)
        with self._updating():
            old = self.row_of(conv.id)
            if old is None:
                row = _position(self._rows, key)
                self.beginInsertRows(QModelIndex(), row, row)
                self._rows.insert(row, conv)
                self.endInsertRows()
                return
            self._rows[old] = conv
            self.dataChanged.emit(self.index(old), self.index(old))
            others = self._rows[:old] + self._rows[old + 1 :]
            new = _position(others, key)
            if new != old:
                # Qt's destination is the row it lands before, in the old numbering.
                self.beginMoveRows(QModelIndex(), old, old, QModelIndex(), new + (new > old))
                self._rows = [*others[:new], conv, *others[new:]]
                self.endMoveRows()

    def remove(self, conv_id: int) -> None:
        row = self.row_of(conv_id)
        if row is not None:
            with self._updating():
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()

    @contextmanager
    def _updating(self) -> Iterator[None]:
        self.updating = True
        try:
            yield
        finally:
            self.updating = False

    def row_of(self, conv_id: int) -> int | None:
        for row, conv in enumerate(self._rows):
            if conv.id == conv_id:
                return row
        return None

    def conversation_at(self, row: int) -> Conversation:
        return self._rows[row]


class ConversationList(QListView):
    """Selecting a row opens it; F2 renames; Delete asks, then deletes."""

    conversation_activated = Signal(int)
    delete_requested = Signal(int)
    pin_requested = Signal(int, bool)
    export_requested = Signal(int, str)  # conversation id, "md" or "json"

    def __init__(self, model: ConversationListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conversation_list")
        self.setAccessibleName("Conversations")
        self.setModel(model)
        self.setUniformItemSizes(True)  # lets Qt lay out only what is visible
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)  # long titles end in "…"
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._on_context_menu)
        self.selectionModel().currentChanged.connect(self._on_current_changed)

    def _model(self) -> ConversationListModel:
        model = self.model()
        assert isinstance(model, ConversationListModel)
        return model

    def select_conversation(self, conv_id: int | None) -> None:
        model = self._model()
        row = None if conv_id is None else model.row_of(conv_id)
        blocker = self.selectionModel().blockSignals(True)
        if row is None:
            self.clearSelection()
            self.setCurrentIndex(QModelIndex())
        else:
            self.setCurrentIndex(model.index(row))
        self.selectionModel().blockSignals(blocker)

    def current_id(self) -> int | None:
        index = self.currentIndex()
        return index.data(ID_ROLE) if index.isValid() else None

    def rename_current(self) -> None:
        if self.currentIndex().isValid():
            self.edit(self.currentIndex())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Delete and self.currentIndex().isValid():
            self.delete_requested.emit(self.currentIndex().data(ID_ROLE))
            return
        super().keyPressEvent(event)

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid() and not self._model().updating:
            self.conversation_activated.emit(current.data(ID_ROLE))

    def _on_context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        self.setCurrentIndex(index)
        conv = self._model().conversation_at(index.row())
        menu = QMenu(self)
        rename = menu.addAction("Rename")
        pin = menu.addAction("Unpin" if conv.pinned else "Pin to top")
        markdown = menu.addAction("Export as Markdown…")
        as_json = menu.addAction("Export as JSON…")
        menu.addSeparator()
        delete = menu.addAction("Delete…")
        chosen = menu.exec(self.viewport().mapToGlobal(pos))
        if chosen is rename:
            self.edit(index)
        elif chosen is pin:
            self.pin_requested.emit(conv.id, not conv.pinned)
        elif chosen in (markdown, as_json):
            self.export_requested.emit(conv.id, "md" if chosen is markdown else "json")
        elif chosen is delete:
            self.delete_requested.emit(conv.id)
