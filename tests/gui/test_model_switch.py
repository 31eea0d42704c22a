"""Switching quantization from Settings in the middle of a conversation (issue 5).

Real parts throughout: the starter model requantized here with llama.cpp's own
``llama_model_quantize`` (Q8_0 and Q4_0 files of the same model), the real
engine thread loading them, the real Settings window, and downloads through
huggingface_hub from a Hub-protocol server on 127.0.0.1 (tests/hubserver.py),
since the real Hub cannot be reached here.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QApplication, QPushButton
from pytestqt.qtbot import QtBot

from app.folders import Folder
from app.gui import HearthApp
from engine.models.catalog import (
    CatalogEntry,
    install_starter_model,
    load_catalog,
    remember_verified,
    resources_dir,
)
from engine.types import ReplyDone
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, answer_next_dialog, send
from tests.hubserver import HubServer
from ui.about import AboutDialog
from ui.settings_dialog import SettingsDialog

REPO = "test/SmolLM2-135M-Instruct-GGUF"
FAMILY = "smollm2-135m"


def _quantize(src: Path, dst: Path, ftype: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize failed ({rc})"


@pytest.fixture(scope="module")
def quants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The starter model and two requantized copies (Q8_0, Q4_0), made once."""
    import llama_cpp

    folder = tmp_path_factory.mktemp("quants")
    starter = install_starter_model(folder)
    out = {"Q4_1": starter}
    for name, ftype in (
        ("Q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0),
        ("Q4_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0),
    ):
        out[name] = folder / f"SmolLM2-135M-Instruct.{name}.gguf"
        _quantize(starter, out[name], ftype)
    # A file that claims to be installed but that llama.cpp cannot load: the GGUF
    # header of the real model with its tensor data cut off.
    broken = folder / "SmolLM2-135M-Instruct.Q6_K.gguf"
    broken.write_bytes(starter.read_bytes()[: 2 << 20])
    out["Q6_K"] = broken
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def catalog(
    quants: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> list[CatalogEntry]:
    """Hearth's own catalog, with the starter's family given three more quantizations."""
    real = json.loads((resources_dir() / "catalog.json").read_text())
    ranks = {"Q4_0": 10, "Q6_K": 20, "Q8_0": 30}
    real["families"] = {FAMILY: {**real["families"][FAMILY], "repo": REPO}}
    real["models"] = [
        {
            "id": f"smollm2-135m-instruct-{name.lower()}",
            "family": FAMILY,
            "quantization": name,
            "filename": quants[name].name,
            "size": quants[name].stat().st_size,
            "size_source": "measured",
            "sha256": _sha(quants[name]),
            "verified": True,
            "quality": {"rank": rank, "note": f"{name} of the starter model (test)"},
        }
        for name, rank in ranks.items()
    ]
    path = tmp_path_factory.mktemp("catalog") / "catalog.json"
    path.write_text(json.dumps(real))
    return load_catalog(path)


@pytest.fixture
def hub(quants: dict[str, Path]) -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_file(REPO, quants["Q4_0"].name, quants["Q4_0"].read_bytes())
        yield server


def install(data_dir: Path, source: Path) -> Path:
    """Put a model file into the models folder as a finished download leaves it."""
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = models / source.name
    target.write_bytes(source.read_bytes())
    remember_verified(target, _sha(target))
    return target


def open_model_page(qtbot: QtBot, hearth: HearthApp) -> SettingsDialog:
    qtbot.mouseClick(hearth.window.settings_button, Qt.MouseButton.LeftButton)
    dialog = hearth.settings_controller.dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.pages.currentItem().text() == "Model"
    return dialog


def select(dialog: SettingsDialog, quant: str) -> None:
    """Select ``quant`` (a quantization, or a file's path) in the list."""
    for i in range(dialog.quants.topLevelItemCount()):
        item = dialog.quants.topLevelItem(i)
        if item is not None and item.data(0, Qt.ItemDataRole.UserRole) == quant:
            dialog.quants.setCurrentItem(item)
            return
    raise AssertionError(f"{quant} is not in the list")


def choose(qtbot: QtBot, dialog: SettingsDialog, quant: str) -> None:
    """Select ``quant`` in the list and press the button under it."""
    select(dialog, quant)
    qtbot.mouseClick(dialog.use_quant, Qt.MouseButton.LeftButton)


def row_text(dialog: SettingsDialog, quant: str) -> str:
    for i in range(dialog.quants.topLevelItemCount()):
        item = dialog.quants.topLevelItem(i)
        if item is not None and item.data(0, Qt.ItemDataRole.UserRole) == quant:
            return " | ".join(item.text(c) for c in range(item.columnCount()))
    raise AssertionError(quant)


def row_text_all(dialog: SettingsDialog) -> str:
    items = [dialog.quants.topLevelItem(i) for i in range(dialog.quants.topLevelItemCount())]
    return "\n".join(item.text(0) for item in items if item is not None)


def start_chat(qtbot: QtBot, hearth: HearthApp) -> int:
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Remember the word lighthouse.")
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    return conv_id


def test_switch_between_installed_quantizations_keeps_the_conversation(
    qtbot: QtBot, launch: Launch, data_dir: Path, catalog: list[CatalogEntry], quants: dict
) -> None:
    install(data_dir, quants["Q8_0"])
    hearth = launch(data_dir, catalog=catalog)
    assert hearth.engine.model_info is not None
    assert hearth.engine.model_info.quantization == "Q4_1"  # the starter: Auto not saved yet
    conv_id = start_chat(qtbot, hearth)

    dialog = open_model_page(qtbot, hearth)
    assert dialog.family_combo.currentText() == "SmolLM2 135M Instruct"
    assert "in use" in row_text(dialog, "Q4_1")
    assert "installed" in row_text(dialog, "Q8_0")
    assert "145 MB | " in row_text(dialog, "Q8_0") and "fits" in row_text(dialog, "Q8_0")
    with qtbot.waitSignal(hearth.context.warmed, timeout=REPLY_TIMEOUT_MS) as warmed:
        with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS) as done:
            choose(qtbot, dialog, "Q8_0")
        assert done.args == [True]
    info = hearth.engine.model_info
    assert info is not None and info.quantization == "Q8_0"
    assert "in use" in row_text(dialog, "Q8_0")
    # The new file read the conversation's history right after loading (with progress
    # in the status bar), so the next message reads only itself.
    _reused, read = warmed.args
    assert read > 20
    assert "conversation continues" in hearth.window.statusBar().currentMessage()
    finished: list[ReplyDone] = []
    hearth.engine.reply_finished.connect(lambda _id, done: finished.append(done))
    # The same conversation goes on, with its history, on the new file.
    assert hearth.conversations.current_id == conv_id
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "What was the word?")
    qtbot.waitUntil(lambda: bool(finished), timeout=REPLY_TIMEOUT_MS)
    stats = finished[-1].stats
    assert stats is not None
    assert stats.reused_tokens >= read and stats.evaluated_tokens < read
    messages = hearth.store.messages(conv_id)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[-1].content.strip()

    # Back to the first quantization, then a restart keeps the last choice.
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS):
        choose(qtbot, dialog, "Q4_1")
    assert hearth.engine.model_info.quantization == "Q4_1"  # type: ignore[union-attr]
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS):
        choose(qtbot, dialog, "Q8_0")
    saved = json.loads((data_dir / "config" / "settings.json").read_text())["values"]
    assert (saved["model.family"], saved["model.quant"]) == (FAMILY, "Q8_0")
    dialog.close()
    hearth.close()
    again = launch(data_dir, catalog=catalog)
    assert again.engine.model_info is not None
    assert again.engine.model_info.quantization == "Q8_0"


