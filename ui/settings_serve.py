"""Settings → Other programs: what the local API is doing and how a program reaches it.

The switch, the port and "Require the API key" are ordinary settings (the form above
this section, from engine.settings.Serve); this section shows the state line (where it
listens, requests answered, or why it is off), the key with Copy and New key, and a
few lines a person can paste into a program.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class ServeSection(QWidget):
    new_key_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("serve_section")
        self.status = QLabel("")
        self.status.setObjectName("serve_status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.key = QLineEdit()
        self.key.setObjectName("serve_key")
        self.key.setReadOnly(True)
        self.key.setAccessibleName("API key for other programs")
        self.copy_key = QPushButton("Copy")
        self.copy_key.setObjectName("serve_copy_key")
        self.copy_key.setAccessibleName("Copy the API key")
        self.copy_key.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.key.text()))
        self.new_key = QPushButton("New key")
        self.new_key.setObjectName("serve_new_key")
        self.new_key.setToolTip("Make a new key; programs using the old one must be given it")
        self.new_key.clicked.connect(self.new_key_requested)
        key_row = QHBoxLayout()
        self.key_label = QLabel("API key")
        key_row.addWidget(self.key_label)
        key_row.addWidget(self.key, 1)
        key_row.addWidget(self.copy_key)
        key_row.addWidget(self.new_key)
        self.usage = QPlainTextEdit()
        self.usage.setObjectName("serve_usage")
        self.usage.setReadOnly(True)
        self.usage.setAccessibleName("How a program uses the API")
        self.usage.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.usage.setMaximumHeight(130)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.addWidget(self.status)
        layout.addLayout(key_row)
        layout.addWidget(self.usage)
        self.set_key(None)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def set_key(self, key: str | None, *, shown: bool = True) -> None:
        """The key to show; None: none is required (the row is hidden). ``shown``
        False: a key exists but is shown only once, when it is made."""
        self.key.setText(key or "" if shown else "")
        self.key.setPlaceholderText(
            "" if shown else "Shown once, when it was made. Lost it? Press New key."
        )
        self.copy_key.setEnabled(shown and bool(key))
        for widget in (self.key_label, self.key, self.copy_key, self.new_key):
            widget.setVisible(key is not None)

    def set_usage(self, text: str) -> None:
        self.usage.setPlainText(text)
        self.usage.setVisible(bool(text))
