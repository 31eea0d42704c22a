"""Images in the window (issue 13): attach, paste, drop, remove, send, see them in the
chat and larger; bad files and a model that cannot see get a sentence and lose nothing.

The model is a ``ScriptedBackend`` that says it can see (a real vision model cannot be
loaded in the fast GUI tests; tests/unit/test_vision.py runs the real one): what is
tested here is the window, the store and the turn the model is given.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from engine.types import ImagePart
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, answer_next_dialog, send
from ui.attachment_html import IMAGE_SCHEME, OPEN_IMAGE_SCHEME
from ui.image_viewer import ImageViewer

WAIT_MS = 10_000  # reading a few small images
SHOTS = Path("/work/wt/shots/vision")


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int], fmt: str) -> Path:
    Image.new("RGB", size, color).save(path, fmt)
    return path


def pasted(qtbot: QtBot, hearth: HearthApp, image: QImage) -> None:
    """Ctrl+V of an image on the clipboard, as a screenshot tool leaves it."""
    QApplication.clipboard().setImage(image)
    composer = hearth.window.composer
    composer.setFocus()
    qtbot.keyClick(composer, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)


def dropped(hearth: HearthApp, *paths: Path, on_composer: bool = False) -> None:
    """Files dragged from the file manager and dropped on the chat (or the message
    box): enter, move and drop, through the window as the window system sends them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    window = hearth.window
    window.show()
    target = window.composer if on_composer else window.chat_view
    pos = target.mapTo(window, target.rect().center())
    args = (
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    handle = window.windowHandle()
    QApplication.sendEvent(handle, QDragEnterEvent(pos, *args))
    QApplication.sendEvent(handle, QDragMoveEvent(pos, *args))
    QApplication.sendEvent(handle, QDropEvent(QPointF(pos), *args))


def tray_keys(hearth: HearthApp) -> list[str]:
    return hearth.window.attachment_tray.keys()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_attach_paste_drop_remove_send_and_see_them(
    qtbot: QtBot, launch: Launch, data_dir: Path, tmp_path: Path, theme: str
) -> None:
    backend = ScriptedBackend(["A red square and a green one."], vision=True)
    hearth = launch(data_dir, backend=backend, theme=theme)
    window = hearth.window
    assert window.attach_button.isVisible() or not window.isVisible()
    assert not window.attach_button.isHidden()
    red = write_image(tmp_path / "red.png", (320, 200), (220, 30, 30), "PNG")
    green = write_image(tmp_path / "green.webp", (200, 300), (30, 200, 60), "WEBP")
    blue = write_image(tmp_path / "blue.jpg", (100, 100), (20, 40, 220), "JPEG")

    # The attach button opens a file dialog; the person picks red.png.
    qtbot.mouseClick(window.attach_button, Qt.MouseButton.LeftButton)
    dialog = window.findChild(QFileDialog, "attach_dialog")
    assert isinstance(dialog, QFileDialog) and dialog.isVisible()
    dialog.selectFile(str(red))
    dialog.accept()
    qtbot.waitUntil(lambda: len(tray_keys(hearth)) == 1, timeout=WAIT_MS)
    # A screenshot pasted from the clipboard, then two files dropped on the chat.
    shot = QImage(180, 120, QImage.Format.Format_RGB32)
    shot.fill(Qt.GlobalColor.yellow)
    pasted(qtbot, hearth, shot)
    qtbot.waitUntil(lambda: len(tray_keys(hearth)) == 2, timeout=WAIT_MS)
    assert window.composer.toPlainText() == ""  # never pasted as text
    dropped(hearth, green)
    qtbot.waitUntil(lambda: len(tray_keys(hearth)) == 3, timeout=WAIT_MS)
    dropped(hearth, blue, on_composer=True)
    qtbot.waitUntil(lambda: len(tray_keys(hearth)) == 4, timeout=WAIT_MS)
    assert window.attachment_tray.isVisible()
    # The pasted one goes again before sending.
    pasted_key = tray_keys(hearth)[1]
    qtbot.mouseClick(
        window.attachment_tray.tile(pasted_key).remove_button, Qt.MouseButton.LeftButton
    )
    assert len(tray_keys(hearth)) == 3

    window.resize(1000, 720)
    window.composer.setPlainText("What colours are these?")
    SHOTS.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SHOTS / f"composer-{theme}.png"))
    window.composer.clear()
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "What colours are these?")
    assert tray_keys(hearth) == [] and not window.attachment_tray.isVisible()

    # Stored with the question, in order; the model was given them, bytes and all.
    conv = hearth.conversations.current_id
    assert conv is not None
    question = hearth.store.messages(conv)[0]
    assert [p.name for p in question.attachments] == ["red.png", "green.webp", "blue.jpg"]
    assert [p.mime for p in question.attachments] == ["image/png", "image/webp", "image/jpeg"]
    images = backend.turns[0].messages[-1].images
    assert [i.name for i in images] == ["red.png", "green.webp", "blue.jpg"]
    assert images[0].data == red.read_bytes()

    # The chat shows their thumbnails (only these are loaded), and one opens larger.
    view = window.chat_view
    for part in question.attachments:
        thumb = view.loadResource(2, QUrl(f"{IMAGE_SCHEME}:{part.sha256}"))
        assert isinstance(thumb, QImage) and thumb.height() <= 240
    assert view.loadResource(2, QUrl(f"{IMAGE_SCHEME}:{'0' * 64}")) is None
    assert view.loadResource(2, QUrl("https://example.com/x.png")) is None
    window.grab().save(str(SHOTS / f"chat-{theme}.png"))
    view.anchorClicked.emit(QUrl(f"{OPEN_IMAGE_SCHEME}:{question.attachments[0].sha256}"))
    viewer = hearth.attachments.viewer
    assert isinstance(viewer, ImageViewer) and viewer.windowTitle() == "red.png"
    qtbot.waitUntil(viewer.isVisible)
    viewer.resize(500, 380)
    viewer.grab().save(str(SHOTS / f"viewer-{theme}.png"))
    viewer.close()


