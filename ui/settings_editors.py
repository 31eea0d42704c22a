"""One option's editor on a Settings page, built from its declared Spec."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)

from engine.settings import Spec, Value

_CHOICE_TEXT = {
    "model": "As the model recommends",
    "on": "On",
    "off": "Off",
    "system": "Follow the system",
    "light": "Light",
    "dark": "Dark",
}

# Whole-number settings whose 0 means "never" (the spin box says so instead of 0).
_ZERO_IS_NEVER = frozenset({"storage.lock_after_min"})


class SettingEditor(QWidget):
    """One option's editor; ``None`` (automatic) is an 'Automatic' checkbox."""

    edited = Signal(str, object)

    def __init__(self, spec: Spec[Any], value: Value, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.widget = self._make_editor()
        self.widget.setObjectName(f"setting:{spec.key}")
        self.widget.setAccessibleName(spec.label)
        self.widget.setToolTip(spec.description)
        layout.addWidget(self.widget, 1)
        self.auto: QCheckBox | None = None
        self.auto_value: Value = None  # what "Automatic" comes to (the dialog is told)
        if spec.optional:
            auto_text = "Model default" if spec.page == "generation" else "Automatic"
            self.auto = QCheckBox(auto_text)
            self.auto.setAccessibleName(f"{spec.label}: {auto_text.lower()}")
            self.auto.setObjectName(f"setting-auto:{spec.key}")
            self.auto.toggled.connect(self._on_auto_toggled)
            layout.addWidget(self.auto)
        self.set_value(value)

    def _make_editor(self) -> QWidget:
        spec = self.spec
        if spec.kind is bool:
            box = QCheckBox()
            box.toggled.connect(lambda on: self._emit(bool(on)))
            return box
        if spec.choices:
            combo = QComboBox()
            for choice in spec.choices:
                combo.addItem(_CHOICE_TEXT.get(choice, choice), choice)
            combo.currentIndexChanged.connect(lambda _i: self._emit(combo.currentData()))
            return combo
        if spec.kind is int:
            spin = QSpinBox()
            spin.setRange(int(spec.minimum or 0), int(spec.maximum or 1_000_000))
            spin.setSingleStep(512 if spec.key == "performance.n_ctx" else 1)
            if spec.key in _ZERO_IS_NEVER:
                spin.setSpecialValueText("Never")  # shown for 0, the minimum
            spin.editingFinished.connect(lambda: self._emit(spin.value()))
            return spin
        if spec.kind is float:
            dspin = QDoubleSpinBox()
            dspin.setRange(spec.minimum or 0.0, spec.maximum or 1e9)
            dspin.setDecimals(2)
            dspin.setSingleStep(0.05)
            dspin.editingFinished.connect(lambda: self._emit(dspin.value()))
            return dspin
        if spec.key == "generation.system_prompt":
            text = QPlainTextEdit()
            text.setPlaceholderText("For example: You are a concise assistant.")
            text.setFixedHeight(90)
            text.setTabChangesFocus(True)  # Tab leaves the field (a prompt needs no tabs)
            text.textChanged.connect(lambda: self._emit(text.toPlainText()))
            return text
        line = QLineEdit()
        line.editingFinished.connect(lambda: self._emit(line.text()))
        return line

    def set_value(self, value: Value) -> None:
        w = self.widget
        blockers = [w.blockSignals(True)]
        if self.auto is not None:
            blockers.append(self.auto.blockSignals(True))
            self.auto.setChecked(value is None)
            w.setEnabled(value is not None)
        if value is None:  # "Automatic": show what Hearth decided, greyed out
            value = self.auto_value
        if value is not None:
            if isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QComboBox):
                w.setCurrentIndex(max(0, w.findData(str(value))))  # (an enum as its value)
            elif isinstance(w, QSpinBox):
                w.setValue(int(value))
            elif isinstance(w, QDoubleSpinBox):
                w.setValue(float(value))
            elif isinstance(w, QPlainTextEdit):
                w.setPlainText(str(value))
            elif isinstance(w, QLineEdit):
                w.setText(str(value))
        w.blockSignals(blockers[0])
        if self.auto is not None:
            self.auto.blockSignals(blockers[1])

    def current(self) -> Value:
        if self.auto is not None and self.auto.isChecked():
            return None
        w = self.widget
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return str(w.currentData())
        if isinstance(w, QSpinBox | QDoubleSpinBox):
            return w.value()
        if isinstance(w, QPlainTextEdit):
            return w.toPlainText()
        assert isinstance(w, QLineEdit)
        return w.text()

    def _emit(self, value: Value) -> None:
        self.edited.emit(self.spec.key, value)

    @Slot(bool)
    def _on_auto_toggled(self, on: bool) -> None:
        self.widget.setEnabled(not on)
        if on and self.auto_value is not None:
            self.set_value(None)
        self.edited.emit(self.spec.key, None if on else self.current())
