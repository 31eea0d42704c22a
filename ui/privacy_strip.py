"""The two strips above the composer for encrypted chats (issue 17): the progress of a
conversion (encrypting, decrypting, a new key) with its last sentence, and the one-time
offer to encrypt after the first chats. Widgets only; app/privacy.py drives them."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

__all__ = ["ConversionStrip", "EncryptOfferStrip"]

OFFER_TEXT = "Your chats are stored unencrypted on this computer. Encrypt them?"


def _label(name: str) -> QLabel:
    label = QLabel("")
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ConversionStrip(QFrame):
    """ "Encrypting your chats… 42%" with a bar while it runs; the sentence at the end,
    with a Close button."""

    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("conversion_strip")
        self.setAccessibleName("Encryption of the chats")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = _label("conversion_text")
        self.progress = QProgressBar()
        self.progress.setObjectName("conversion_progress")
        self.progress.setAccessibleName("Progress of the conversion")
        self.progress.setRange(0, 100)
        self.progress.setFixedWidth(160)
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("conversion_close")
        self.close_button.clicked.connect(self._on_close)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.close_button)
        self.hide()

    def show_progress(self, percent: int | None, text: str) -> None:
        """``percent`` None: a step whose length is not known (a busy bar)."""
        self.label.setText(text)
        if percent is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(percent)
        self.progress.show()
        self.close_button.hide()
        self.show()

    def show_result(self, text: str) -> None:
        self.label.setText(text)
        self.progress.hide()
        self.close_button.show()
        self.show()

    def text(self) -> str:
        return self.label.text()

    def _on_close(self) -> None:
        self.hide()
        self.closed.emit()


class EncryptOfferStrip(QFrame):
    """The gentle, one-time question after the first chats."""

    encrypt_clicked = Signal()
    later_clicked = Signal()  # "Not now": asked again after more chats
    never_clicked = Signal()  # "Don't ask again"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("encrypt_offer")
        self.setAccessibleName("Offer to encrypt the chats")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = _label("encrypt_offer_text")
        self.label.setText(OFFER_TEXT)
        self.label.setToolTip(
            "Anyone with a copy of the chats folder (a lost laptop, a synced folder, a "
            "backup) can read unencrypted chats. Encrypted, they need your key."
        )
        self.encrypt_button = QPushButton("Encrypt…")
        self.encrypt_button.setObjectName("encrypt_offer_yes")
        self.later_button = QPushButton("Not now")
        self.later_button.setObjectName("encrypt_offer_later")
        self.never_button = QPushButton("Don't ask again")
        self.never_button.setObjectName("encrypt_offer_never")
        self.encrypt_button.clicked.connect(self.encrypt_clicked)
        self.later_button.clicked.connect(self.later_clicked)
        self.never_button.clicked.connect(self.never_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        for button in (self.encrypt_button, self.later_button, self.never_button):
            button.setAutoDefault(False)
            layout.addWidget(button)
        self.hide()