def test_switch_to_a_quantization_that_must_be_downloaded(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    catalog: list[CatalogEntry],
    hub: HubServer,
    quants: dict,
) -> None:
    hearth = launch(data_dir, catalog=catalog, hub_endpoint=hub.endpoint)
    conv_id = start_chat(qtbot, hearth)
    dialog = open_model_page(qtbot, hearth)
    assert "installed" not in row_text(dialog, "Q4_0")
    hub.rate = 20_000_000  # bytes/s: a visible download, seconds long
    seen: list[float] = []
    hearth.models.bar.progress.valueChanged.connect(lambda v: seen.append(v / 1000))
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS) as done:
        choose(qtbot, dialog, "Q4_0")
        assert dialog.download_bar.isVisibleTo(dialog)  # progress in the dialog...
        assert hearth.models.bar.isVisibleTo(hearth.window)  # ...and above the composer
    assert done.args == [True]
    assert any(0 < f < 1 for f in seen), seen  # progress moved through the middle
    info = hearth.engine.model_info
    assert info is not None and info.quantization == "Q4_0"
    installed = data_dir / "models" / quants["Q4_0"].name
    assert installed.read_bytes() == quants["Q4_0"].read_bytes()
    assert "in use" in row_text(dialog, "Q4_0")
    assert hearth.conversations.current_id == conv_id
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "And now?")
    assert len(hearth.store.messages(conv_id)) == 4


