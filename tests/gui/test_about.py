"""The About box: version, data folders, and the licenses of what ships inside Hearth."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from app.version import __version__
from engine.models.catalog import resources_dir
from tests.gui.conftest import Launch
from ui.about import COMPONENTS, THIRD_PARTY, AboutDialog, load_app_icon

LICENSES = resources_dir() / "licenses"

# What each bundled part's license text must say, so a wrong or empty file fails.
EXPECTED = {
    "Hearth": "MIT License",
    "Qt 6": "GNU LESSER GENERAL PUBLIC LICENSE",
    "llama.cpp": "Copyright (c) 2023-2026 The ggml authors",
    "llama-cpp-python": "Copyright (c) 2023 Andrei Betlen",
    "SmolLM2": "Apache License",
}


def make_dialog(qtbot: QtBot, tmp_path: Path, licenses: Path = LICENSES) -> AboutDialog:
    dialog = AboutDialog(
        version="9.8.7",
        folders=[("Chats", tmp_path / "data"), ("Logs", tmp_path / "logs")],
        licenses_dir=licenses,
        icon=load_app_icon(resources_dir() / "icons"),
    )
    qtbot.addWidget(dialog)
    return dialog


def test_shows_version_folders_and_every_license(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = make_dialog(qtbot, tmp_path)
    dialog.show()
    assert "Version 9.8.7" in dialog.findChild(QLabel, "about_title").text()
    chats = dialog.folder_labels["Chats"]
    assert str(tmp_path / "data") in chats.text()
    assert (tmp_path / "data").as_uri() in chats.text()  # a link that opens the folder
    assert str(tmp_path / "logs") in dialog.folder_labels["Logs"].text()

    names = [dialog.components.item(i).text() for i in range(dialog.components.count())]
    assert len(names) == len(COMPONENTS)  # no third-party summary in a source checkout
    for row, name in enumerate(names):
        (key,) = [k for k in EXPECTED if name.startswith(k)]
        dialog.components.setCurrentRow(row)
        text = dialog.license_text.toPlainText()
        assert EXPECTED[key] in text, name
    qt_row = next(i for i, n in enumerate(names) if n.startswith("Qt 6"))
    dialog.components.setCurrentRow(qt_row)
    text = dialog.license_text.toPlainText()
    # LGPLv3 is a set of permissions on top of the GPLv3: both texts must ship.
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3" in text
    assert "replace them with your own build" in text
    assert names[qt_row].endswith("LGPL-3.0")


def test_missing_license_file_is_said_not_hidden(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = make_dialog(qtbot, tmp_path, licenses=tmp_path / "nowhere")
    dialog.components.setCurrentRow(0)
    text = dialog.license_text.toPlainText()
    assert f"The license file {tmp_path / 'nowhere' / 'Hearth-MIT.txt'} is missing" in text


def test_lists_the_installers_third_party_summary_when_present(
    qtbot: QtBot, tmp_path: Path
) -> None:
    licenses = tmp_path / "licenses"
    (licenses / "third-party").mkdir(parents=True)
    (licenses / THIRD_PARTY.files[0]).write_text("numpy 2.4  (BSD-3-Clause)\n", encoding="utf-8")
    dialog = make_dialog(qtbot, tmp_path, licenses=licenses)
    assert dialog.components.count() == len(COMPONENTS) + 1
    dialog.components.setCurrentRow(len(COMPONENTS))
    assert "numpy 2.4" in dialog.license_text.toPlainText()


def test_app_icon_has_every_size_down_to_16px() -> None:
    icon = load_app_icon(resources_dir() / "icons")
    sizes = {(s.width(), s.height()) for s in icon.availableSizes()}
    assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= sizes
    small = icon.pixmap(16, 16).toImage()
    # The flame is drawn in the middle of the tile at 16 px, not blurred into the background.
    centre = small.pixelColor(8, 8)
    assert centre.red() > 200 and centre.alpha() == 255


def test_the_windows_about_action_opens_about_with_this_version_and_the_data_folders(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir, wait_ready=False)
    (action,) = [a for a in hearth.window.actions() if a.text() == "About Hearth"]
    assert action.shortcut() == QKeySequence(QKeySequence.StandardKey.HelpContents)  # F1
    # Triggered directly: the offscreen platform never makes a window active, and
    # Qt delivers shortcuts only to the active one.
    action.trigger()
    qtbot.waitUntil(lambda: isinstance(QApplication.activeModalWidget(), AboutDialog))
    dialog = hearth.window.findChild(AboutDialog, "about_dialog")
    assert dialog is not None and dialog.isVisible()
    title = dialog.findChild(QLabel, "about_title")
    assert f"Version {__version__}" in title.text()
    assert str(data_dir) in dialog.folder_labels["Chats"].text()
    assert str(data_dir / "models") in dialog.folder_labels["Models"].text()
    dialog.reject()
    qtbot.waitUntil(lambda: hearth.window.findChild(AboutDialog) is None)  # deleted on close
