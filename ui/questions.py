"""A warning question with one action and Cancel, Cancel the default (the window's
"Delete…", Connections' "Save anyway"): one look and one behaviour everywhere."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

__all__ = ["ask_before"]


def ask_before(
    parent: QWidget,
    *,
    name: str,
    title: str,
    text: str,
    detail: str,
    action: str,
    destructive: bool = False,
) -> bool:
    """Ask before ``action``; True if the person chose it. ``name``: the box's object
    name, for tests. ``destructive``: the action cannot be undone (Delete)."""
    box = QMessageBox(parent)
    box.setObjectName(name)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(text)
    box.setInformativeText(detail)
    role = (
        QMessageBox.ButtonRole.DestructiveRole if destructive else QMessageBox.ButtonRole.AcceptRole
    )
    yes = box.addButton(action, role)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    chosen = box.clickedButton() is yes
    box.deleteLater()
    return chosen
