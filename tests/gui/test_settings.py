"""The Settings window on the real app: applied at once, or on reload, and saved."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QComboBox, QPushButton, QSpinBox
from pytestqt.qtbot import QtBot

from app.folders import Folder
from app.gui import HearthApp
from engine.history.db import StoreDatabase
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, answer_next_dialog, send
from ui.settings_dialog import SettingsDialog
from ui.state import ResponseState


def open_settings(qtbot: QtBot, hearth: HearthApp) -> SettingsDialog:
    qtbot.keyClick(hearth.window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    dialog = hearth.settings_controller.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def test_settings_opens_from_the_button_and_the_shortcut(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir)
    qtbot.mouseClick(hearth.window.settings_button, Qt.MouseButton.LeftButton)
    dialog = hearth.settings_controller.dialog
    assert dialog is not None and dialog.isVisible()
    pages = [dialog.pages.item(i).text() for i in range(dialog.pages.count())]
    assert pages == [
        "Model",
        "Connections",
        "Tools",
        "Generation",
        "Performance",
        "Privacy & storage",
        "Appearance",
        "Other programs",
    ]
    dialog.close()
    assert open_settings(qtbot, hearth).isVisible()


def test_theme_applies_at_once_and_is_remembered(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir)
    dialog = open_settings(qtbot, hearth)
    theme = dialog.findChild(QComboBox, "setting:appearance.theme")
    assert theme is not None
    theme.setCurrentIndex(theme.findData("dark"))
    window_color = QApplication.palette().color(QPalette.ColorRole.Window)
    assert window_color.lightness() < 100  # dark now, without a restart
    saved = json.loads((data_dir / "config" / "settings.json").read_text())
    assert saved["values"]["appearance.theme"] == "dark"
    theme.setCurrentIndex(theme.findData("light"))
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() > 150


def test_context_length_needs_a_reload_and_the_chat_continues(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Remember the word lighthouse.")
    conv_id = hearth.conversations.current_id
    dialog = open_settings(qtbot, hearth)
    spin = dialog.findChild(QSpinBox, "setting:performance.n_ctx")
    assert spin is not None
    dialog.editors["performance.n_ctx"].auto.setChecked(False)  # type: ignore[union-attr]
    spin.setValue(4096)
    spin.editingFinished.emit()
    reload_button = dialog.findChild(QPushButton, "reload_button")
    assert reload_button is not None and reload_button.isVisibleTo(dialog)
    assert "Reload" in dialog.reload_notice.text()
    with qtbot.waitSignal(hearth.engine.model_changed, timeout=REPLY_TIMEOUT_MS):
        qtbot.mouseClick(reload_button, Qt.MouseButton.LeftButton)
    assert hearth.engine.model_info is not None
    assert hearth.engine.model_info.n_ctx == 4096
    assert not reload_button.isVisibleTo(dialog)
    # The same conversation carries on with its history.
    assert hearth.conversations.current_id == conv_id
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "What was the word?")
    assert [m.role for m in hearth.store.messages(conv_id)] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert hearth.window.state == ResponseState.IDLE


def test_a_broken_settings_file_never_stops_hearth(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    config = data_dir / "config"
    config.mkdir()
    (config / "settings.json").write_text(
        json.dumps({"version": 1, "values": {"appearance.theme": "neon", "performance.n_ctx": 7}}),
        encoding="utf-8",
    )
    hearth = launch(data_dir)
    assert hearth.window.state == ResponseState.IDLE  # it started and loaded the model
    banner = hearth.window.error_banner.label.text()
    assert "reset to their defaults" in banner and "Theme" in banner
    backups = list(config.glob("settings.json.bad-*"))
    assert len(backups) == 1 and "neon" in backups[0].read_text()


def test_delete_all_chats_asks_then_deletes_them_for_good(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "A secret about the xylophonist's garden")
    hearth.store.create_conversation("Another chat")
    hearth.conversations.refresh_conversations()
    assert hearth.window.conversations.rowCount() == 2
    dialog = open_settings(qtbot, hearth)
    button = dialog.findChild(QPushButton, "delete_all_chats_button")
    assert button is not None

    seen = answer_next_dialog(qtbot, "Cancel")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert seen == ["Delete every conversation for good? This cannot be undone."]
    assert len(hearth.store.list_conversations()) == 2

    answer_next_dialog(qtbot, "Delete all chats")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert hearth.store.list_conversations() == []
    assert hearth.window.conversations.rowCount() == 0
    assert hearth.store.search("garden") == []
    # Gone from the files themselves, not only hidden: nothing to undo, nothing to find,
    # not even one word in the search index.
    for path in data_dir.glob("hearth.sqlite3*"):
        assert b"xylophonist" not in path.read_bytes().lower(), path.name


def test_thinking_budget_is_a_generation_setting_applied_at_once(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir, params=None)  # the model's defaults + what the person sets
    dialog = open_settings(qtbot, hearth)
    spin = dialog.findChild(QSpinBox, "setting:generation.max_thinking_tokens")
    assert spin is not None and spin.value() == 4096
    spin.setValue(256)
    spin.editingFinished.emit()
    assert hearth.conversations.defaults.overrides["max_thinking_tokens"] == 256
    saved = json.loads((data_dir / "config" / "settings.json").read_text())
    assert saved["values"]["generation.max_thinking_tokens"] == 256


def test_move_the_chats_folder_and_keep_chatting(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hearth = launch(data_dir)
    # Which thread made the copy (the real copy runs).
    copied_on: list[threading.Thread] = []
    real_copy = StoreDatabase.copy_to

    def copy_to(store: StoreDatabase, target: Path) -> None:
        copied_on.append(threading.current_thread())
        real_copy(store, target)

    monkeypatch.setattr(StoreDatabase, "copy_to", copy_to)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Remember the word lighthouse.")
    conv_id = hearth.conversations.current_id
    dialog = open_settings(qtbot, hearth)
    assert dialog.folder_labels[Folder.CHATS].text() == str(data_dir)
    assert dialog.findChild(QPushButton, "move_chats_button") is not None
    new = tmp_path / "synced" / "chats"
    seen = answer_next_dialog(qtbot, "Move")
    dialog.move_chats_requested.emit(str(new))  # what Qt's folder picker returns
    assert seen and seen[0].startswith("Move your chat history")
    # A second move while the copy runs is refused, with a sentence.
    dialog.move_chats_requested.emit(str(tmp_path / "elsewhere"))
    assert "still moving your chats" in hearth.window.error_banner.label.text()
    qtbot.waitUntil(
        lambda: f"Your chats are now in {new}." in hearth.notifier.texts(), timeout=10_000
    )
    assert len(copied_on) == 1 and copied_on[0] is not threading.main_thread()
    assert hearth.store.path == new / "hearth.sqlite3"
    assert (new / "hearth.sqlite3").exists()
    assert not (data_dir / "hearth.sqlite3").exists()  # moved, not copied
    assert dialog.folder_labels[Folder.CHATS].text() == str(new)
    # The same conversation goes on, saved in the new place.
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "What was the word?")
    assert len(hearth.store.messages(conv_id)) == 4  # type: ignore[arg-type]
    dialog.close()
    hearth.close()
    again = launch(data_dir)
    assert again.store.path == new / "hearth.sqlite3"
    assert len(again.store.messages(conv_id)) == 4  # type: ignore[arg-type]
    assert not (data_dir / "hearth.sqlite3").exists()  # no empty history made at the old place


def test_moving_the_chats_onto_existing_chats_is_refused(
    qtbot: QtBot, launch: Launch, data_dir: Path, tmp_path: Path
) -> None:
    hearth = launch(data_dir)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "hearth.sqlite3").write_bytes(b"someone else's chats")
    dialog = open_settings(qtbot, hearth)
    answer_next_dialog(qtbot, "Move")
    dialog.move_chats_requested.emit(str(taken))
    qtbot.waitUntil(
        lambda: "already exists" in hearth.window.error_banner.label.text(), timeout=10_000
    )
    assert (taken / "hearth.sqlite3").read_bytes() == b"someone else's chats"
    assert hearth.store.path == data_dir / "hearth.sqlite3"
    assert (data_dir / "hearth.sqlite3").exists()


def test_automatic_fields_show_what_hearth_chose(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    """A greyed-out "Automatic" field shows the value in effect, not a placeholder."""
    hearth = launch(data_dir)  # the tests load with a 2,048-token context
    dialog = open_settings(qtbot, hearth)
    n_ctx = dialog.findChild(QSpinBox, "setting:performance.n_ctx")
    assert n_ctx is not None and not n_ctx.isEnabled()
    assert n_ctx.value() == 2048
    assert "2,048 tokens" in dialog.memory_estimate.text()
    temperature = dialog.editors["generation.temperature"]
    assert temperature.current() is None  # still "Model default"...
    assert temperature.widget.value() == 0.3  # ...which is the starter's recommended 0.3


def test_tab_leaves_the_system_prompt_field(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    dialog = open_settings(qtbot, hearth)
    titles = [dialog.pages.item(i).text() for i in range(dialog.pages.count())]
    dialog.pages.setCurrentRow(titles.index("Generation"))
    prompt = dialog.editors["generation.system_prompt"].widget
    prompt.setFocus()
    qtbot.keyClick(prompt, Qt.Key.Key_Tab)
    assert not prompt.hasFocus()
    assert hearth.settings["generation.system_prompt"] == ""  # no tab typed into it


def _row(dialog: SettingsDialog, quant: str) -> list[str]:
    for i in range(dialog.quants.topLevelItemCount()):
        item = dialog.quants.topLevelItem(i)
        if item is not None and item.data(0, Qt.ItemDataRole.UserRole) == quant:
            return [item.text(c) for c in range(item.columnCount())]
    raise AssertionError(quant)


def _nine_b(data_dir: Path) -> None:
    """Settings that show the Qwen3.5-9B family on the Model page (nothing to download)."""
    (data_dir / "config").mkdir(parents=True)
    (data_dir / "config" / "settings.json").write_text(
        json.dumps({"version": 2, "values": {"model.family": "qwen3.5-9b",
                                             "model.offer_dismissed": True}}),
        encoding="utf-8",
    )  # fmt: skip


def test_the_model_page_splits_gpu_and_ram_and_shows_speeds_on_a_recorded_gpu(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    from engine.models.memory import MIB
    from engine.models.ranking import rank_quants
    from engine.models.speed import Bandwidth
    from engine.types import DeviceProbe, GpuDevice

    _nine_b(data_dir)
    hearth = launch(data_dir)
    service = hearth.models.service
    # RECORDED, NOT REAL: there is no GPU here. What llama.cpp reports for an 8 GB laptop
    # GPU, and a memory speed, stand in for the probe's and the measurement's answers.
    service.devices = DeviceProbe(
        gpus=(GpuDevice(backend="CUDA", name="CUDA0",
                        description="NVIDIA GeForce RTX 4060 Laptop GPU",
                        total_memory=8188 * MIB, free_memory=7800 * MIB),),
        can_offload=True, cpu="AVX2",
    )  # fmt: skip
    service.bandwidth = Bandwidth(
        bytes_per_s=50e9, method="memchr", threads=4, machine="recorded",
        measured_at="2026-12-01T00:00:00+00:00",
    )  # fmt: skip
    dialog = open_settings(qtbot, hearth)
    header = dialog.quants.headerItem()
    assert [header.text(c) for c in range(6)] == [
        "Quantization", "Download", "GPU", "RAM", "Fit", "Speed"
    ]  # fmt: skip
    assert not dialog.quants.isColumnHidden(2) and not dialog.quants.isColumnHidden(5)
    q4 = _row(dialog, "Q4_K_M")
    assert q4[2].endswith("GB") and q4[4] == "✓ fits on the GPU"
    assert q4[5].startswith("about ") and q4[5].endswith(" tokens/s")
    assert _row(dialog, "Q8_0")[4] == "✓ GPU + RAM"
    # "Auto" is the speed-aware pick, with its reason under the list.
    ranked = rank_quants(
        service.entries("qwen3.5-9b"), service.hardware(), options=hearth.models.estimate_options(),
        reclaimable=hearth.models.reclaimable(), device=service.device(), ram_bandwidth=50e9,
    )  # fmt: skip
    (pick,) = [r for r in ranked if r.recommended]
    assert dialog.quants.topLevelItem(0).text(0) == f"Auto: {pick.entry.quantization}"
    assert dialog.auto_reason.text() == f"Auto picks {pick.reason}"
    assert "NVIDIA GeForce RTX 4060 Laptop GPU" in dialog.speed_note.text()
    # "Measure again" asks this machine for real: this CPU build has no GPU.
    qtbot.mouseClick(dialog.measure_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.measure_button.isEnabled(), timeout=REPLY_TIMEOUT_MS)
    assert service.bandwidth is not None and service.bandwidth.machine != "recorded"
    assert dialog.quants.isColumnHidden(2) and header.text(3) == "Memory"
    assert _row(dialog, "Q4_K_M")[4] in ("✓ fits", "! tight", "✗ too large")
    assert (data_dir / "bandwidth.json").is_file() and (data_dir / "devices.json").is_file()


def test_on_this_cpu_the_model_page_measures_once_and_shows_speeds(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    _nine_b(data_dir)
    hearth = launch(data_dir)
    dialog = open_settings(qtbot, hearth)
    assert "Measuring" in dialog.speed_note.text()  # in the background: the page is usable
    qtbot.waitUntil(lambda: dialog.measure_button.isEnabled(), timeout=REPLY_TIMEOUT_MS)
    assert dialog.quants.isColumnHidden(2)  # no GPU: one memory column, as before
    assert dialog.quants.headerItem().text(3) == "Memory"
    assert _row(dialog, "Q4_K_M")[5].startswith("about ")
    assert "no GPU this build of llama.cpp can use" in dialog.speed_note.text()
    assert dialog.auto_reason.text().startswith("Auto picks ")
    measured = hearth.models.service.bandwidth
    dialog.close()
    # Kept: the next window (and the next start) reads it instead of measuring again.
    hearth.settings_controller.open()
    again = hearth.settings_controller.dialog
    assert again is not None and again is not dialog
    assert again.measure_button.isEnabled() and hearth.models.service.bandwidth is measured


def test_lock_after_idle_says_never_for_zero(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    dialog = open_settings(qtbot, hearth)
    spin = dialog.editors["storage.lock_after_min"].widget
    assert spin.value() == 0 and spin.text() == "Never"
    spin.setValue(5)
    assert spin.text() == "5"
