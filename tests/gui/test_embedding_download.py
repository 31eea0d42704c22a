"""The optional embedding model from the window (issue 14): a document chip read by
passages offers it ("Get it"), the Model page lists it with its size, it downloads
through the same verified, resumable path as a chat model, is used at once (no
restart), and can be deleted.

Real parts: the window, the store, huggingface_hub against a Hub-protocol server on
127.0.0.1 (tests/hubserver.py: the real Hub cannot be reached here), and llama.cpp
loading a real embedding model. The catalog's BGE small GGUF cannot be had offline,
so the server serves, under its name, all-MiniLM-L6-v2 converted to GGUF at test time
(tests/fixtures/minilm_gguf.py): another small BERT embedding model, real weights.
The chat model is a ScriptedBackend (the chat is beside the point here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from engine.models.embedding_models import embedding_entries
from tests.fakes.scripted import ScriptedBackend
from tests.fixtures.minilm_gguf import minilm_gguf
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, answer_next_dialog
from tests.gui.test_documents_window import _chips, _drop_and_wait, manual_pdf
from tests.hubserver import HubServer
from ui.embedding_section import EmbeddingSection
from ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.model  # llama.cpp loads the embedding model


@pytest.fixture
def hub() -> Iterator[HubServer]:
    entry = embedding_entries()[0]
    assert entry.repo is not None
    with HubServer() as server:
        server.add_file(entry.repo, entry.filename, minilm_gguf().read_bytes())
        yield server


def _section(qtbot: QtBot, dialog: SettingsDialog) -> EmbeddingSection:
    section = dialog.findChild(EmbeddingSection)
    assert section is not None
    return section


def _state(section: EmbeddingSection) -> str:
    item = section.list.topLevelItem(0)
    assert item is not None
    return item.text(2)


def test_get_it_downloads_the_embedding_model_which_is_used_at_once_and_can_be_deleted(
    qtbot: QtBot, launch: Launch, tmp_path: Path, hub: HubServer
) -> None:
    data = tmp_path / "data"
    hearth = launch(data, backend=ScriptedBackend(["ok"], n_ctx=2048), hub_endpoint=hub.endpoint)
    qtbot.waitUntil(lambda: hearth.documents._embedder_job is not None, timeout=5_000)
    assert hearth.documents.embedder is None  # none installed: words only
    # A long PDF is read by passages: the chip says what an embedding model adds.
    # 4 pages (~2,500 tokens, 12 passages) do not fit 60% of a 2,048-token context.
    chip = _drop_and_wait(qtbot, hearth, manual_pdf(tmp_path / "manual.pdf", 4))
    assert chip._mode.text() == "Auto: passages"
    get_it = chip._get_embedding
    assert get_it.isVisibleTo(chip) and "other words" in chip.toolTip()
    entry = embedding_entries()[0]
    with qtbot.waitSignal(hearth.models.download_ended, timeout=REPLY_TIMEOUT_MS) as ended:
        qtbot.mouseClick(get_it, Qt.MouseButton.LeftButton)
    assert ended.args == ["done"]
    target = data / "models" / entry.filename
    assert target.read_bytes() == minilm_gguf().read_bytes()  # verified and in place
    # Used without a restart: loaded, the chip's offer gone, the stored PDF embedded.
    qtbot.waitUntil(lambda: hearth.documents.embedder is not None, timeout=REPLY_TIMEOUT_MS)
    assert not get_it.isVisibleTo(chip)
    assert hearth.documents.vector_ranking() is not None
    (doc_id,) = hearth.store.document_ids()
    qtbot.waitUntil(
        lambda: not hearth.store.unembedded(doc_id, entry.filename, 1), timeout=REPLY_TIMEOUT_MS
    )
    said = hearth.notifier.texts()
    assert any(f"{entry.filename} is in use" in t and "by meaning" in t for t in said), said
    assert len(_chips(hearth)) == 1
    # The Model page lists it, in use, and deletes it.
    qtbot.mouseClick(hearth.window.settings_button, Qt.MouseButton.LeftButton)
    dialog = hearth.settings_controller.dialog
    assert dialog is not None
    section = _section(qtbot, dialog)
    assert _state(section) == "In use"
    assert section.delete_button.isEnabled() and not section.download_button.isEnabled()
    answered = answer_next_dialog(qtbot, "Delete")
    qtbot.mouseClick(section.delete_button, Qt.MouseButton.LeftButton)
    assert answered and "Documents are then searched by their words only" in answered[0]
    qtbot.waitUntil(lambda: not target.exists(), timeout=REPLY_TIMEOUT_MS)  # closed, deleted
    assert hearth.documents.embedder is None and hearth.documents.vector_ranking() is None
    qtbot.waitUntil(lambda: _state(section) == "Not downloaded", timeout=5_000)
    assert section.download_button.text() == "Download (about 21 MB)"


def test_the_model_page_downloads_it_resumably(
    qtbot: QtBot, launch: Launch, tmp_path: Path, hub: HubServer
) -> None:
    data = tmp_path / "data"
    hearth = launch(data, backend=ScriptedBackend(["ok"]), hub_endpoint=hub.endpoint)
    qtbot.mouseClick(hearth.window.settings_button, Qt.MouseButton.LeftButton)
    dialog = hearth.settings_controller.dialog
    assert dialog is not None
    section = _section(qtbot, dialog)
    names = [section.list.topLevelItem(i).text(0) for i in range(section.list.topLevelItemCount())]  # type: ignore[union-attr]
    assert names[0].startswith("BGE small") and len(names) == len(embedding_entries())
    assert _state(section) == "Not downloaded"
    # Cancelled half-way: the part is kept, and Download goes on from it.
    hub.rate = 4_000_000
    with qtbot.waitSignal(hearth.models.download_ended, timeout=REPLY_TIMEOUT_MS) as ended:
        qtbot.mouseClick(section.download_button, Qt.MouseButton.LeftButton)
        assert _state(section) == "Downloading…"
        qtbot.waitUntil(lambda: dialog.download_bar.value() > 100, timeout=REPLY_TIMEOUT_MS)
        qtbot.mouseClick(dialog.cancel_download, Qt.MouseButton.LeftButton)
    assert ended.args == ["cancelled"]
    assert _state(section).startswith("Paused (")
    assert hearth.documents.embedder is None
    hub.rate = None
    hub.requests.clear()
    with qtbot.waitSignal(hearth.models.download_ended, timeout=REPLY_TIMEOUT_MS) as ended:
        qtbot.mouseClick(section.download_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["done"]
    entry = embedding_entries()[0]
    ranges = [r.range_start for r in hub.gets(entry.filename)]
    assert ranges and ranges[0] is not None and ranges[0] > 0  # resumed, not started over
    qtbot.waitUntil(lambda: hearth.documents.embedder is not None, timeout=REPLY_TIMEOUT_MS)
    qtbot.waitUntil(lambda: _state(section) == "In use", timeout=5_000)
    # Not a chat model: never among "your own model files".
    assert all(own.path.name != entry.filename for own in hearth.models.service.own_files())