def test_cancel_a_switch_mid_download_then_resume(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    catalog: list[CatalogEntry],
    hub: HubServer,
    quants: dict,
) -> None:
    hearth = launch(data_dir, catalog=catalog, hub_endpoint=hub.endpoint)
    dialog = open_model_page(qtbot, hearth)
    hub.rate = 4_000_000  # slow enough to cancel in the middle
    size = quants["Q4_0"].stat().st_size
    with qtbot.waitSignal(hearth.models.download_ended, timeout=REPLY_TIMEOUT_MS) as ended:
        choose(qtbot, dialog, "Q4_0")
        qtbot.waitUntil(lambda: dialog.download_bar.value() > 100, timeout=REPLY_TIMEOUT_MS)
        qtbot.mouseClick(dialog.cancel_download, Qt.MouseButton.LeftButton)
    assert ended.args == ["cancelled"]
    assert not dialog.download_bar.isVisibleTo(dialog)
    assert "paused" in dialog.download_label.text()
    info = hearth.engine.model_info
    assert info is not None and info.quantization == "Q4_1"  # still on the starter
    parts = list((data_dir / "models" / ".downloads").glob("*.incomplete"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < size
    assert not (data_dir / "models" / quants["Q4_0"].name).exists()
    # Choosing it again resumes from the part kept.
    hub.rate = None
    hub.requests.clear()
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS):
        choose(qtbot, dialog, "Q4_0")
    assert hearth.engine.model_info.quantization == "Q4_0"  # type: ignore[union-attr]
    ranges = [r.range_start for r in hub.gets(quants["Q4_0"].name)]
    assert ranges and ranges[0] is not None and ranges[0] > 0


def test_a_quantization_that_fails_to_load_falls_back(
    qtbot: QtBot, launch: Launch, data_dir: Path, catalog: list[CatalogEntry], quants: dict
) -> None:
    install(data_dir, quants["Q8_0"])
    install(data_dir, quants["Q6_K"])  # verified bytes, but not a loadable model
    hearth = launch(data_dir, catalog=catalog)
    dialog = open_model_page(qtbot, hearth)
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS):
        choose(qtbot, dialog, "Q8_0")
    conv_id = start_chat(qtbot, hearth)
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS) as done:
        choose(qtbot, dialog, "Q6_K")
    assert done.args == [False]
    info = hearth.engine.model_info
    assert info is not None and info.quantization == "Q8_0"  # back where it was
    banner = hearth.window.error_banner.label.text()
    assert "could not load" in banner and "went back to" in banner and "Q8_0" in banner
    saved = json.loads((data_dir / "config" / "settings.json").read_text())["values"]
    assert saved["model.quant"] == "Q8_0"  # the failed choice is not remembered
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Still there?")
    assert len(hearth.store.messages(conv_id)) == 4


def test_move_the_models_folder_then_keep_switching(
    qtbot: QtBot, launch: Launch, data_dir: Path, catalog: list[CatalogEntry], quants: dict
) -> None:
    install(data_dir, quants["Q8_0"])
    hearth = launch(data_dir, catalog=catalog)
    old = data_dir / "models"
    new = data_dir.parent / "bigger-disk" / "models"
    dialog = open_model_page(qtbot, hearth)
    assert dialog.folder_labels["models"].text() == str(old)
    assert dialog.findChild(QPushButton, "move_models_button") is not None
    seen = answer_next_dialog(qtbot, "Move")
    # The folder picker is Qt's own dialog; what it returns is this:
    dialog.move_models_requested.emit(str(new))
    assert seen and seen[0].startswith("Move ")
    qtbot.waitUntil(lambda: "now in" in hearth.models.bar.label.text(), timeout=REPLY_TIMEOUT_MS)
    assert sorted(p.name for p in new.glob("*.gguf")) == sorted(
        [quants["Q4_1"].name, quants["Q8_0"].name]
    )
    assert not list(old.glob("*.gguf"))
    assert dialog.folder_labels["models"].text() == str(new)
    # The file in use moved under the engine; switching still works, from the new folder.
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS) as done:
        choose(qtbot, dialog, "Q8_0")
    assert done.args == [True]
    assert Path(hearth.engine.model_info.path).parent == new  # type: ignore[union-attr]
    dialog.close()
    hearth.close()
    # The next start uses the new folder and does not copy the starter model back.
    again = launch(data_dir, catalog=catalog)
    assert Path(again.engine.model_info.path).parent == new  # type: ignore[union-attr]
    assert not list(old.glob("*.gguf"))


