"""The whole path of a message: window → engine thread → llama.cpp → SQLite → window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from engine.history.store import ChatStore
from engine.history.types import MessageStatus
from engine.types import FinishReason, ReplyDone
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, answer_next_dialog, send
from ui.state import ResponseState


def words(text: str) -> str:
    """Text as a person reads it: rendered Markdown folds whitespace."""
    return " ".join(text.split())


def _stored(data_dir: Path) -> ChatStore:
    return ChatStore(data_dir / "hearth.sqlite3")


def test_first_launch_installs_starter_model_and_chats(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    # A truly empty data folder: Hearth must install the starter model itself.
    data_dir = tmp_path / "fresh"
    hearth = launch(data_dir)
    window = hearth.window
    assert window.state == ResponseState.IDLE, window.error_banner.label.text()
    assert (data_dir / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    assert "Q4_1" in window.status_model.text()
    # Where the model runs follows its name: the CPU here (a GPU build says "GPU · k/n layers").
    info = hearth.engine.model_info
    assert info is not None
    device = info.extra["device"]
    assert device.split(" · ")[0] in ("CPU", "GPU")
    assert window.status_model.text().endswith(f" · {device}")

    deltas: list[str] = []
    hearth.engine.delta_ready.connect(lambda _rid, text: deltas.append(text))
    assert not window.send_button.isEnabled()  # nothing typed yet
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Hello! What is the capital of France?")
        assert window.state == ResponseState.GENERATING
        assert window.send_button.text() == "Stop"
        assert window.composer.text() == ""  # the message left the composer
    assert len(deltas) >= 2, "the reply should arrive in several pieces"
    reply = "".join(deltas)
    assert reply.strip()
    assert window.state == ResponseState.IDLE and window.send_button.text() == "Send"
    assert words(reply) in words(window.chat_view.plain_text())
    assert "tokens/s" in window.status_speed.text()
    assert window.status_memory.text().startswith("Memory:")

    # The exchange is in the database, and the conversation in the sidebar.
    assert window.conversations.rowCount() == 1
    hearth.close()
    store = _stored(data_dir)
    try:
        (conv,) = store.list_conversations()
        assert conv.title.startswith("Hello! What is the capital")
        user, assistant = store.messages(conv.id)
        assert (user.role, user.content) == ("user", "Hello! What is the capital of France?")
        assert assistant.role == "assistant" and assistant.content == reply
        assert assistant.status in (MessageStatus.COMPLETE, MessageStatus.LENGTH)
        assert assistant.model == info.path and user.model == ""  # which model wrote it
    finally:
        store.close()


def test_stop_mid_reply_ends_it_and_keeps_the_partial_text(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    # The real sampling path: the model's defaults with what Settings set on top.
    hearth = launch(data_dir, sampling={"generation.max_tokens": 2000})
    window = hearth.window
    pieces: list[str] = []
    ends: list[ReplyDone] = []
    hearth.engine.delta_ready.connect(lambda _rid, text: pieces.append(text))
    hearth.engine.reply_finished.connect(lambda _rid, done: ends.append(done))
    send(qtbot, hearth, "Write a very long story about a lighthouse keeper.")
    qtbot.waitUntil(lambda: len(pieces) >= 5, timeout=REPLY_TIMEOUT_MS)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)
        assert window.state == ResponseState.STOPPING
    # Stopped by the person, long before its 2,000 tokens (bench/ measures how fast).
    (done,) = ends
    assert done.reason is FinishReason.CANCELLED
    assert done.stats.completion_tokens < 2000
    assert window.state == ResponseState.IDLE and window.send_button.text() == "Send"
    assert "Stopped." in window.chat_view.plain_text()

    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    hearth.close()
    store = _stored(data_dir)
    try:
        reply = store.messages(conv_id)[-1]
        assert reply.status == MessageStatus.STOPPED
        assert reply.content == "".join(pieces) and reply.content.strip()
    finally:
        store.close()


def test_conversations_survive_a_restart(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    window = hearth.window
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "First conversation")
    qtbot.mouseClick(window.new_chat_button, Qt.MouseButton.LeftButton)
    assert window.chat_view.plain_text() == ""
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Second conversation")
    second_reply = hearth.store.messages(hearth.conversations.current_id or -1)[-1].content
    hearth.close()
    window.close()

    again = launch(data_dir)
    model = again.window.conversations
    titles = [model.conversation_at(row).title for row in range(model.rowCount())]
    assert titles == ["Second conversation", "First conversation"]  # newest first
    # The newest conversation is open, with both of its messages.
    text = words(again.window.chat_view.plain_text())
    assert "Second conversation" in text and words(second_reply) in text
    # Selecting the older one shows it.
    again.window.conversation_list.setCurrentIndex(model.index(1))
    assert "First conversation" in again.window.chat_view.plain_text()


def test_rename_and_delete_with_confirmation(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    window = hearth.window
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Plans for the weekend")
    model = window.conversations
    index = model.index(0)
    assert model.setData(index, "  Weekend  ")
    assert model.data(index) == "Weekend"
    assert hearth.store.list_conversations()[0].title == "Weekend"

    # Delete asks first; Cancel keeps the conversation.
    window.conversation_list.setCurrentIndex(index)
    seen = answer_next_dialog(qtbot, "Cancel")
    qtbot.keyClick(window.conversation_list, Qt.Key.Key_Delete)
    assert seen == ["Delete “Weekend”?"]
    assert model.rowCount() == 1 and len(hearth.store.list_conversations()) == 1

    seen = answer_next_dialog(qtbot, "Delete")
    qtbot.keyClick(window.conversation_list, Qt.Key.Key_Delete)
    assert seen == ["Delete “Weekend”?"]
    assert model.rowCount() == 0
    assert hearth.store.list_conversations() == []
    assert window.chat_view.plain_text() == ""


def test_composer_shift_enter_is_a_newline(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    composer = hearth.window.composer
    qtbot.keyClicks(composer, "line one")
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "line two")
    assert composer.text() == "line one\nline two"
    assert hearth.window.state == ResponseState.IDLE
    assert hearth.store.list_conversations() == []


def test_a_model_that_will_not_load_gives_a_sentence_and_the_starter_model(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    broken = data_dir / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)
    hearth = launch(data_dir, model_path=str(broken))
    window = hearth.window
    # Hearth falls back to the starter model so the person can go on chatting...
    assert window.state == ResponseState.IDLE
    assert hearth.engine.model_info is not None
    assert hearth.engine.model_info.quantization == "Q4_1"
    # ...and says what happened, in a sentence.
    assert window.error_banner.isVisible()
    message = window.error_banner.label.text()
    assert "broken.gguf" in message and "starter model instead" in message
    assert "Traceback" not in message
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "hello?")


def test_a_chosen_model_file_that_is_gone_is_said_at_start(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    import json

    gone = data_dir / "elsewhere" / "mine.gguf"
    (data_dir / "config").mkdir(parents=True)
    (data_dir / "config" / "settings.json").write_text(
        json.dumps({"version": 1, "values": {"model.path": str(gone)}})
    )
    hearth = launch(data_dir)
    assert hearth.window.state == ResponseState.IDLE  # on the starter model
    message = hearth.window.error_banner.label.text()
    assert str(gone) in message and "not there any more" in message


def test_a_prompt_longer_than_the_context_is_explained(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    from engine.types import EngineOptions

    hearth = launch(data_dir, options=EngineOptions(n_ctx=256, n_batch=256, n_ubatch=256))
    window = hearth.window
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        hearth.window.composer.setPlainText("word " * 600)
        qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)
    assert window.error_banner.isVisible()
    assert "context" in window.error_banner.label.text()
    assert window.state == ResponseState.IDLE  # the app keeps running
    # The person's message is kept even though no reply came.
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    assert hearth.store.messages(conv_id)[0].content.startswith("word word")


def test_key_widgets_have_names_for_tests_and_screen_readers(
    launch: Launch, data_dir: Path
) -> None:
    window = launch(data_dir).window
    from PySide6.QtWidgets import QWidget

    expected = {
        "composer": "Message",
        "send_button": "Send",
        "chat_view": "Conversation",
        "conversation_list": "Conversations",
        "new_chat_button": "New chat",
        "settings_button": "Settings",
        "status_model": "Model",
    }
    for name, accessible in expected.items():
        widget = window.findChild(QWidget, name)
        assert widget is not None, name
        assert widget.accessibleName() == accessible


def test_ctrl_q_quits_and_keeps_the_chat(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Keep this")
    qtbot.keyClick(hearth.window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert not hearth.window.isVisible()
    assert hearth.closed  # the reply saved, the model freed, the database closed
    again = launch(data_dir)
    assert [c.title for c in again.store.list_conversations()] == ["Keep this"]
