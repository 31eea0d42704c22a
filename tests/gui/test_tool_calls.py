"""Tool calls in the real window: the permission question, the call's block in the
reply, what is stored. No model that runs here calls tools on its own, so the replies
come from ScriptedBackend replaying model output in Qwen3.5's real call format
(``<tool_call>\\n<function=…>`` as its chat template asks for); the tool loop, the
calculator, the permission rules, the engine thread, the window and SQLite are real."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QPlainTextEdit
from pytestqt.qtbot import QtBot

from app.gui import HearthApp
from engine.tools.permissions import Permission, PermissionRules
from engine.types import ToolResultPart
from tests.fakes.scripted import ScriptedBackend
from tests.gui.conftest import REPLY_TIMEOUT_MS, Launch, click_text, send
from ui.state import ResponseState
from ui.tool_permission import ToolPermissionDialog

CALL = (
    "Let me work it out.\n\n<tool_call>\n<function=calculator>\n<parameter=expression>\n"
    "6*7\n</parameter>\n</function>\n</tool_call>"
)


def with_calculator(data_dir: Path) -> Path:
    config = data_dir / "config"
    config.mkdir(parents=True)
    (config / "tools.json").write_text(json.dumps({"builtin": ["calculator"]}))
    return data_dir


def question(qtbot: QtBot, hearth: HearthApp) -> ToolPermissionDialog:
    qtbot.waitUntil(lambda: hearth.tool_replies.question is not None, timeout=REPLY_TIMEOUT_MS)
    dialog = hearth.tool_replies.question
    assert dialog is not None and dialog.isVisible()
    return dialog


def press(qtbot: QtBot, hearth: HearthApp, dialog: ToolPermissionDialog, text: str) -> None:
    (button,) = [b for b in dialog.buttons.values() if b.text() == text]
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        button.click()


def test_ask_allow_in_this_chat_then_no_second_question(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    backend = ScriptedBackend([CALL, "It is 42.", CALL, "Still 42."])
    hearth = launch(with_calculator(tmp_path / "data"), backend=backend)
    send(qtbot, hearth, "What is 6 times 7?")
    dialog = question(qtbot, hearth)
    args = dialog.findChild(QPlainTextEdit, "tool_arguments")
    assert json.loads(args.toPlainText()) == {"expression": "6*7"}  # exactly what will run
    press(qtbot, hearth, dialog, "Allow in this chat")
    conv = hearth.conversations.current_id
    assert conv is not None
    reply = hearth.store.messages(conv)[-1]
    results = [p for p in reply.parts if isinstance(p, ToolResultPart)]
    assert [(r.name, r.content, r.ok) for r in results] == [("calculator", "42", True)]
    assert reply.content == "Let me work it out.\n\nIt is 42."
    text = hearth.window.chat_view.plain_text()
    assert "Tool: calculator" in text and "done" in text and "<tool_call>" not in text
    # The model read the result in its second round.
    assert backend.turns[1].messages[-1].tool_results == tuple(results)
    # The same chat, the same tool: it runs without a second question.
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "And again?")
    assert hearth.tool_replies.question is None
    assert hearth.store.messages(conv)[-1].content.endswith("Still 42.")


def test_never_tells_the_model_and_is_kept(qtbot: QtBot, launch: Launch, tmp_path: Path) -> None:
    data = with_calculator(tmp_path / "data")
    backend = ScriptedBackend([CALL, "I may not use it."])
    hearth = launch(data, backend=backend)
    send(qtbot, hearth, "What is 6 times 7?")
    press(qtbot, hearth, question(qtbot, hearth), "Never")
    told = backend.turns[1].messages[-1].tool_results
    assert len(told) == 1 and not told[0].ok and "did not allow" in told[0].content
    rules = PermissionRules.load(data / "config" / "tool_permissions.json")
    assert rules.rule("", "calculator") is Permission.NEVER
    assert "not run" in hearth.window.chat_view.plain_text()


def test_stop_while_asking_closes_the_question(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    backend = ScriptedBackend([CALL])
    hearth = launch(with_calculator(tmp_path / "data"), backend=backend)
    send(qtbot, hearth, "What is 6 times 7?")
    question(qtbot, hearth)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        hearth.window.send_button.click()  # Stop
    assert hearth.tool_replies.question is None
    assert hearth.replies.state == ResponseState.IDLE
    assert len(backend.turns) == 1  # nothing ran, no second round


def test_no_tools_on_means_no_tools_offered(qtbot: QtBot, launch: Launch, tmp_path: Path) -> None:
    backend = ScriptedBackend(["Hello."])
    hearth = launch(tmp_path / "data", backend=backend)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Hi")
    assert backend.turns[0].tools == ()
    assert not threading.enumerate()[1:] or all(
        not t.name.startswith("mcp:") for t in threading.enumerate()
    )


def test_settings_tools_page(qtbot: QtBot, launch: Launch, tmp_path: Path) -> None:
    """Settings → Tools with the real mcp-server-time from PyPI: switch a built-in tool
    on, add the server (it starts in the background and lists its tools), choose Always
    for one of them; all of it kept in the config folder."""
    import shutil
    import sys

    from PySide6.QtWidgets import QComboBox

    from ui.settings_tools import ToolsPage

    data = tmp_path / "data"
    hearth = launch(data, backend=ScriptedBackend([]))
    hearth.settings_controller.open()
    dialog = hearth.settings_controller.dialog
    assert dialog is not None
    page = dialog.findChild(ToolsPage)
    assert page is not None
    titles = [dialog.pages.item(i).text() for i in range(dialog.pages.count())]
    dialog.pages.setCurrentRow(titles.index("Tools"))
    assert page.isVisible()
    page.builtin_boxes["calculator"].click()
    assert json.loads((data / "config" / "tools.json").read_text())["builtin"] == ["calculator"]
    time_server = shutil.which("mcp-server-time") or str(
        Path(sys.executable).with_name("mcp-server-time")
    )
    page.server_add_requested.emit("time", time_server, (), {})  # as the Add dialog does
    qtbot.waitUntil(lambda: "running, 2 tools" in page.status.text(), timeout=REPLY_TIMEOUT_MS)
    tree = page.tools
    tops = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    assert [t.text(0) for t in tops] == ["Built in", "time"]
    server = tops[1]
    assert [server.child(i).text(0) for i in range(server.childCount())] == [
        "get_current_time",
        "convert_time",
    ]
    combo = tree.itemWidget(server.child(0), 1)
    assert isinstance(combo, QComboBox) and combo.currentText() == "As the server"
    combo.setCurrentIndex(combo.findText("Always allow"))
    rules = PermissionRules.load(data / "config" / "tool_permissions.json")
    assert rules.rule("time", "get_current_time") is Permission.ALWAYS
    whole = page.permission_combo("time")
    assert whole is not None and whole.currentText() == "Ask"
    whole.setCurrentIndex(whole.findText("Never"))
    rules = PermissionRules.load(data / "config" / "tool_permissions.json")
    assert rules.rule("time") is Permission.NEVER
    assert rules.decide("time", "convert_time") is Permission.NEVER  # all its tools…
    assert rules.decide("time", "get_current_time") is Permission.ALWAYS  # …but its own rule
    assert "time" in (data / "config" / "mcp_servers.json").read_text()


def choose(qtbot: QtBot, hearth: HearthApp, server: str, tool: str, text: str) -> None:
    """In Settings → Tools, pick ``text`` in the rule of ``server`` (tool "*") or a tool."""
    from ui.settings_tools import ToolsPage

    if hearth.settings_controller.dialog is None:
        hearth.settings_controller.open()
    dialog = hearth.settings_controller.dialog
    assert dialog is not None
    page = dialog.findChild(ToolsPage)
    assert page is not None
    combo = page.permission_combo(server, tool)
    assert combo is not None
    combo.setCurrentIndex(combo.findText(text))
    # The page is refilled after a change: wait until it shows the choice.
    qtbot.waitUntil(
        lambda: (
            (c := page.permission_combo(server, tool)) is not None
            and c is not combo
            and c.currentText() == text
        ),
        timeout=REPLY_TIMEOUT_MS,
    )


def reply_without_question(qtbot: QtBot, hearth: HearthApp, text: str) -> None:
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, text)
    assert hearth.tool_replies.question is None
    conv = hearth.conversations.current_id
    assert conv is not None
    (result,) = hearth.store.messages(conv)[-1].tool_results_parts()
    assert result.ok and result.content == "42"


def test_a_servers_rule_holds_for_its_tools_and_a_tools_rule_overrides_it(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    """Settings → Tools, the built-in tools' server row and the calculator's row: Always
    allow for the server runs the call unasked; Ask on the tool asks again; Allow in this
    chat on the server runs it unasked in this chat only; Never on it refuses. The
    replies are scripted (see the module's docstring); the rules, the window, the engine
    thread and the calculator are real."""
    backend = ScriptedBackend([CALL, "42."] * 6)
    data = with_calculator(tmp_path / "data")
    hearth = launch(data, backend=backend)
    send(qtbot, hearth, "What is 6 times 7?")  # (a chat to be in)
    press(qtbot, hearth, question(qtbot, hearth), "Allow once")
    choose(qtbot, hearth, "", "*", "Always allow")
    reply_without_question(qtbot, hearth, "Again?")
    choose(qtbot, hearth, "", "calculator", "Ask")  # the tool overrides its server
    send(qtbot, hearth, "And again?")
    press(qtbot, hearth, question(qtbot, hearth), "Allow once")
    choose(qtbot, hearth, "", "calculator", "As the server")
    choose(qtbot, hearth, "", "*", "Allow in this chat")
    reply_without_question(qtbot, hearth, "Once more?")
    saved = PermissionRules.load(data / "config" / "tool_permissions.json")
    assert saved.rules() == {}  # "in this chat" is not kept on disk
    hearth.conversations.new_chat()
    send(qtbot, hearth, "In a new chat?")  # not allowed here: asked
    press(qtbot, hearth, question(qtbot, hearth), "Allow once")
    choose(qtbot, hearth, "", "*", "Never")
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        send(qtbot, hearth, "Now?")
    conv = hearth.conversations.current_id
    assert conv is not None
    (result,) = hearth.store.messages(conv)[-1].tool_results_parts()
    assert not result.ok and "did not allow" in result.content


def test_tool_output_is_shown_as_text_never_as_html(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    """A file (read_file, from an allowed folder) that holds HTML and Markdown made to load
    a remote image and run script: the opened block shows it as the characters it is."""
    notes = tmp_path / "notes"
    notes.mkdir()
    inject = (
        "<img src='http://198.51.100.7/x.png'><script>alert(1)</script>\n"
        "![p](http://198.51.100.7/p.gif) [click](javascript:alert(1))"
    )
    (notes / "a.txt").write_text(inject, encoding="utf-8")
    data = tmp_path / "data"
    (data / "config").mkdir(parents=True)
    (data / "config" / "tools.json").write_text(
        json.dumps({"builtin": ["read_file"], "folders": [str(notes)]})
    )
    call = (
        "<tool_call>\n<function=read_file>\n<parameter=path>\na.txt\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    hearth = launch(data, backend=ScriptedBackend([call, "Done."]))
    send(qtbot, hearth, "Read a.txt")
    press(qtbot, hearth, question(qtbot, hearth), "Allow once")
    view = hearth.window.chat_view
    conv = hearth.conversations.current_id
    assert conv is not None
    reply = hearth.store.messages(conv)[-1]
    assert reply.parts
    click_text(qtbot, view, "Show details")
    text = view.plain_text()
    assert "<img src='http://198.51.100.7/x.png'>" in text and "<script>" in text
    assert "![p](http://198.51.100.7/p.gif)" in text
    page = view.toHtml()
    assert "<img" not in page.replace("&lt;img", "")
    assert 'href="http://198.51.100.7' not in page and 'href="javascript' not in page


def mcp_config(data: Path, name: str, command: str, *args: str) -> Path:
    config = data / "config"
    config.mkdir(parents=True, exist_ok=True)
    server = {"name": name, "command": command, "args": list(args), "enabled": True}
    (config / "mcp_servers.json").write_text(json.dumps({"version": 1, "servers": [server]}))
    return data


def test_what_time_is_it_in_tokyo_with_the_time_server(
    qtbot: QtBot, launch: Launch, tmp_path: Path
) -> None:
    """The issue's "done when": the real mcp-server-time from PyPI is configured; the
    person asks the time in Tokyo, is asked once with the arguments shown, allows it for
    the chat, and sees the call and its result in the reply."""
    import shutil
    import sys

    command = shutil.which("mcp-server-time") or str(
        Path(sys.executable).with_name("mcp-server-time")
    )
    call = (
        "<tool_call>\n<function=get_current_time>\n<parameter=timezone>\nAsia/Tokyo\n"
        "</parameter>\n</function>\n</tool_call>"
    )
    backend = ScriptedBackend([call, "Here it is."])
    hearth = launch(mcp_config(tmp_path / "data", "time", command), backend=backend)
    send(qtbot, hearth, "What time is it in Tokyo?")
    dialog = question(qtbot, hearth)
    args = dialog.findChild(QPlainTextEdit, "tool_arguments")
    assert args is not None and json.loads(args.toPlainText()) == {"timezone": "Asia/Tokyo"}
    press(qtbot, hearth, dialog, "Allow in this chat")
    text = hearth.window.chat_view.plain_text()
    assert "Tool: get_current_time · time · " in text and "done" in text
    conv = hearth.conversations.current_id
    assert conv is not None
    (result,) = hearth.store.messages(conv)[-1].tool_results_parts()
    assert result.server == "time" and '"timezone": "Asia/Tokyo"' in result.content
    # The offered tools were the server's, as its template would render them.
    assert [t.name for t in backend.turns[0].tools] == ["get_current_time", "convert_time"]


def test_stop_cancels_a_running_tool(
    qtbot: QtBot, launch: Launch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's tool that never answers (tests/fixtures/mcp_bad_server.py): Stop ends
    the call and the reply, and the model is not asked to go on."""
    import sys

    from engine.tools.mcp_client import McpServer

    calling = threading.Event()  # set once the call is on its way to the server
    original = McpServer.call

    def call_and_say(self: McpServer, *args: object, **kwargs: object) -> str:
        calling.set()
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(McpServer, "call", call_and_say)

    bad = str(Path(__file__).resolve().parent.parent / "fixtures" / "mcp_bad_server.py")
    call = "<tool_call>\n<function=hang>\n</function>\n</tool_call>"
    backend = ScriptedBackend([call])
    hearth = launch(mcp_config(tmp_path / "data", "bad", sys.executable, bad), backend=backend)
    send(qtbot, hearth, "Wait forever")
    dialog = question(qtbot, hearth)
    dialog.buttons[next(iter(dialog.buttons))].click()  # Allow once: the tool now runs
    qtbot.waitUntil(calling.is_set, timeout=REPLY_TIMEOUT_MS)
    with qtbot.waitSignal(hearth.replies.reply_ended, timeout=REPLY_TIMEOUT_MS):
        hearth.window.send_button.click()  # Stop
    conv = hearth.conversations.current_id
    assert conv is not None
    (result,) = hearth.store.messages(conv)[-1].tool_results_parts()
    assert not result.ok and "Stopped by the person" in result.content
    assert len(backend.turns) == 1