def test_bad_files_get_a_sentence_and_lose_nothing(
    qtbot: QtBot, launch: Launch, data_dir: Path, tmp_path: Path
) -> None:
    hearth = launch(data_dir, backend=ScriptedBackend([], vision=True))
    window = hearth.window
    window.composer.setPlainText("My words stay here")
    notes = tmp_path / "notes.png"  # named like an image, but it is text
    notes.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    whole = io.BytesIO()
    Image.effect_noise((300, 300), 50).convert("RGB").save(whole, "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    good = write_image(tmp_path / "ok.bmp", (40, 30), (1, 2, 3), "BMP")
    dropped(hearth, notes, empty, cut, good)
    qtbot.waitUntil(lambda: len(tray_keys(hearth)) == 1, timeout=WAIT_MS)
    said = hearth.notifier.texts()[-1]
    assert "“notes.png” is not an image Hearth can read" in said
    assert "“empty.png” is empty (0 bytes)" in said
    assert "“cut.png” is damaged or cut short" in said
    assert window.composer.toPlainText() == "My words stay here"


def test_one_attach_button_takes_images_and_documents_together(
    qtbot: QtBot, launch: Launch, data_dir: Path, tmp_path: Path
) -> None:
    """The images and the documents issues share one button: chosen together, the
    image waits in the tray for the model's eyes and the text file becomes a chip."""
    hearth = launch(data_dir, backend=ScriptedBackend([], vision=True))
    window = hearth.window
    assert "images" in window.attach_button.toolTip().lower()
    red = write_image(tmp_path / "red.png", (64, 64), (220, 30, 30), "PNG")
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nThe lighthouse keeper winds the clock at dusk.\n")
    qtbot.mouseClick(window.attach_button, Qt.MouseButton.LeftButton)
    dialog = window.findChild(QFileDialog, "attach_dialog")
    assert isinstance(dialog, QFileDialog) and dialog.isVisible()
    assert any("Images and documents" in f for f in dialog.nameFilters())
    dialog.filesSelected.emit([str(red), str(notes)])  # as the dialog does on Open
    dialog.close()
    qtbot.waitUntil(lambda: len(tray_keys(hearth)) == 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(window.attachments.chips()) == 1, timeout=WAIT_MS)
    chip_text = " ".join(label.text() for label in window.attachments.findChildren(QLabel))
    assert "notes.md" in chip_text and "red.png" not in chip_text


def test_a_model_that_cannot_see_says_so_and_offers_one_that_can(
    qtbot: QtBot, launch: Launch, data_dir: Path, tmp_path: Path
) -> None:
    hearth = launch(data_dir, backend=ScriptedBackend([], name="SmolLM2 135M Instruct"))
    window = hearth.window
    # One attach button for images and documents: for a model that cannot see, it
    # offers documents only (an image dropped anyway gets the question below).
    assert "images" not in window.attach_button.toolTip().lower()
    window.composer.setPlainText("Look at this")
    asked = answer_next_dialog(qtbot, "Cancel")
    dropped(hearth, write_image(tmp_path / "cat.png", (50, 50), (9, 9, 9), "PNG"))
    qtbot.waitUntil(lambda: bool(asked), timeout=WAIT_MS)
    assert asked[0] == (
        "SmolLM2 135M Instruct cannot see images; Qwen3.5 9B can. Switch to Qwen3.5 9B?"
    )
    assert hearth.notifier.texts()[-1] == (
        "SmolLM2 135M Instruct cannot see images; Qwen3.5 9B can. The images were not attached."
    )
    assert tray_keys(hearth) == [] and window.composer.toPlainText() == "Look at this"


def test_editing_a_question_brings_its_images_back(
    qtbot: QtBot, launch: Launch, data_dir: Path, tmp_path: Path
) -> None:
    backend = ScriptedBackend(["First.", "Second."], vision=True)
    hearth = launch(data_dir, backend=backend)
    dropped(hearth, write_image(tmp_path / "a.gif", (30, 30), (200, 0, 0), "GIF"))
    qtbot.waitUntil(lambda: len(tray_keys(hearth)) == 1, timeout=WAIT_MS)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "")  # images alone can be sent
    conv = hearth.conversations.current_id
    assert conv is not None
    question = hearth.store.messages(conv)[0]
    assert question.content == "" and question.attachments[0].name == "a.gif"
    hearth.replies.edit(question)
    assert tray_keys(hearth) == [question.attachments[0].sha256]
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Now with words")
    edited = hearth.store.messages(conv)[0]
    assert (edited.content, edited.variant_count) == ("Now with words", 2)
    assert isinstance(edited.attachments[0], ImagePart)
    assert edited.attachments == question.attachments  # the same stored file, once
