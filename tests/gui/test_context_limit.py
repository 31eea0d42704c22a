"""The context window in the app: a meter, a question before anything is dropped,
and dropped turns kept, marked, and remembered across a restart."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from engine.history.turns import chat_settings
from engine.history.types import MessageStatus
from engine.types import EngineOptions
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, answer_next_dialog, click_text, send
from ui.state import ResponseState

SMALL = EngineOptions(n_ctx=512)  # the smallest window Hearth allows, filled quickly
DIVIDER = "The model no longer sees the messages above."
LONG = "Tell me about the lighthouse, the boats, the river and the island again. "


def long_chat(hearth: HearthApp, turns: int) -> int:
    """A stored chat of ``turns`` long turns (about 60 tokens each), opened."""
    store = hearth.store
    conv = store.create_conversation("Long chat")
    for n in range(turns):
        store.add_message(conv.id, "user", f"Question {n}: " + LONG * 2)
        store.add_message(conv.id, "assistant", f"Answer {n}: the island is still there.")
    hearth.conversations.refresh_conversations()  # opens the newest: this one
    assert hearth.conversations.current_id == conv.id
    return conv.id


def meter_value(hearth: HearthApp) -> int:
    return hearth.window.chat_toolbar.meter.value()


def test_meter_after_a_reply_and_when_a_chat_is_opened(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir, options=SMALL)
    meter = hearth.window.chat_toolbar.meter
    # The chat measured once its reply is saved (while it streamed, the meter showed
    # the prompt plus the tokens so far: a different number on a slow machine).
    done = [hearth.replies.reply_ended, hearth.engine.usage_measured]
    with qtbot.waitSignals(done, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Hello there")
    first = meter_value(hearth)
    assert first > 0
    assert meter.maximum() == 512 and meter.property("warn") is False
    assert meter.format() == f"Context {first / 512:.0%}"

    long_id = long_chat(hearth, 7)  # about 430 tokens: past 80 %
    qtbot.waitUntil(lambda: meter_value(hearth) > first, timeout=REPLY_TIMEOUT_MS)
    assert meter.property("warn") is True, meter_value(hearth)
    assert "will soon no longer fit" in meter.toolTip()
    # Back to the short chat: the meter follows the chat shown.
    short = next(c for c in hearth.store.list_conversations() if c.id != long_id)
    hearth.window.conversation_selected.emit(short.id)
    qtbot.waitUntil(lambda: meter_value(hearth) == first, timeout=REPLY_TIMEOUT_MS)
    assert meter.property("warn") is False


def test_asks_then_drops_the_oldest_turns_keeping_them_in_the_chat(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir, options=SMALL)
    conv_id = long_chat(hearth, 12)  # about 750 tokens: already over the window
    # Over the limit (say, after the context size was lowered): shown, no crash.
    qtbot.waitUntil(lambda: meter_value(hearth) == 512, timeout=REPLY_TIMEOUT_MS)
    assert hearth.window.chat_toolbar.meter.text().startswith("Context full (1")  # 142%
    before = [m.id for m in hearth.store.messages(conv_id)]

    seen = answer_next_dialog(qtbot, "Drop the oldest turns (the system prompt stays)")
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "What happened next?")
    assert seen == ["This conversation no longer leaves the model room for a reply."]
    messages = hearth.store.messages(conv_id)
    # Nothing was deleted: every earlier message is still in the chat.
    assert [m.id for m in messages[:-2]] == before
    assert messages[-2].content == "What happened next?"
    assert messages[-1].status in (MessageStatus.COMPLETE, MessageStatus.LENGTH)
    first_read = chat_settings(hearth.store, conv_id).context_from
    assert first_read in before[2:] and hearth.store.message(first_read).role == "user"
    hearth.window.chat_view.show_earlier()  # the chat opens at its end; the person scrolls up
    text = hearth.window.chat_view.plain_text()
    assert DIVIDER in text
    assert text.index("Question 0:") < text.index(DIVIDER) < text.index("What happened next?")
    # The model was sent the system prompt and the turns from the divider on only.
    qtbot.waitUntil(lambda: 0 < meter_value(hearth) < 512, timeout=REPLY_TIMEOUT_MS)
    hearth.close()

    again = launch(data_dir, options=SMALL)  # a restart keeps the choice
    assert again.conversations.current_id == conv_id
    assert DIVIDER in again.window.chat_view.plain_text()
    qtbot.waitUntil(lambda: 0 < meter_value(again) < 512, timeout=REPLY_TIMEOUT_MS)
    # Search still finds a message the model no longer reads.
    assert any(h.message_id == before[0] for h in again.store.search("Question 0"))


def test_cancel_puts_the_question_back_and_new_chat_moves_it(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    hearth = launch(data_dir, options=SMALL)
    conv_id = long_chat(hearth, 12)
    before = [m.id for m in hearth.store.messages(conv_id)]
    composer = hearth.window.composer

    seen = answer_next_dialog(qtbot, "Cancel")
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Is it still there?")
    assert seen and [m.id for m in hearth.store.messages(conv_id)] == before
    assert composer.text() == "Is it still there?"
    assert chat_settings(hearth.store, conv_id).context_from is None

    answer_next_dialog(qtbot, "Start a new chat")
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        qtbot.keyClick(composer, Qt.Key.Key_Return)  # the same question, sent again
    # The question and its reply went to a new chat; the long one is unchanged.
    # (reply_ended came for the abandoned request; the new chat's reply follows.)
    qtbot.waitUntil(lambda: hearth.replies.state == ResponseState.IDLE, timeout=REPLY_TIMEOUT_MS)
    new_id = hearth.conversations.current_id
    assert new_id is not None and new_id != conv_id
    assert [m.id for m in hearth.store.messages(conv_id)] == before
    question, answer = hearth.store.messages(new_id)
    assert question.content == "Is it still there?" and answer.status != MessageStatus.STREAMING


def test_meter_past_the_window_stays_full_and_says_so_in_the_middle(qtbot: QtBot) -> None:
    """Reviewer: "Context 165%", its label drawn top left (the warning style sheet)."""
    from ui.chat_toolbar import ChatToolbar

    bar = ChatToolbar()
    qtbot.addWidget(bar)
    bar.show()
    meter = bar.meter
    bar.set_context(1650, 1000)
    assert meter.maximum() == 1000 and meter.value() == 1000  # capped
    assert meter.text() == "Context full (165%)"  # the real share
    assert meter.property("warn") is True
    assert meter.alignment() & Qt.AlignmentFlag.AlignHCenter
    assert meter.alignment() & Qt.AlignmentFlag.AlignVCenter
    assert "1,650 of 1,000 tokens" in meter.toolTip() and "no longer fits" in meter.toolTip()
    bar.set_context(1000, 1000, warn=False)  # exactly full is full whatever was measured
    assert meter.text() == "Context full (100%)" and meter.property("warn") is True
    bar.set_context(500, 1000)
    assert meter.text() == "Context 50%" and meter.property("warn") is False
    assert "no longer fits" not in meter.toolTip()


def test_a_reply_that_fills_the_window_says_so_and_continue_asks_first(
    qtbot: QtBot, launch: Launch, data_dir: Path
) -> None:
    """Stored as CONTEXT, not LENGTH: its note names the context window, and Continue
    (no room left to write on) asks the context question before anything else."""
    long = {"generation.max_tokens": 2000, "generation.temperature": 0.0}
    hearth = launch(data_dir, options=SMALL, sampling=long)
    conv_id = long_chat(hearth, 4)  # about 250 tokens: room for a reply, not for a long one
    view = hearth.window.chat_view
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Write a very long story about a lighthouse keeper.")
    cut = hearth.store.messages(conv_id)[-1]
    assert cut.status == MessageStatus.CONTEXT and cut.content
    text = view.plain_text()
    assert "Cut off: the conversation filled the model's context window." in text
    assert "reply length limit" not in text

    seen = answer_next_dialog(qtbot, "Cancel")
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        click_text(qtbot, view, "Continue…")
    assert seen == ["This conversation no longer leaves the model room for a reply."]
    kept = hearth.store.message(cut.id)
    assert kept is not None and (kept.status, kept.content) == (cut.status, cut.content)
    assert "filled the model's context window" in view.plain_text()


def test_meter_grows_while_a_reply_streams(qtbot: QtBot, launch: Launch, data_dir: Path) -> None:
    """Once a second the meter adds the tokens written so far to the prompt's."""
    long_reply = {"generation.max_tokens": 1000, "generation.temperature": 0.0}
    hearth = launch(data_dir, sampling=long_reply)
    window = hearth.window
    during: list[int] = []
    window.chat_toolbar.meter.valueChanged.connect(
        lambda v: during.append(v) if window.state == ResponseState.GENERATING else None
    )
    send(qtbot, hearth, "Write a very long story about a lighthouse keeper and the sea.")
    # Two updates while it writes: the prompt's share, then the prompt and the reply so far.
    qtbot.waitUntil(lambda: len(during) >= 2, timeout=REPLY_TIMEOUT_MS)
    assert during[-1] > during[0]
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