def test_a_models_folder_that_is_gone_is_said_and_the_default_used(
    qtbot: QtBot, launch: Launch, data_dir: Path, catalog: list[CatalogEntry]
) -> None:
    config = data_dir / "config"
    config.mkdir(parents=True)
    gone = data_dir.parent / "unplugged-disk" / "models"
    (config / "settings.json").write_text(
        json.dumps({"version": 1, "values": {"storage.models_dir": str(gone)}})
    )
    hearth = launch(data_dir, catalog=catalog)
    assert hearth.engine.model_info is not None  # the starter, from the default folder
    banner = hearth.window.error_banner.label.text()
    assert str(gone) in banner and "not available" in banner
    assert not gone.exists()  # not recreated empty on the wrong disk


def test_a_quantization_in_the_hugging_face_cache_is_used_without_downloading(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    catalog: list[CatalogEntry],
    quants: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.unit.test_library import hf_cache_file

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    name = quants["Q4_0"].name
    hf_cache_file(cache, REPO, name, quants["Q4_0"].read_bytes(), "c" * 40)
    # No Hub server at all: a download attempt would fail, so success means the cache.
    hearth = launch(data_dir, catalog=catalog, hub_endpoint="http://127.0.0.1:9")
    dialog = open_model_page(qtbot, hearth)
    # The cache is scanned off the GUI thread when the window opens; the row follows.
    qtbot.waitUntil(lambda: "in Hugging Face cache" in row_text(dialog, "Q4_0"))
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS) as done:
        choose(qtbot, dialog, "Q4_0")
    assert done.args == [True]
    assert hearth.engine.model_info.quantization == "Q4_0"  # type: ignore[union-attr]
    assert (data_dir / "models" / name).read_bytes() == quants["Q4_0"].read_bytes()


def test_import_a_file_of_ones_own_use_it_and_delete_it(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    catalog: list[CatalogEntry],
    quants: dict,
    tmp_path: Path,
) -> None:
    own = tmp_path / "downloads" / "my-finetune.gguf"
    own.parent.mkdir()
    own.write_bytes(quants["Q8_0"].read_bytes())
    junk = tmp_path / "downloads" / "notes.gguf"
    junk.write_text("not a model at all")
    hearth = launch(data_dir, catalog=catalog)
    dialog = open_model_page(qtbot, hearth)
    assert dialog.import_button.isVisibleTo(dialog)
    # The file picker is Qt's own dialog; what it returns is this:
    dialog.import_requested.emit(str(junk))
    assert "not a GGUF" in dialog.download_label.text() or "not a model" in (
        dialog.download_label.text()
    ), dialog.download_label.text()
    dialog.import_requested.emit(str(own))
    qtbot.waitUntil(lambda: "Imported" in dialog.download_label.text(), timeout=REPLY_TIMEOUT_MS)
    copied = data_dir / "models" / own.name
    assert copied.read_bytes() == own.read_bytes() and own.exists()  # a copy; theirs stays
    assert dialog.family_combo.currentText() == "Your own model files"
    assert "Auto" not in row_text_all(dialog)  # "Auto" picks within a catalog family only
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS) as done:
        choose(qtbot, dialog, str(copied))
    assert done.args == [True]
    assert Path(hearth.engine.model_info.path) == copied  # type: ignore[union-attr]
    saved = json.loads((data_dir / "config" / "settings.json").read_text())["values"]
    assert saved["model.path"] == str(copied)
    # In use: cannot be deleted. After switching away it can, with a confirmation.
    assert not dialog.delete_quant.isEnabled()
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData(FAMILY))
    dialog.family_combo.activated.emit(dialog.family_combo.currentIndex())
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS):
        choose(qtbot, dialog, "Q4_1")
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("files"))
    dialog.family_combo.activated.emit(dialog.family_combo.currentIndex())
    select(dialog, str(copied))
    assert dialog.delete_quant.isEnabled()
    seen = answer_next_dialog(qtbot, "Delete")
    qtbot.mouseClick(dialog.delete_quant, Qt.MouseButton.LeftButton)
    assert seen and "my-finetune.gguf" in seen[0]
    assert not copied.exists() and own.exists()


