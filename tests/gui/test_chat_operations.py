"""Working with a conversation: versions, edits, deletes, search, pins, undo, export."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from engine.history import export as export_module
from engine.history.turns import chat_settings
from engine.history.types import MessageStatus
from engine.types import FinishReason, GenerationStats, ReplyDone
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import (
    REPLY_TIMEOUT_MS,
    Launch,
    answer_next_dialog,
    click_text,
    send,
)
from ui.chat_focus import focused_link

_NO_STATS = GenerationStats(
    prompt_tokens=0, completion_tokens=0, ttft_s=0.0, tokens_per_s=0.0, elapsed_s=0.0
)


def reply_to(qtbot: QtBot, hearth: HearthApp, text: str) -> None:
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, text)


def test_regenerate_keeps_every_version(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    reply_to(qtbot, hearth, "Name a fruit.")
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    first = hearth.store.messages(conv_id)[-1]
    view = hearth.window.chat_view
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        click_text(qtbot, view, "Regenerate")
    second = hearth.store.messages(conv_id)[-1]
    assert second.id != first.id and (second.variant_index, second.variant_count) == (1, 2)
    assert "2/2" in view.plain_text()
    click_text(qtbot, view, "‹")  # back to the first version
    shown = hearth.store.messages(conv_id)[-1]
    assert shown.id == first.id and shown.content == first.content
    assert "1/2" in view.plain_text()


def test_stop_then_continue_grows_the_same_reply(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    long = {"generation.max_tokens": 2000, "generation.temperature": 0.0}
    hearth = launch(data_dir, sampling=long)
    window, view = hearth.window, hearth.window.chat_view
    send(qtbot, hearth, "Write a very long story about a lighthouse keeper.")
    qtbot.waitUntil(lambda: view.streamed_text_length() >= 40, timeout=REPLY_TIMEOUT_MS)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    question, cut = hearth.store.messages(conv_id)
    assert cut.status == MessageStatus.STOPPED and cut.content
    assert "Continue" in view.plain_text()

    hearth.settings.set("generation.max_tokens", 16)  # a short continuation, set as in
    hearth.settings_controller.apply_live("generation.max_tokens")  # Settings → Generation
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        click_text(qtbot, view, "Continue")
    messages = hearth.store.messages(conv_id)
    assert [m.id for m in messages] == [question.id, cut.id]  # still one reply
    grown = messages[-1]
    assert grown.content.startswith(cut.content) and len(grown.content) > len(cut.content)
    assert grown.status == MessageStatus.LENGTH and grown.variant_count == 1
    # Cut at the length limit this time: it can be continued again.
    assert "Continue" in view.plain_text()


def test_up_edits_the_last_question_as_a_new_version(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir)
    reply_to(qtbot, hearth, "What is two plus two?")
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    composer = hearth.window.composer
    composer.setFocus()
    qtbot.keyClick(composer, Qt.Key.Key_Up)  # empty composer: edit the last message
    assert composer.text() == "What is two plus two?"
    composer.clear()
    reply_to(qtbot, hearth, "What is three plus three?")
    question, answer = hearth.store.messages(conv_id)
    assert question.content == "What is three plus three?"
    assert (question.variant_index, question.variant_count) == (1, 2)
    assert answer.status != MessageStatus.STREAMING and answer.parent_id == question.id
    # The original question and its reply are still there as version 1.
    original = hearth.store.variants(question.id)[0]
    assert original.content == "What is two plus two?"


def test_delete_a_message_after_confirming(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    reply_to(qtbot, hearth, "Hello")
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    view = hearth.window.chat_view
    seen = answer_next_dialog(qtbot, "Cancel")
    click_text(qtbot, view, "Delete")  # the first Delete: under the question
    assert seen == ["Delete this message?"] and len(hearth.store.messages(conv_id)) == 2
    seen = answer_next_dialog(qtbot, "Delete")
    click_text(qtbot, view, "Delete")
    assert [m.role for m in hearth.store.messages(conv_id)] == ["assistant"]


def test_search_finds_and_opens_the_message(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    store = hearth.store
    for title, text in [("Birds", "The albatross glides for hours."), ("Fish", "Salmon swim")]:
        conv = store.create_conversation(title)
        store.add_message(conv.id, "user", text)
    hearth.conversations.refresh_conversations()  # re-list, as a restart would
    window = hearth.window
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.search_box.hasFocus()
    qtbot.keyClicks(window.search_box, "albatros")  # prefix of the last word matches
    qtbot.waitUntil(lambda: window.search_results.isVisible(), timeout=5_000)
    qtbot.waitUntil(lambda: window.search_results.count() == 1, timeout=5_000)
    window.search_results.itemClicked.emit(window.search_results.item(0))
    assert hearth.conversations.current_id == store.list_conversations()[1].id  # "Birds"
    assert window.chat_view.textCursor().selectedText() == "albatross"
    qtbot.keyClick(window.search_box, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: window.conversation_list.isVisible(), timeout=5_000)
    assert not window.search_results.isVisible()


def test_pin_undo_delete_and_copy_last_reply(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    hearth = launch(data_dir)
    reply_to(qtbot, hearth, "First chat")
    qtbot.mouseClick(hearth.window.new_chat_button, Qt.MouseButton.LeftButton)
    reply_to(qtbot, hearth, "Second chat")
    model = hearth.window.conversations
    older = model.conversation_at(1)
    hearth.window.conversation_list.pin_requested.emit(older.id, True)
    assert model.conversation_at(0).id == older.id and model.data(model.index(0)).startswith("📌")

    qtbot.keyClick(
        hearth.window,
        Qt.Key.Key_C,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    last = hearth.store.messages(hearth.conversations.current_id or -1)[-1]
    assert QGuiApplication.clipboard().text() == last.content

    hearth.window.conversation_list.setCurrentIndex(model.index(0))
    answer_next_dialog(qtbot, "Delete")
    qtbot.keyClick(hearth.window.conversation_list, Qt.Key.Key_Delete)
    assert model.rowCount() == 1
    undo = hearth.window._undo_button
    assert undo is not None and undo.isVisible()
    qtbot.mouseClick(undo, Qt.MouseButton.LeftButton)
    assert model.rowCount() == 2 and model.conversation_at(0).id == older.id


def test_export_then_import_round_trip(
    qtbot: QtBot,
    launch: Launch,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The file dialogs are not driven here: the test hands the paths a person would pick.
    hearth = launch(data_dir)
    reply_to(qtbot, hearth, "Keep this safe")
    said = hearth.notifier.texts
    # Which threads wrote the export and the import (the real functions run).
    threads: list[threading.Thread] = []

    def on_thread(name: str) -> None:
        real = getattr(export_module, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread())
            return real(*args, **kwargs)

        monkeypatch.setattr(export_module, name, recorded)

    on_thread("write_export")
    on_thread("import_json")
    exported = tmp_path / "chats.json"
    hearth.window.export_requested.emit(None, "json", str(exported))
    # A second export while the first is written is refused, with a sentence.
    markdown = tmp_path / "chats.md"
    hearth.window.export_requested.emit(hearth.conversations.current_id, "md", str(markdown))
    assert f"Hearth is still exporting to {exported}" in hearth.window.error_banner.label.text()
    qtbot.waitUntil(lambda: f"Exported to {exported}." in said(), timeout=10_000)
    hearth.window.export_requested.emit(hearth.conversations.current_id, "md", str(markdown))
    qtbot.waitUntil(lambda: f"Exported to {markdown}." in said(), timeout=10_000)
    assert "Keep this safe" in markdown.read_text()
    data = json.loads(exported.read_text())
    assert len(data["conversations"]) == 1
    hearth.window.import_requested.emit(str(exported))
    qtbot.waitUntil(lambda: hearth.window.conversations.rowCount() == 2, timeout=10_000)
    assert "Imported 1 conversation." in said()
    broken = tmp_path / "broken.json"
    broken.write_text("{ nope")
    hearth.window.import_requested.emit(str(broken))
    qtbot.waitUntil(
        lambda: "not a Hearth chat export" in hearth.window.error_banner.label.text(),
        timeout=10_000,
    )
    assert hearth.window.error_banner.isVisible()
    assert hearth.window.conversations.rowCount() == 2  # nothing half-imported
    # Off the GUI thread, every time: two exports, two imports.
    assert len(threads) == 4
    assert threading.main_thread() not in threads


def test_per_chat_system_prompt_and_thinking_switch_are_kept_with_the_chat(
    qtbot: QtBot, launch: Launch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ScriptedBackend(["Arr, hello."], supports_thinking=True)
    hearth = launch(tmp_path / "hearth-data", backend=backend)
    window = hearth.window
    # A person types a system prompt into the dialog (the dialog itself is Qt's).
    monkeypatch.setattr(window, "ask_system_prompt", lambda current: "Answer like a pirate.")
    qtbot.mouseClick(window.chat_toolbar.system, Qt.MouseButton.LeftButton)
    reply_to(qtbot, hearth, "Hello")
    (turn,) = backend.turns  # what the model read
    assert [(m.role, m.content) for m in turn.messages] == [
        ("system", "Answer like a pirate."),
        ("user", "Hello"),
    ]
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    assert chat_settings(hearth.store, conv_id).system_prompt == "Answer like a pirate."
    assert hearth.conversations.system_prompt() == "Answer like a pirate."
    assert window.chat_toolbar.thinking.isVisible()  # the model has a switch
    window.chat_toolbar.thinking.setChecked(True)
    assert chat_settings(hearth.store, conv_id).thinking is True
    # Another chat has its own settings.
    qtbot.mouseClick(window.new_chat_button, Qt.MouseButton.LeftButton)
    assert hearth.conversations.system_prompt() == ""
    assert hearth.conversations.thinking() is not True


@pytest.fixture(scope="module")
def qwen35_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random-weight hybrid test model with the real Qwen3.5 template (thinks)."""
    from tests.fixtures.qwen35 import build_qwen35_gguf

    return build_qwen35_gguf(tmp_path_factory.mktemp("qwen35") / "qwen35-tiny-F16.gguf")


