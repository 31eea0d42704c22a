"""The row above the message box: the attach button and a chip for each file that goes
with the next message. Files come from the button, a drop on the window, or a paste."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Signal
from PySide6.QtWidgets import QToolButton, QVBoxLayout, QWidget

__all__ = ["DOCUMENT_FILTER", "AttachmentBar", "local_files"]

DOCUMENT_PATTERNS = (
    "*.pdf *.docx *.txt *.md *.markdown *.html *.htm *.csv *.tsv *.json *.yaml *.yml *.toml "
    "*.ini *.cfg *.xml *.log *.py *.js *.ts *.c *.h *.cpp *.rs *.go *.java *.sh *.sql"
)
DOCUMENT_FILTER = f"Documents ({DOCUMENT_PATTERNS});;All files (*)"


def local_files(mime: QMimeData) -> list[str]:
    """The local files a drop or a paste carries (a file manager's copy: text/uri-list)."""
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


DOCUMENTS_TIP = (
    "Attach documents (PDF, Word, text, code…) to the next message; you can also "
    "drop files on the window or paste them"
)
FILES_TIP = (
    "Attach images or documents (PDF, Word, text, code…) to the next message; you can "
    "also drop files on the window or paste them"
)


class AttachmentBar(QWidget):
    """``attach_button`` sits beside the message box; the chips stack above it."""

    files_chosen = Signal(list)  # paths (str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("attachment_bar")
        self.attach_button = QToolButton()
        self.attach_button.setObjectName("attach_button")
        self.attach_button.setText("+")
        self.attach_button.setToolTip(DOCUMENTS_TIP)
        self.attach_button.setAccessibleName("Attach files")
        # The window opens the one file dialog (images and documents: MainWindow.choose_files)
        self._chips = QVBoxLayout(self)
        self._chips.setContentsMargins(0, 0, 0, 4)
        self._chips.setSpacing(4)
        self.hide()

    def add_chip(self, chip: QWidget) -> None:
        self._chips.addWidget(chip)
        self.show()

    def remove_chip(self, chip: QWidget) -> None:
        self._chips.removeWidget(chip)
        chip.hide()
        chip.deleteLater()
        self.setVisible(self._chips.count() > 0)

    def chips(self) -> list[QWidget]:
        items = (self._chips.itemAt(i) for i in range(self._chips.count()))
        return [w for item in items if item is not None and (w := item.widget()) is not None]