def test_try_again_after_a_damaged_download_keeps_the_chosen_quantization(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    catalog: list[CatalogEntry],
    hub: HubServer,
    quants: dict,
) -> None:
    # A family of its own (the starter's is another), chosen with "Auto", not installed:
    # the first-run offer proposes Auto's pick.
    catalog = [
        replace(e, family="smollm2-more", name="SmolLM2 (more)") if e.quantization != "Q4_1" else e
        for e in catalog
    ]
    (data_dir / "config").mkdir(parents=True)
    (data_dir / "config" / "settings.json").write_text(
        json.dumps({"version": 1, "values": {"model.family": "smollm2-more"}})
    )
    hearth = launch(data_dir, catalog=catalog, hub_endpoint=hub.endpoint)
    bar = hearth.models.bar
    assert "Q8_0" in bar.label.text()  # the first-run offer: Auto's pick (not installed)
    dialog = open_model_page(qtbot, hearth)
    hub.flip_byte(1000)  # the first download arrives damaged
    with qtbot.waitSignal(hearth.models.download_ended, timeout=REPLY_TIMEOUT_MS) as ended:
        choose(qtbot, dialog, "Q4_0")
    assert ended.args == ["failed"]
    assert "damaged" in bar.label.text() and "Q4_0" in bar.label.text()
    assert bar.download_button.text() == "Try again"
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS) as done:
        qtbot.mouseClick(bar.download_button, Qt.MouseButton.LeftButton)
    assert done.args == [True]
    saved = json.loads((data_dir / "config" / "settings.json").read_text())["values"]
    assert (saved["model.family"], saved["model.quant"]) == ("smollm2-more", "Q4_0")


def test_enter_on_a_quantization_uses_it(
    qtbot: QtBot, launch: Launch, data_dir: Path, catalog: list[CatalogEntry], quants: dict
) -> None:
    install(data_dir, quants["Q8_0"])
    hearth = launch(data_dir, catalog=catalog)
    dialog = open_model_page(qtbot, hearth)
    select(dialog, "Q8_0")
    dialog.quants.setFocus()
    with qtbot.waitSignal(hearth.models.switch_finished, timeout=REPLY_TIMEOUT_MS) as done:
        qtbot.keyClick(dialog.quants, Qt.Key.Key_Return)
    assert done.args == [True]
    assert hearth.engine.model_info.quantization == "Q8_0"  # type: ignore[union-attr]


class _OpenedUrls(QObject):
    """Receives what Hearth asks the desktop to open (Qt's own hook for file: URLs), so
    the test sees which folder "Open" opens without a file manager."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


def test_after_a_models_move_every_reader_of_the_folder_sees_the_new_one(
    qtbot: QtBot, launch: Launch, data_dir: Path, catalog: list[CatalogEntry], tmp_path: Path
) -> None:
    hearth = launch(data_dir, catalog=catalog)
    new = tmp_path / "bigger-disk" / "models"
    dialog = open_model_page(qtbot, hearth)
    answer_next_dialog(qtbot, "Move")
    dialog.move_models_requested.emit(str(new))
    # The copy is over before the GUI thread hears anything of it (R2): still heard.
    hearth.models.files.join()
    qtbot.waitUntil(lambda: not hearth.models.busy, timeout=REPLY_TIMEOUT_MS)
    assert "now in" in hearth.models.bar.label.text()
    assert hearth.folders.models_dir == new
    assert dialog.folder_labels[Folder.MODELS].text() == str(new)

    # Settings → Privacy & storage → Open (models folder) opens the new folder.
    opened = _OpenedUrls()
    QDesktopServices.setUrlHandler("file", opened, "open")  # type: ignore[arg-type]  # (stub: bytes)
    try:
        button = dialog.findChild(QPushButton, "open_models_folder")
        assert button is not None
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert opened.urls == [QUrl.fromLocalFile(str(new))]

    # About lists it.
    hearth.show_about()
    about = next(w for w in QApplication.topLevelWidgets() if isinstance(w, AboutDialog))
    assert new.as_uri() in about.folder_labels["Models"].text()
    about.close()

    # A later move of the chats shows (and keeps) the moved models folder.
    chats = tmp_path / "synced" / "chats"
    answer_next_dialog(qtbot, "Move")
    dialog.move_chats_requested.emit(str(chats))
    qtbot.waitUntil(lambda: dialog.folder_labels[Folder.CHATS].text() == str(chats))
    assert dialog.folder_labels[Folder.MODELS].text() == str(new)
    saved = json.loads((data_dir / "config" / "settings.json").read_text())["values"]
    assert (saved["storage.models_dir"], saved["storage.chats_dir"]) == (str(new), str(chats))
