"""``hearth mcp add|list|remove|import`` through main(), with the real mcp-server-time
from PyPI (started by ``list``), and ``hearth chat`` refusing an unknown tool."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from app.main import main

TIME = shutil.which("mcp-server-time") or str(Path(sys.executable).with_name("mcp-server-time"))


def test_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert main([*data, "mcp", "list"]) == 0
    assert "No tool servers" in capsys.readouterr().out
    assert main([*data, "mcp", "add", "time", "--", TIME]) == 0
    assert main([*data, "mcp", "add", "time", "--", TIME]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main([*data, "mcp", "list"]) == 0
    out = capsys.readouterr().out
    assert "time  (stdio:" in out and "get_current_time - " in out and "convert_time" in out
    assert main([*data, "mcp", "remove", "time"]) == 0
    assert main([*data, "mcp", "remove", "time"]) == 1
    assert "no tool server 'time'" in capsys.readouterr().err


def test_add_takes_its_options_before_or_after_the_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert main([*data, "mcp", "add", "web", "--url", "http://127.0.0.1:9/mcp"]) == 0
    assert main([*data, "mcp", "add", "--url", "http://127.0.0.1:9/other", "web2"]) == 0
    assert main([*data, "mcp", "add", "echo", "--", "echo", "--", "x"]) == 0
    saved = json.loads((tmp_path / "config" / "mcp_servers.json").read_text())
    text = json.dumps(saved)
    assert "http://127.0.0.1:9/mcp" in text and "http://127.0.0.1:9/other" in text
    assert '"--", "x"' in text  # the command's own -- stays
    assert main([*data, "mcp", "add", "bad", "--verbose", "uvx"]) == 2
    assert "put the server's command after --" in capsys.readouterr().err


def test_import_and_a_broken_server_in_the_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "mcp.json"
    file.write_text(json.dumps({"mcpServers": {"gone": {"command": "/nonexistent/x"}}}))
    data = ["--data-dir", str(tmp_path)]
    assert main([*data, "mcp", "import", str(file)]) == 0
    assert "Added 1 tool server(s): gone." in capsys.readouterr().out
    assert main([*data, "mcp", "list"]) == 1
    assert "was not found" in capsys.readouterr().out


def test_chat_names_the_builtin_tools_when_one_is_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from argparse import Namespace

    from app.cli_tools import open_tools
    from app.paths import resolve_paths

    args = Namespace(tools="time,weather", mcp=[], allow=[])
    with pytest.raises(ValueError, match="no built-in tool called weather"):
        open_tools(args, resolve_paths(tmp_path))
    tools = open_tools(Namespace(tools="time,calc", mcp=[], allow=[]), resolve_paths(tmp_path))
    assert tools is not None and [s.name for s in tools.specs] == ["datetime", "calculator"]


def test_chat_through_a_server_that_calls_the_calculator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """hearth chat --endpoint URL --tools calc --allow calculator: the server (a scripted
    OpenAI-compatible one on 127.0.0.1, streaming tool_calls as OpenAI documents them;
    no server that runs a model with tools exists here) calls the calculator, Hearth runs
    it, sends the result back, and stores the call and the result with the reply."""
    from engine.history.store import ChatStore
    from engine.types import ToolResultPart
    from tests.openai_servers import Exchange, ScriptedServer, sse
    from tests.unit.test_remote_protocol import chunk

    function = {"name": "calculator", "arguments": '{"expression": "6*7"}'}
    call = chunk(
        {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": function}]}
    )
    script = [
        Exchange(
            body=sse(chunk({"content": "Computing."}), call, chunk({}, "tool_calls"), "[DONE]")
        ),
        Exchange(body=sse(chunk({"content": "It is 42."}), chunk({}, "stop"), "[DONE]")),
    ]
    data = ["--data-dir", str(tmp_path)]
    with ScriptedServer(script) as server:
        argv = [*data, "chat", "--endpoint", server.base_url, "--model", "m"]
        assert main([*argv, "--tools", "calc", "--allow", "calculator", "What is 6*7?"]) == 0
        second = server.seen[-1].body
    captured = capsys.readouterr()
    assert "Computing.It is 42." in captured.out
    assert '[tool] calculator({"expression": "6*7"})' in captured.err
    assert second is not None and second["messages"][-1] == {
        "role": "tool", "tool_call_id": "c1", "content": "42",
    }  # fmt: skip
    from app.paths import resolve_paths

    with ChatStore(resolve_paths(tmp_path).db_path) as store:
        (conv,) = store.list_conversations()
        reply = store.messages(conv.id)[-1]
    assert next(p for p in reply.parts if isinstance(p, ToolResultPart)).content == "42"


def test_without_a_terminal_a_call_is_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.openai_servers import Exchange, ScriptedServer, sse
    from tests.unit.test_remote_protocol import chunk

    function = {"name": "calculator", "arguments": "{}"}
    call = chunk(
        {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": function}]}
    )
    script = [
        Exchange(body=sse(call, chunk({}, "tool_calls"), "[DONE]")),
        Exchange(body=sse(chunk({"content": "I could not."}), chunk({}, "stop"), "[DONE]")),
    ]
    with ScriptedServer(script) as server:
        argv = ["--data-dir", str(tmp_path), "chat", "--endpoint", server.base_url, "--model", "m"]
        assert main([*argv, "--tools", "calculator", "What is 6*7?"]) == 0
        told = server.seen[-1].body
    assert "nobody can be asked here. Add --allow calculator" in capsys.readouterr().err
    assert told is not None and "did not allow" in told["messages"][-1]["content"]
