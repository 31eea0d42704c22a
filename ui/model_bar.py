"""The strip above the composer that offers a better model and shows its download.

Two faces: an *offer* ("This computer can run Qwen3.5 9B Q4_K_M well — 5.9 GB,
about 16 minutes … [Download] [Not now]") and a *download* (progress bar,
bytes, speed, time left, [Cancel]). The person keeps chatting meanwhile; the
controller (app.model_manager) decides what to show.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget


class ModelBar(QFrame):
    download_clicked = Signal()
    dismissed = Signal()
    cancel_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("model_bar")
        self.setAccessibleName("Model download")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel("")
        self.label.setObjectName("model_bar_text")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setObjectName("model_bar_progress")
        self.progress.setAccessibleName("Download progress")
        self.progress.setMaximum(1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(160)
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("model_bar_download")
        self.download_button.clicked.connect(self.download_clicked)
        self.dismiss_button = QPushButton("Not now")
        self.dismiss_button.setObjectName("model_bar_dismiss")
        self.dismiss_button.clicked.connect(self.dismissed)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("model_bar_cancel")
        self.cancel_button.setAccessibleName("Cancel the download")
        self.cancel_button.clicked.connect(self.cancel_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.download_button)
        layout.addWidget(self.dismiss_button)
        layout.addWidget(self.cancel_button)
        self.hide()

    def show_offer(self, text: str, action: str = "Download") -> None:
        self.label.setText(text)
        self.download_button.setText(action)
        for w, on in (
            (self.progress, False),
            (self.download_button, True),
            (self.dismiss_button, True),
            (self.cancel_button, False),
        ):
            w.setVisible(on)
        self.show()

    def show_progress(self, fraction: float | None, text: str) -> None:
        """A download in progress; ``fraction`` None = size not known yet (busy bar)."""
        self.label.setText(text)
        if fraction is None:
            self.progress.setMaximum(0)
        else:
            self.progress.setMaximum(1000)
            self.progress.setValue(int(fraction * 1000))
        for w, on in (
            (self.progress, True),
            (self.download_button, False),
            (self.dismiss_button, False),
            (self.cancel_button, True),
        ):
            w.setVisible(on)
        self.show()

    def show_message(self, text: str, *, retry: str = "") -> None:
        """A sentence after a download (done, cancelled, failed); ``retry`` names a button."""
        self.label.setText(text)
        self.progress.hide()
        self.cancel_button.hide()
        self.download_button.setVisible(bool(retry))
        if retry:
            self.download_button.setText(retry)
        self.dismiss_button.setText("Close" if not retry else "Not now")
        self.dismiss_button.show()
        self.show()
