"""The turn model (engine.history.turns) against a real SQLite store: what the model
reads of a chat, the same for the window and ``hearth chat``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.history.store import ChatStore
from engine.history.turns import (
    CONTINUABLE,
    ChatModel,
    ChatSettings,
    ThinkingMode,
    chat_settings,
    context_from_after,
    prompt_before,
    prompt_of,
    save_chat_settings,
    status_for,
    thinking_for,
    title_from,
)
from engine.history.types import MessageStatus
from engine.types import FinishReason, ModelInfo
from tests.unit.cipher_modes import both_ciphers

pytestmark = both_ciphers


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    s = ChatStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def _chat(store: ChatStore, *texts: str, system: str | None = None) -> int:
    """A chat of alternating questions and answers (``system``: stored as a message,
    as hearth chat did before the system prompt became a setting)."""
    conv = store.create_conversation("t")
    if system is not None:
        store.add_message(conv.id, "system", system)
    for i, text in enumerate(texts):
        store.add_message(conv.id, "user" if i % 2 == 0 else "assistant", text)
    return conv.id


def _read(store: ChatStore, conv_id: int) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in prompt_before(store, conv_id).messages]


def test_the_system_prompt_is_a_setting_read_first(store: ChatStore) -> None:
    conv = _chat(store, "Q1", "A1", "Q2")
    save_chat_settings(store, conv, ChatSettings(system_prompt="  Be brief. "))
    assert _read(store, conv) == [
        ("system", "Be brief."),
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
    ]
    assert prompt_before(store, conv).ids[0] is None  # a setting, not a message
    assert [m.role for m in store.messages(conv)] == ["user", "assistant", "user"]


def test_dropped_turns_are_not_read_but_stay_in_the_store(store: ChatStore) -> None:
    conv = _chat(store, "Q1", "A1", "Q2", "A2", "Q3")
    save_chat_settings(store, conv, ChatSettings(system_prompt="Sys"))
    # As the window drops them when the context is full: the two oldest messages.
    start = context_from_after(prompt_before(store, conv), 2)
    save_chat_settings(store, conv, chat_settings(store, conv).with_(context_from=start))
    assert _read(store, conv) == [
        ("system", "Sys"),
        ("user", "Q2"),
        ("assistant", "A2"),
        ("user", "Q3"),
    ]
    assert len(store.messages(conv)) == 5


def test_an_old_chats_stored_system_message_is_kept_also_past_dropped_turns(
    store: ChatStore,
) -> None:
    conv = _chat(store, "Q1", "A1", "Q2", system="Old sys")
    assert _read(store, conv)[0] == ("system", "Old sys")
    prompt = prompt_before(store, conv)
    assert prompt.n_system == 1
    save_chat_settings(store, conv, ChatSettings(context_from=context_from_after(prompt, 2)))
    assert _read(store, conv) == [("system", "Old sys"), ("user", "Q2")]
    # A system prompt set for the chat (in the window, or hearth chat --system) replaces it.
    save_chat_settings(store, conv, chat_settings(store, conv).with_(system_prompt="New"))
    assert _read(store, conv) == [("system", "New"), ("user", "Q2")]
    save_chat_settings(store, conv, chat_settings(store, conv).with_(system_prompt=""))
    assert _read(store, conv) == [("user", "Q2")]


def test_the_prompt_before_a_reply_ends_with_its_question_and_skips_empty_replies(
    store: ChatStore,
) -> None:
    conv = _chat(store, "Q1")
    store.add_message(conv, "assistant", "", MessageStatus.FAILED)  # nothing to read
    store.add_message(conv, "user", "Q2")
    reply = store.add_message(conv, "assistant", "", MessageStatus.STREAMING)
    prompt = prompt_before(store, conv, reply.id)
    assert [(m.role, m.content) for m in prompt.messages] == [("user", "Q1"), ("user", "Q2")]
    assert reply.id not in prompt.ids


def test_settings_round_trip_and_keep_what_a_newer_hearth_wrote(store: ChatStore) -> None:
    conv = _chat(store, "Q")
    store.set_conversation_settings(
        conv, {"system_prompt": "S", "thinking": False, "context_from": 7, "future": [1, 2]}
    )
    own = chat_settings(store, conv)
    assert (own.system_prompt, own.thinking, own.context_from) == ("S", False, 7)
    save_chat_settings(store, conv, own.with_(thinking=True))
    assert store.conversation_settings(conv) == {
        "system_prompt": "S",
        "thinking": True,
        "context_from": 7,
        "future": [1, 2],
    }
    # Wrong types (a hand-edited file) are read as unset, not trusted.
    bad = ChatSettings.from_json(
        {"system_prompt": 3, "thinking": "yes", "context_from": True, "model": ["x"]}
    )
    assert (bad.system_prompt, bad.thinking, bad.context_from, bad.model) == (None,) * 4


def test_a_chat_remembers_its_model(store: ChatStore) -> None:
    """The model a chat last used (issue 15) round-trips with the other keys kept."""
    conv = store.create_conversation("t").id
    store.set_conversation_settings(conv, {"thinking": True, "future": 1})
    on_server = ChatModel("connection:box", "big-model", "big-model · box")
    save_chat_settings(store, conv, chat_settings(store, conv).with_(model=on_server))
    assert store.conversation_settings(conv) == {
        "thinking": True,
        "future": 1,
        "model": {"source": "connection:box", "choice": "big-model", "name": "big-model · box"},
    }
    assert chat_settings(store, conv).model == on_server
    assert ChatSettings.from_json({"model": {"source": "", "choice": "x"}}).model is None


def _info(*, supports: bool, default: bool) -> ModelInfo:
    return ModelInfo(
        path="m.gguf",
        name="m",
        architecture="qwen35",
        quantization="F16",
        file_size=1,
        n_ctx=4096,
        n_ctx_train=4096,
        has_chat_template=True,
        template_source="gguf",
        supports_thinking=supports,
        thinking_default=default,
    )


def test_thinking_the_chats_choice_then_the_apps_mode_then_the_models_default() -> None:
    thinker = _info(supports=True, default=True)
    plain = _info(supports=False, default=False)
    unset, off = ChatSettings(), ChatSettings(thinking=False)
    assert thinking_for(off, ThinkingMode.ON, thinker) is False
    assert thinking_for(unset, ThinkingMode.ON, plain) is True
    assert thinking_for(unset, ThinkingMode.OFF, thinker) is False
    assert thinking_for(unset, ThinkingMode.MODEL, thinker) is True
    assert thinking_for(unset, ThinkingMode.MODEL, plain) is None
    assert thinking_for(unset, ThinkingMode.MODEL, None) is None
    # The settings file's values; an unknown one is the model's default.
    assert [ThinkingMode.of(v) for v in ("on", "off", "model", "sometimes", None)] == [
        ThinkingMode.ON,
        ThinkingMode.OFF,
        ThinkingMode.MODEL,
        ThinkingMode.MODEL,
        ThinkingMode.MODEL,
    ]


def test_status_titles_and_what_can_be_continued() -> None:
    assert status_for(FinishReason.STOP) is MessageStatus.COMPLETE
    assert status_for(FinishReason.LENGTH) is MessageStatus.LENGTH
    assert status_for(FinishReason.CANCELLED) is MessageStatus.STOPPED
    assert status_for(FinishReason.CONTEXT) is MessageStatus.CONTEXT
    assert {status_for(r) for r in FinishReason} - {MessageStatus.COMPLETE} <= CONTINUABLE
    assert MessageStatus.INTERRUPTED in CONTINUABLE and MessageStatus.FAILED not in CONTINUABLE
    assert title_from("  What   is\nthe weather?  ") == "What is the weather?"
    assert title_from("") == "New chat"
    long = title_from("word " * 30)
    assert long.endswith("…") and len(long) <= 49 and not long[:-1].endswith(" ")


def test_the_prompt_of_an_empty_chat_is_only_its_system_prompt() -> None:
    assert prompt_of([], ChatSettings()).messages == ()
    only = prompt_of([], ChatSettings(system_prompt="S"))
    assert [(m.role, m.content) for m in only.messages] == [("system", "S")]
    assert only.n_system == 1
