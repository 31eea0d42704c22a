"""The window's ToolsService (no Qt): nothing on by default, built-ins switched on, the
same tools offered to the meter and warm-up as to the reply, a server that will not
start reported in a sentence and left out."""

from __future__ import annotations

import threading
from pathlib import Path

from app.tools_service import ToolSettings, ToolsService
from engine.tools.permissions import Answer
from engine.types import Message, ToolCallPart, ToolSpec, Turn

TURN = Turn(messages=(Message("user", "Hi"),), cache_key=3)


class Secrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


def ask_once(_c: ToolCallPart, _s: ToolSpec | None, _stop: threading.Event) -> Answer:
    return Answer.ONCE


def test_nothing_is_on_by_default(tmp_path: Path) -> None:
    tools = ToolsService(tmp_path, Secrets())
    assert not tools.active
    assert tools.prepare(TURN, ask_once) is None
    assert tools.offered(TURN) == TURN
    assert list(tmp_path.iterdir()) == []  # and nothing was written


def test_builtins_offered_and_prepared_alike(tmp_path: Path) -> None:
    tools = ToolsService(tmp_path, Secrets())
    tools.set_settings(ToolSettings(builtin=("datetime", "calculator")))
    again = ToolsService(tmp_path, Secrets())  # kept in tools.json
    assert again.settings.builtin == ("datetime", "calculator")
    prepared = again.prepare(TURN, ask_once)
    assert prepared is not None and prepared.problems == ()
    assert prepared.turn.tools == again.offered(TURN).tools
    assert [t.name for t in prepared.turn.tools] == ["datetime", "calculator"]
    assert prepared.gate.chat == 3  # "allow in this chat" is this conversation's
    result = prepared.gate.run(
        ToolCallPart("1", "calculator", {"expression": "2+3"}), threading.Event()
    )
    assert result.content == "5"


def test_a_server_that_will_not_start_is_a_sentence(tmp_path: Path) -> None:
    tools = ToolsService(tmp_path, Secrets())
    tools.servers.add("gone", command="/nonexistent/mcp-thing")
    prepared = tools.prepare(TURN, ask_once)
    assert prepared is not None and prepared.turn.tools == ()
    (problem,) = prepared.problems
    assert "'gone'" in problem and "was not found" in problem
    assert "was not found" in tools.server_status("gone")


def test_damaged_settings_fall_back(tmp_path: Path) -> None:
    (tmp_path / "tools.json").write_text('{"builtin": ["calculator", "rm_rf"], "max_rounds": 0}')
    settings = ToolsService(tmp_path, Secrets()).settings
    assert settings.builtin == ("calculator",) and settings.max_rounds == 8
    (tmp_path / "tools.json").write_text("{not json")
    assert ToolsService(tmp_path, Secrets()).settings == ToolSettings()
