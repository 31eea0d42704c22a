"""One turn model: a chat made in the window and continued with ``hearth chat
--conversation N`` reads the same prompt, rendered by the model's real chat template.

The window's side is built here with the functions of ``engine.history.turns`` the
window builds its replies on (a new chat's settings, the chat's own system prompt,
turns dropped when the context was full), not through the window itself: the
window's controller is being rebuilt, and what must agree is what reaches the
model. The command line runs as a separate process, as a person runs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.history.store import ChatStore
from engine.history.turns import (
    ChatSettings,
    ThinkingMode,
    chat_settings,
    context_from_after,
    prompt_before,
    save_chat_settings,
    thinking_for,
    title_from,
)
from engine.history.types import MessageStatus
from engine.inference.session import ChatSession
from engine.types import EngineOptions
from tests.fixtures.qwen35 import build_qwen35_gguf
from tests.integration.test_cli import hearth

STARTER = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "And what about the moon?"


@pytest.fixture(scope="module")
def qwen35_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_qwen35_gguf(tmp_path_factory.mktemp("qwen35") / "qwen35-tiny-F16.gguf")


def _write_settings(data_dir: Path, values: dict[str, object]) -> None:
    config = data_dir / "config"
    config.mkdir(exist_ok=True)
    (config / "settings.json").write_text(json.dumps({"version": 1, "values": values}))


def _window_chat(data_dir: Path) -> int:
    """A chat as the window makes it: created with the Settings' system prompt as its
    own setting, three turns (one reply with thinking), then the person sets this
    chat's system prompt, and the two oldest messages are dropped when the context
    is full (the window's "Drop the oldest turns")."""
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        first = "Tell me about the sun."
        conv = store.create_conversation(title_from(first), title_is_auto=True)
        save_chat_settings(store, conv.id, ChatSettings(system_prompt="From Settings."))
        turns = [
            (first, "DROPPED-ANSWER about the sun.", ""),
            ("Is it hot?", "Very hot.", "The person asks about heat."),
            ("How far away is it?", "About 150 million km.", ""),
        ]
        for question, answer, thought in turns:
            store.add_message(conv.id, "user", question)
            store.add_message(conv.id, "assistant", answer, thinking=thought)
        own = chat_settings(store, conv.id).with_(system_prompt="Answer like an astronomer.")
        save_chat_settings(store, conv.id, own)
        dropped_from = context_from_after(prompt_before(store, conv.id), 2)
        save_chat_settings(store, conv.id, own.with_(context_from=dropped_from))
        return conv.id
    finally:
        store.close()


def _window_prompt(data_dir: Path, conv_id: int, reply_id: int, session: ChatSession) -> str:
    """What the window sends the model for reply ``reply_id``, rendered."""
    settings = json.loads((data_dir / "config" / "settings.json").read_text())["values"]
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        prompt = prompt_before(store, conv_id, reply_id)
        mode = ThinkingMode.of(settings.get("generation.thinking", "model"))
        thinking = thinking_for(chat_settings(store, conv_id), mode, session.info)
    finally:
        store.close()
    return session.render_prompt(prompt.messages, thinking=thinking)


def _messages(data_dir: Path, conv_id: int) -> list[tuple[int, str, MessageStatus]]:
    store = ChatStore(data_dir / "hearth.sqlite3")
    try:
        return [(m.id, m.role, m.status) for m in store.messages(conv_id)]
    finally:
        store.close()


@pytest.fixture(params=["starter", "qwen35"])
def model(
    request: pytest.FixtureRequest, starter_models_dir: Path, qwen35_path: Path
) -> Iterator[tuple[list[str], ChatSession]]:
    """(the model flags hearth chat is given, the same model loaded here to render)."""
    if request.param == "starter":  # the model chosen in Settings: none, the starter
        path, flags = starter_models_dir / STARTER, []
    else:  # a model that thinks, with the switch its template has
        path = qwen35_path
        flags = ["--model", str(path)]
    session = ChatSession(path, EngineOptions(n_ctx=2048))
    yield flags, session
    session.close()


@pytest.mark.parametrize("thinking_mode", ["off", "model"])
def test_a_window_chat_continued_on_the_command_line_reads_the_same_prompt(
    data_dir: Path, model: tuple[list[str], ChatSession], thinking_mode: str
) -> None:
    flags, session = model
    _write_settings(
        data_dir,
        {"generation.system_prompt": "From Settings.", "generation.thinking": thinking_mode},
    )
    conv = _window_chat(data_dir)
    before = _messages(data_dir, conv)

    shown = hearth(
        "chat", *flags, "--conversation", str(conv), "--show-prompt", QUESTION, data_dir=data_dir
    )
    assert shown.returncode == 0, shown.stderr
    assert _messages(data_dir, conv) == before  # --show-prompt saves nothing

    ran = hearth(
        "chat",
        *flags,
        "--json",
        "--max-tokens",
        "4",
        "--conversation",
        str(conv),
        QUESTION,
        data_dir=data_dir,
    )
    assert ran.returncode == 0, ran.stderr
    stats = json.loads(ran.stdout.rstrip("\n").split("\n")[-1])
    (*_, (question_id, question_role, _), (reply_id, reply_role, status)) = _messages(
        data_dir, conv
    )
    assert (question_role, reply_role) == ("user", "assistant")
    assert status in (MessageStatus.COMPLETE, MessageStatus.LENGTH)

    # The window, sending QUESTION, stores it and an empty reply and reads this:
    window = _window_prompt(data_dir, conv, reply_id, session)
    assert shown.stdout == window
    assert stats["prompt_tokens"] == len(session.tokenize(window))  # and the run read it too
    # ...which has this chat's own system prompt, once, and not the dropped turns.
    assert window.count("Answer like an astronomer.") == 1
    assert "From Settings." not in window and "DROPPED-ANSWER" not in window
    assert "Tell me about the sun." not in window
    assert "Is it hot?" in window and QUESTION in window
    if flags and thinking_mode == "off":  # the Settings' thinking mode reached the template
        assert window.endswith("<think>\n\n</think>\n\n")
    elif flags:
        assert window.endswith("<think>\n")
    assert question_id > before[-1][0]
