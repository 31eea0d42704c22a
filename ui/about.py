"""Hearth's identity: the app icon and the About box.

The About box shows the version, where Hearth keeps chats, models, settings and
logs, and the licenses of what ships inside Hearth. Everything it shows is
passed in (the version and the folders come from ``app``, the license texts
from ``resources/licenses``): the ui layer reads no settings of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Slot
from PySide6.QtGui import QIcon, QTextCursor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def load_app_icon(icons_dir: Path) -> QIcon:
    """The app icon from its pre-rendered PNGs (no SVG plugin needed at run time)."""
    icon = QIcon()
    for size in ICON_SIZES:
        path = icons_dir / f"hearth-{size}.png"
        if path.is_file():
            icon.addFile(str(path), QSize(size, size))
    return icon


@dataclass(frozen=True, slots=True)
class Component:
    """A part shipped inside Hearth and its license files (in ``resources/licenses``)."""

    name: str
    license: str
    files: tuple[str, ...]
    note: str = ""


COMPONENTS: tuple[Component, ...] = (
    Component("Hearth", "MIT", ("Hearth-MIT.txt",)),
    Component(
        "Qt 6 and PySide6 (The Qt Company)",
        "LGPL-3.0",
        ("LGPL-3.0.txt", "GPL-3.0.txt"),
        note=(
            "Hearth uses Qt's libraries unchanged, as separate files in its install folder; "
            "you may replace them with your own build of the same Qt version. Qt's source code: "
            "https://download.qt.io/official_releases/qt/ and https://code.qt.io/"
        ),
    ),
    Component("llama.cpp and ggml (the ggml authors)", "MIT", ("llama.cpp-MIT.txt",)),
    Component("llama-cpp-python (Andrei Betlen)", "MIT", ("llama-cpp-python-MIT.txt",)),
    Component(
        "SmolLM2-135M-Instruct, the starter model (Hugging Face)",
        "Apache-2.0",
        ("Apache-2.0.txt",),
        note="Model weights from https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
)
# Written by the installer build (packaging/spec_support.py): every other package inside.
THIRD_PARTY = Component(
    "Other bundled software (Python and its packages)",
    "various",
    ("third-party/THIRD-PARTY.txt",),
)


class AboutDialog(QDialog):
    def __init__(
        self,
        *,
        version: str,
        folders: Sequence[tuple[str, Path]],
        licenses_dir: Path,
        icon: QIcon | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("about_dialog")
        self.setWindowTitle("About Hearth")
        self.resize(640, 600)
        self._licenses_dir = licenses_dir

        # Who: icon, name, version, one sentence.
        header = QHBoxLayout()
        if icon is not None and not icon.isNull():
            picture = QLabel()
            picture.setPixmap(icon.pixmap(64, 64))
            header.addWidget(picture, 0, Qt.AlignmentFlag.AlignTop)
        title = QLabel(
            "<h2 style='margin:0'>Hearth</h2>"
            f"<p style='margin:2px 0'>Version {version}</p>"
            "<p>Private, offline chat with open language models. Your chats stay on this "
            "computer; nothing leaves it unless you ask for a download.</p>"
        )
        title.setObjectName("about_title")
        title.setWordWrap(True)
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        header.addWidget(title, 1)

        # Where: each folder as a link that opens it in the file manager.
        where = QGroupBox("Where Hearth keeps your things")
        form = QFormLayout(where)
        self.folder_labels: dict[str, QLabel] = {}
        for label, path in folders:
            link = QLabel(f"<a href='{QUrl.fromLocalFile(str(path)).toString()}'>{path}</a>")
            link.setObjectName("about_folder")
            link.setToolTip(f"Open {path}")
            link.setTextInteractionFlags(
                Qt.TextInteractionFlag.TextBrowserInteraction
                | Qt.TextInteractionFlag.TextSelectableByMouse
            )
            link.setOpenExternalLinks(True)
            form.addRow(f"{label}:", link)
            self.folder_labels[label] = link

        # What's inside: pick a part, read its license.
        inside = QGroupBox("Software inside Hearth")
        box = QVBoxLayout(inside)
        self.components = QListWidget()
        self.components.setObjectName("about_components")
        self.components.setAccessibleName("Bundled software")
        parts = list(COMPONENTS)
        if (licenses_dir / THIRD_PARTY.files[0]).is_file():
            parts.append(THIRD_PARTY)
        for part in parts:
            item = QListWidgetItem(f"{part.name} — {part.license}")
            item.setData(Qt.ItemDataRole.UserRole, part)
            self.components.addItem(item)
        self.license_text = QPlainTextEdit()
        self.license_text.setObjectName("about_license_text")
        self.license_text.setAccessibleName("License text")
        self.license_text.setReadOnly(True)
        self.license_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        box.addWidget(self.components, 1)
        box.addWidget(self.license_text, 2)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(where)
        layout.addWidget(inside, 1)
        layout.addWidget(buttons)

        self.components.currentItemChanged.connect(self._on_component_changed)
        self.components.setCurrentRow(0)

    def license_for(self, part: Component) -> str:
        """The license text(s) of ``part``, or a sentence saying where they should be."""
        texts = []
        if part.note:
            texts.append(part.note + "\n")
        for name in part.files:
            path = self._licenses_dir / name
            try:
                texts.append(path.read_text(encoding="utf-8"))
            except OSError:
                texts.append(f"The license file {path} is missing; reinstall Hearth to restore it.")
        return "\n\n".join(texts)

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_component_changed(self, current: QListWidgetItem | None, _old: object) -> None:
        if current is None:
            self.license_text.clear()
            return
        part = current.data(Qt.ItemDataRole.UserRole)
        self.license_text.setPlainText(self.license_for(part))
        self.license_text.moveCursor(QTextCursor.MoveOperation.Start)
