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