def test_thinking_has_its_own_budget_and_a_reply_stopped_in_it_continues(
    qtbot: QtBot, launch: Launch, data_dir: Path, qwen35_path: Path
) -> None:
    budgets = {
        "generation.max_tokens": 16,  # the least Settings allows
        "generation.max_thinking_tokens": 6,
        "generation.temperature": 0.0,
    }
    hearth = launch(data_dir, model_path=str(qwen35_path), sampling=budgets)
    assert hearth.engine.model_info is not None
    assert hearth.engine.model_info.supports_thinking
    # Thinking that runs out of its budget is closed; the answer still gets its own.
    reply_to(qtbot, hearth, "Why is the sky blue?")
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    answered = hearth.store.messages(conv_id)[-1]
    assert answered.thinking and answered.content
    assert answered.content not in answered.thinking

    # A reply stopped while it was still thinking (as Stop leaves it): Continue
    # goes on thinking in the same message, then answers.
    store = hearth.store
    conv = store.create_conversation("Stopped in thought")
    store.add_message(conv.id, "user", "Why is the sky blue?")
    cut = store.add_message(
        conv.id, "assistant", "", MessageStatus.STOPPED, thinking="Light from the sun"
    )
    hearth.conversations.refresh_conversations()
    assert hearth.conversations.current_id == conv.id
    view = hearth.window.chat_view
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        click_text(qtbot, view, "Continue")
    _question, grown = store.messages(conv.id)
    assert grown.id == cut.id and grown.variant_count == 1
    assert grown.thinking.startswith("Light from the sun")
    assert len(grown.thinking) > len("Light from the sun")
    assert grown.content and grown.status in (MessageStatus.LENGTH, MessageStatus.COMPLETE)


