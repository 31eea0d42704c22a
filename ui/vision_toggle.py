"""The Model page's "Let it see images" switch (issue 13): vision per model file.

A model with a vision file (``mmproj``) beside it can see images, at the cost of
that file's memory. The switch edits the ``model.no_vision`` setting (model file
names separated by '|'): checked removes the model's name from it, unchecked adds
it. It is shown only for a model on this computer that has a vision file; the
change takes effect when the model reloads (the Settings window offers that).
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QCheckBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

from engine.units import format_bytes
from ui.theme import mute

NO_VISION_KEY = "model.no_vision"


def no_vision_with(current: str, file_name: str, *, seeing: bool) -> str:
    """``current`` (names separated by '|') with ``file_name`` taken out (``seeing``)
    or put in; the other models' names keep their order."""
    names = [n for n in current.split("|") if n and n != file_name]
    if not seeing:
        names.append(file_name)
    return "|".join(names)


class VisionToggle(QWidget):
    """One check box and a line on what it does; hidden until ``show_for`` a model
    that has a vision file."""

    # The setting's new value: the dialog passes it on as a setting change.
    no_vision_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("vision_toggle")
        self._file = ""
        self._no_vision = ""
        self.check = QCheckBox("")
        self.check.setObjectName("vision_check")
        self.check.toggled.connect(self._on_toggled)
        self.note = QLabel("")
        self.note.setObjectName("vision_note")
        self.note.setWordWrap(True)
        mute(self.note)
        # Never squeezed by the stretching list above it (a clipped second line).
        self.note.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        layout.setSpacing(2)
        layout.addWidget(self.check)
        layout.addWidget(self.note)
        self.setVisible(False)

    def show_for(
        self, file_name: str, model_name: str, projector_bytes: int, no_vision: str
    ) -> None:
        """Show the switch for the model file ``file_name`` (its vision file takes
        ``projector_bytes``); ``no_vision`` is the setting's value now. An empty
        ``file_name`` hides it (no model, a model on a server, no vision file)."""
        self._file, self._no_vision = file_name, no_vision
        if not file_name:
            self.setVisible(False)
            return
        seeing = file_name not in no_vision.split("|")
        self.check.blockSignals(True)  # showing the state is not a change
        self.check.setChecked(seeing)
        self.check.blockSignals(False)
        # Named: the list above may show another family than the model in use.
        who = model_name or "it"
        self.check.setText(
            f"Let {who} see images (uses {format_bytes(projector_bytes)} more memory)"
        )
        self.check.setAccessibleName(f"Let {model_name} see images")
        self._update_note(seeing)
        self.setVisible(True)

    def _update_note(self, seeing: bool) -> None:
        self.note.setText(
            "It reads the images you attach, paste or drop, with its vision file."
            if seeing
            else "Its vision file stays unloaded and its memory free: it cannot see images."
        )

    @Slot(bool)
    def _on_toggled(self, seeing: bool) -> None:
        if not self._file:
            return
        self._no_vision = no_vision_with(self._no_vision, self._file, seeing=seeing)
        self._update_note(seeing)
        self.no_vision_changed.emit(self._no_vision)
