"""A document as a chip: in the composer before sending and above a question after.

It shows the file's name, its pages (or size), what it costs the context, and how it
is read (whole, or by passages), with a menu to change that. While Hearth indexes a
long document the chip shows progress and a Cancel; a document that could not be read
shows the sentence that says why, and can be removed.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.history.types import DocMode
from engine.units import format_bytes

__all__ = ["DocumentChip", "DocumentChipInfo", "chip_detail", "mode_label"]


@dataclass(frozen=True, slots=True)
class DocumentChipInfo:
    name: str
    size: int  # bytes of the file
    tokens: int  # the estimate of its whole text
    pages: int | None = None
    mode: DocMode = DocMode.AUTO  # the person's choice
    read_as: DocMode | None = None  # what AUTO decided (WHOLE or RETRIEVE), when known


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k tokens" if n >= 1000 else f"{n} tokens"


def chip_detail(info: DocumentChipInfo) -> str:
    """ "12 pages · 4.3k tokens" or "38 kB · 900 tokens"."""
    size = f"{info.pages} page{'s' if info.pages != 1 else ''}" if info.pages else ""
    return f"{size or format_bytes(info.size)} · {_tokens(info.tokens)}"


_MODE_TEXT = {
    DocMode.AUTO: "Automatic",
    DocMode.WHOLE: "Read whole",
    DocMode.RETRIEVE: "Passages",
}


def mode_label(info: DocumentChipInfo) -> str:
    """How the chip names the mode: "Read whole", "Passages", "Auto: whole"."""
    if info.mode is DocMode.AUTO and info.read_as is not None:
        return "Auto: whole" if info.read_as is DocMode.WHOLE else "Auto: passages"
    return _MODE_TEXT[info.mode]


class DocumentChip(QFrame):
    """One attached document. ``removable``: in the composer (an × to take it off)."""

    remove_requested = Signal()
    mode_requested = Signal(object)  # DocMode
    cancel_requested = Signal()
    embedding_requested = Signal()  # "Get it": the embedding model that finds by meaning

    def __init__(
        self, info: DocumentChipInfo, *, removable: bool = True, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("document_chip")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._info = info
        icon = QLabel()
        # The style's own file icon: an emoji needs a colour-emoji font, not on every system.
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon).pixmap(20, 20))
        icon.setAccessibleName("Document")
        self._name = QLabel()
        self._name.setTextFormat(Qt.TextFormat.PlainText)
        self._detail = QLabel()
        self._detail.setTextFormat(Qt.TextFormat.PlainText)
        # The theme's muted colour (a disabled label is too faint on a light theme).
        self._detail.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        text = QVBoxLayout()
        text.setSpacing(0)
        text.addWidget(self._name)
        text.addWidget(self._detail)
        self._progress = QProgressBar()
        self._progress.setMaximumHeight(6)
        self._progress.setTextVisible(False)
        self._progress.hide()
        text.addWidget(self._progress)
        self._mode = QToolButton()
        self._mode.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self._mode.setToolTip(
            "How the model reads this document: whole when it fits in the context, or only "
            "the passages that answer each question"
        )
        self._mode.setAccessibleName("How the document is read")
        menu = QMenu(self._mode)
        group = QActionGroup(menu)
        self._mode_actions: dict[DocMode, QAction] = {}
        tips = {
            DocMode.AUTO: "Automatic: whole when it fits, else passages",
            DocMode.WHOLE: "Read whole: the model reads all of it (for summaries, counting)",
            DocMode.RETRIEVE: "Passages: only the parts that answer each question",
        }
        for mode, tip in tips.items():
            action = QAction(tip, menu, checkable=True)
            action.setData(mode.value)
            group.addAction(action)
            menu.addAction(action)
            self._mode_actions[mode] = action
        group.triggered.connect(self._on_mode_chosen)
        self._mode.setMenu(menu)
        self._cancel = QToolButton()
        self._cancel.setText("Cancel")
        self._cancel.hide()
        self._cancel.clicked.connect(self.cancel_requested)
        # Read by passages with no embedding model: what one would add, and "Get it".
        self._get_embedding = QToolButton()
        self._get_embedding.setObjectName("get_embedding_button")
        self._get_embedding.setText("Get it")
        self._get_embedding.setAccessibleName("Download the embedding model")
        self._get_embedding.setAutoRaise(True)
        self._get_embedding.hide()
        self._get_embedding.clicked.connect(self.embedding_requested)
        self._embedding_note = QLabel("Find passages by meaning too?")
        self._embedding_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)  # muted
        self._embedding_note.hide()
        self._remove = QToolButton()
        self._remove.setText("×")
        self._remove.setToolTip("Remove this document from the message")
        self._remove.setAccessibleName(f"Remove {info.name}")
        self._remove.setAutoRaise(True)
        self._remove.clicked.connect(self.remove_requested)
        self._remove.setVisible(removable)
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 3, 3, 3)
        row.setSpacing(6)
        row.addWidget(icon)
        row.addLayout(text, 1)
        row.addWidget(self._mode)
        row.addWidget(self._embedding_note)
        row.addWidget(self._get_embedding)
        row.addWidget(self._cancel)
        row.addWidget(self._remove)
        self.set_info(info)

    @property
    def info(self) -> DocumentChipInfo:
        return self._info

    def set_info(self, info: DocumentChipInfo) -> None:
        self._info = info
        self._name.setText(info.name)
        self._name.setToolTip(info.name)
        self._detail.setText(chip_detail(info))
        self._mode.setText(mode_label(info))
        self._mode_actions[info.mode].setChecked(True)
        self._mode.show()
        self._detail.setForegroundRole(QPalette.ColorRole.PlaceholderText)

    def offer_embedding(self, sentence: str) -> None:
        """Say (on hover) what an embedding model would add, with "Get it" beside."""
        self.setToolTip(sentence)
        self._get_embedding.setToolTip(sentence)
        self._embedding_note.setToolTip(sentence)
        self._embedding_note.show()
        self._get_embedding.show()

    def withdraw_embedding_offer(self) -> None:
        self.setToolTip("")
        self._embedding_note.hide()
        self._get_embedding.hide()

    def set_progress(self, done: int, total: int) -> None:
        """Indexing: ``done`` of ``total`` passages stored (total 0: reading the file)."""
        self._progress.setRange(0, max(total, 0))
        self._progress.setValue(done)
        self._progress.show()
        self._cancel.show()
        self._mode.hide()
        self._detail.setText("Reading…" if total == 0 else f"Indexing {done} of {total} passages")

    def set_ready(self) -> None:
        self._progress.hide()
        self._cancel.hide()
        self.set_info(self._info)

    def set_error(self, sentence: str) -> None:
        """The file could not be read: the sentence says why; only remove is left."""
        self._progress.hide()
        self._cancel.hide()
        self._mode.hide()
        self._detail.setForegroundRole(QPalette.ColorRole.WindowText)
        self._detail.setText(sentence)
        self._detail.setWordWrap(True)
        self._remove.show()

    @Slot(QAction)
    def _on_mode_chosen(self, action: QAction) -> None:
        mode = DocMode(action.data())  # Qt hands the StrEnum back as its str
        if mode is not self._info.mode:
            self.mode_requested.emit(mode)