def _shift_tab_to(qtbot: QtBot, hearth: HearthApp, href_start: str) -> None:
    """From the message box, Shift+Tab back into the chat until ``href_start`` has focus."""
    view = hearth.window.chat_view
    hearth.window.composer.setFocus()
    qtbot.waitUntil(hearth.window.composer.hasFocus)
    for _ in range(30):
        widget = QApplication.focusWidget()
        assert widget is not None
        qtbot.keyClick(widget, Qt.Key.Key_Tab, Qt.KeyboardModifier.ShiftModifier)
        link = focused_link(view) if view.hasFocus() else None
        if link and link[1].startswith(href_start):
            return
    pytest.fail(f"Shift+Tab never reached {href_start}")


def _focus_is_in_the_message_box(hearth: HearthApp) -> bool:
    view = hearth.window.chat_view
    return hearth.window.composer.hasFocus() and focused_link(view) is None


def test_after_each_message_action_the_focus_is_in_the_message_box(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    """Reviewer: after Regenerate the focus sat on the question's Delete link, so
    Enter opened the delete dialog."""
    # Each reply is cut at its length limit, so Continue is offered under it.
    cut = ReplyDone(FinishReason.LENGTH, _NO_STATS)
    backend = ScriptedBackend([["A banana", cut], ["An apple", cut], [" and a pear", cut]])
    hearth = launch(data_dir, backend=backend)
    reply_to(qtbot, hearth, "Name a fruit.")
    conv_id = hearth.conversations.current_id
    assert conv_id is not None
    replies, composer = hearth.replies, hearth.window.composer

    for action in ("regenerate/", "continue/"):
        _shift_tab_to(qtbot, hearth, f"hearth-action:{action}")
        with qtbot.waitSignal(replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
            qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
            assert _focus_is_in_the_message_box(hearth), action  # while it streams
        assert _focus_is_in_the_message_box(hearth), action  # and after

    _shift_tab_to(qtbot, hearth, "hearth-action:prev/")  # the first version again
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    assert hearth.store.messages(conv_id)[-1].variant_index == 0
    assert _focus_is_in_the_message_box(hearth)

    reply = hearth.store.messages(conv_id)[-1]
    _shift_tab_to(qtbot, hearth, f"hearth-action:delete/{reply.id}")
    answer_next_dialog(qtbot, "Cancel")
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: QApplication.activeModalWidget() is None)
    hearth.window.activateWindow()  # the offscreen platform does not do it itself
    view = hearth.window.chat_view
    qtbot.waitUntil(view.hasFocus)  # cancelled: back on the link
    assert hearth.store.message(reply.id) is not None
    link = focused_link(view)
    assert link is not None and link[1] == f"hearth-action:delete/{reply.id}"
    answer_next_dialog(qtbot, "Delete")
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: hearth.store.message(reply.id) is None)
    qtbot.waitUntil(lambda: QApplication.activeModalWidget() is None)
    hearth.window.activateWindow()
    qtbot.waitUntil(lambda: _focus_is_in_the_message_box(hearth))

    _shift_tab_to(qtbot, hearth, "hearth-action:edit/")
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)
    assert _focus_is_in_the_message_box(hearth) and composer.text() == "Name a fruit."
