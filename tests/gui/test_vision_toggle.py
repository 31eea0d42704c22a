"""Settings → Model: "Let it see images" per model (issue 13), on the real app.

The model files are real GGUFs (the tiny random-weight ``qwen35`` and a projector
built for its width, tests/fixtures/); the model that answers is a
``ScriptedBackend`` opened on that file's path (loading a vision model is too slow
for the GUI tier; tests/unit/test_vision.py loads the real one): what is tested is
the page, the setting it writes and the reload it asks for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QCheckBox
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from tests.fakes.scripted import ScriptedBackend
from tests.fixtures.mmproj import build_mmproj_gguf
from tests.fixtures.qwen35 import N_EMBD, build_qwen35_gguf
from tests.gui.conftest import Launch
from ui.settings_dialog import SettingsDialog
from ui.vision_toggle import no_vision_with

SHOTS = Path("/work/wt/shots/vision2")


def click(qtbot: QtBot, box: QCheckBox) -> None:
    """Click the box itself (a check box takes clicks on its square and its text)."""
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))


def open_settings(qtbot: QtBot, hearth: HearthApp) -> SettingsDialog:
    qtbot.keyClick(hearth.window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    dialog = hearth.settings_controller.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


@pytest.fixture(scope="module")
def seeing_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("own-model")
    model = build_qwen35_gguf(folder / "Qwen3.5-tiny-F16.gguf")
    build_mmproj_gguf(folder / "Qwen3.5-tiny-mmproj-F32.gguf", n_embd_text=N_EMBD)
    return model


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_vision_switch_writes_the_setting_and_asks_for_a_reload(
    qtbot: QtBot, launch: Launch, data_dir: Path, seeing_model: Path, theme: str
) -> None:
    backend = ScriptedBackend(path=str(seeing_model), name="Qwen3.5 tiny", vision=True)
    hearth = launch(data_dir, backend=backend, theme=theme)
    hearth.settings.update({"model.no_vision": "Other-model.gguf"})  # another model's stays
    dialog = open_settings(qtbot, hearth)
    toggle = dialog.vision_toggle
    assert toggle.isVisible()
    assert toggle.check.isChecked()
    size = (seeing_model.parent / "Qwen3.5-tiny-mmproj-F32.gguf").stat().st_size
    assert f"uses {size / 1e3:.0f} kB more memory" in toggle.check.text()
    assert toggle.check.text().startswith("Let Qwen3.5 tiny see images")
    assert not dialog.reload_button.isVisible()

    click(qtbot, toggle.check)
    assert not toggle.check.isChecked()
    assert hearth.settings["model.no_vision"] == f"Other-model.gguf|{seeing_model.name}"
    assert dialog.reload_button.isVisible()  # it takes effect when the model reloads
    assert "it cannot see images" in toggle.note.text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialog.grab().save(str(SHOTS / f"model-page-vision-off-{theme}.png"))

    click(qtbot, toggle.check)
    assert toggle.check.isChecked()
    assert hearth.settings["model.no_vision"] == "Other-model.gguf"
    assert "It reads the images" in toggle.note.text()
    dialog.grab().save(str(SHOTS / f"model-page-vision-on-{theme}.png"))

    # Opened again, the page shows what was saved.
    click(qtbot, toggle.check)
    dialog.close()
    again = open_settings(qtbot, hearth)
    assert again.vision_toggle.isVisible() and not again.vision_toggle.check.isChecked()


def test_no_switch_for_a_model_without_a_vision_file(
    qtbot: QtBot, launch: Launch, data_dir: Path, tmp_path: Path
) -> None:
    plain = build_qwen35_gguf(tmp_path / "plain-F16.gguf")  # nothing beside it
    hearth = launch(data_dir, backend=ScriptedBackend(path=str(plain)))
    dialog = open_settings(qtbot, hearth)
    assert dialog.vision_toggle.isHidden()
    assert dialog.findChild(object, "setting:model.no_vision") is None  # no raw text field


def test_a_vision_file_for_another_width_gets_no_switch(
    qtbot: QtBot, launch: Launch, data_dir: Path, tmp_path: Path
) -> None:
    model = build_qwen35_gguf(tmp_path / "Qwen3.5-tiny-F16.gguf")
    build_mmproj_gguf(tmp_path / "Qwen3.5-tiny-mmproj-F32.gguf", n_embd_text=N_EMBD * 2)
    hearth = launch(data_dir, backend=ScriptedBackend(path=str(model)))
    assert open_settings(qtbot, hearth).vision_toggle.isHidden()


def test_no_vision_value_keeps_the_other_models() -> None:
    assert no_vision_with("", "a.gguf", seeing=False) == "a.gguf"
    assert no_vision_with("b.gguf|a.gguf|c.gguf", "a.gguf", seeing=True) == "b.gguf|c.gguf"
    assert no_vision_with("b.gguf|a.gguf", "a.gguf", seeing=False) == "b.gguf|a.gguf"
    assert no_vision_with("b.gguf", "a.gguf", seeing=True) == "b.gguf"
