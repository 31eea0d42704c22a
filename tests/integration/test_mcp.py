"""Hearth's MCP client against real servers over stdio: ``mcp-server-time`` from PyPI,
and tests/fixtures/mcp_bad_server.py (the official SDK) that crashes, hangs, floods
5 MB, writes nonsense, or answers HTML/Markdown that tries to load remote content."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import pytest

from engine.tools.gate import ToolGate
from engine.tools.mcp_client import McpError, McpServer, McpServerConfig
from engine.tools.mcp_config import McpConfigError, McpServers
from engine.tools.permissions import Answer, PermissionRules
from engine.tools.toolbox import MAX_RESULT_CHARS, ToolBox
from engine.types import ToolCallPart

BAD = str(Path(__file__).resolve().parent.parent / "fixtures" / "mcp_bad_server.py")
TIME = shutil.which("mcp-server-time") or str(Path(sys.executable).with_name("mcp-server-time"))


def bad(mode: str = "ok", **kw: float) -> McpServer:
    return McpServer(McpServerConfig(name="bad", command=sys.executable, args=(BAD, mode)), **kw)


def test_the_time_server_from_pypi_lists_and_answers() -> None:
    server = McpServer(McpServerConfig(name="time", command=TIME))
    try:
        names = [t.name for t in server.start()]
        assert names == ["get_current_time", "convert_time"]
        box = ToolBox(server.as_tools())
        gate = ToolGate(box, PermissionRules(), lambda c, s, st: Answer.ONCE)
        result = gate.run(
            ToolCallPart("1", "get_current_time", {"timezone": "Asia/Tokyo"}), threading.Event()
        )
        assert result.ok and '"timezone": "Asia/Tokyo"' in result.content
        assert result.server == "time"
        wrong = gate.run(
            ToolCallPart("2", "get_current_time", {"timezone": "Mars/Olympus"}), threading.Event()
        )
        assert not wrong.ok and "Invalid timezone" in wrong.content
    finally:
        server.close()
    assert not server.running


def test_a_crash_mid_call_is_a_sentence_and_restart_brings_it_back() -> None:
    server = bad()
    try:
        server.start()
        with pytest.raises(McpError, match="'bad'"):
            server.call("crash", {}, threading.Event())
        assert not server.running
        assert [t.name for t in server.restart()][:2] == ["echo", "crash"]
        assert server.call("echo", {"text": "back"}, threading.Event()) == "back"
    finally:
        server.close()


def test_a_hang_times_out_and_stop_cancels() -> None:
    server = bad(call_timeout_s=1.0)
    try:
        server.start()
        with pytest.raises(McpError, match="did not answer the call to hang within 1 s"):
            server.call("hang", {}, threading.Event())
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        with pytest.raises(McpError, match="Stopped by the person"):
            server.call("hang", {}, stop)
        assert server.call("echo", {"text": "still here"}, threading.Event()) == "still here"
    finally:
        server.close()


def test_five_megabytes_are_cut_for_the_model() -> None:
    server = bad()
    try:
        server.start()
        box = ToolBox(server.as_tools())
        result = box.run(ToolCallPart("1", "flood", {}), threading.Event())
        assert result.ok and len(result.content) < MAX_RESULT_CHARS + 200
        assert "cut" in result.content
    finally:
        server.close()


def test_injected_markup_comes_back_as_plain_text() -> None:
    server = bad()
    try:
        server.start()
        text = server.call("inject", {}, threading.Event())
        assert "<img src=" in text  # kept verbatim: the window escapes it, nothing renders it
    finally:
        server.close()


@pytest.mark.parametrize(
    ("mode", "said"),
    [("die", "the configuration file is missing"), ("garbage", "")],
)
def test_a_server_that_dies_or_talks_nonsense_at_start(mode: str, said: str) -> None:
    server = bad(mode, start_timeout_s=5.0)
    with pytest.raises(McpError) as info:
        server.start()
    assert "'bad'" in str(info.value) and said in str(info.value)
    assert not server.running


def test_a_missing_command_says_so() -> None:
    server = McpServer(McpServerConfig(name="gone", command="/nonexistent/mcp-thing"))
    with pytest.raises(McpError, match="was not found"):
        server.start()


class MemorySecrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


def test_config_file_import_and_secrets(tmp_path: Path) -> None:
    secrets = MemorySecrets()
    path = tmp_path / "mcp_servers.json"
    servers = McpServers(path, secrets)
    assert servers.servers() == []  # nothing by default
    names = servers.import_json(
        '{"mcpServers": {"github": {"command": "npx", "args": ["-y", "gh-mcp"], '
        '"env": {"GITHUB_TOKEN": "ghp_secret"}}, "remote": {"url": "https://example.org/mcp"}}}'
    )
    assert names == ["github", "remote"]
    assert "ghp_secret" not in path.read_text(encoding="utf-8")
    reopened = McpServers(path, secrets)
    assert reopened.config("github").env == {"GITHUB_TOKEN": "ghp_secret"}
    assert reopened.config("remote").kind == "http"
    with pytest.raises(McpConfigError, match="exists already"):
        reopened.add("github", command="x")
    with pytest.raises(McpConfigError, match="cannot name"):
        reopened.add("bad name!", command="x")
    with pytest.raises(McpConfigError, match="not JSON"):
        reopened.import_json("{nope")
    assert reopened.remove("github") and secrets.values == {}


def test_a_streamable_http_server() -> None:
    """The same SDK server over streamable HTTP on 127.0.0.1 (a child process)."""
    import subprocess

    from tests.openai_servers import free_port

    port = free_port()
    child = subprocess.Popen(
        [sys.executable, BAD, "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = McpServer(McpServerConfig(name="web", url=f"http://127.0.0.1:{port}/mcp"))
    try:
        assert child.stderr is not None
        # uvicorn says when it listens; EOF (the child died) fails the test.
        for line in child.stderr:
            if "Uvicorn running on" in line:
                break
        else:
            raise AssertionError("the HTTP MCP server did not start")
        assert "echo" in [t.name for t in server.start()]
        assert server.call("echo", {"text": "over http"}, threading.Event()) == "over http"
    finally:
        server.close()
        child.terminate()
        child.wait(10)
        if child.stderr is not None:
            child.stderr.close()
