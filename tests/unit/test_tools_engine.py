"""Built-in tools, permissions and the tool loop, without a model: the loop is driven
by ScriptedBackend replaying model output in Qwen3.5's real call format (no model that
runs here calls tools on its own)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.tools.builtin import builtin_tools, read_file_tool
from engine.tools.calculator import CalculatorError, calculate
from engine.tools.gate import ToolGate
from engine.tools.loop import ToolLoop
from engine.tools.permissions import Answer, Choice, Permission, PermissionRules
from engine.tools.toolbox import MAX_RESULT_CHARS, Tool, ToolBox, ToolError
from engine.types import (
    FinishReason,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ToolCallEvent,
    ToolCallPart,
    ToolResultEvent,
    ToolResultPart,
    ToolSpec,
    Turn,
)
from tests.fakes.scripted import ScriptedBackend


def xml_call(name: str, **args: object) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("2+2", 4),
        ("(3 + 4) * 2", 14),
        ("2^10", 1024),
        ("sqrt(16)", 4.0),
        ("10 // 3", 3),
        ("-pi", -3.141592653589793),
    ],
)
def test_calculator(expr: str, value: float) -> None:
    assert calculate(expr) == value


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "().__class__",
        "9**9**9",
        "10**100000",
        "1/0",
        "x",
        "open('f')",
        "[1]*9",
        "",
    ],
)
def test_calculator_refuses_with_a_sentence(expr: str) -> None:
    with pytest.raises(CalculatorError) as info:
        calculate(expr)
    assert str(info.value).endswith(".")


def run(tool: Tool, **args: object) -> str:
    return tool.run(args, threading.Event())


def test_datetime_and_calculator_tools() -> None:
    dt, calc = builtin_tools(["datetime", "calculator", "search_chats", "read_file"])
    assert "JST" in run(dt, timezone="Asia/Tokyo")
    with pytest.raises(ToolError, match="IANA"):
        run(dt, timezone="Mars/Olympus")
    assert run(calc, expression="6*7") == "42"


def test_read_file_stays_in_its_folders(tmp_path: Path) -> None:
    allowed = tmp_path / "notes"
    allowed.mkdir()
    (allowed / "a.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    (allowed / "link.txt").symlink_to(tmp_path / "secret.txt")
    tool = read_file_tool([allowed])
    assert run(tool, path=str(allowed / "a.txt")) == "hello"
    assert run(tool, path="a.txt") == "hello"
    for escape in (str(tmp_path / "secret.txt"), "../secret.txt", "link.txt"):
        with pytest.raises(ToolError, match="outside the folders"):
            run(tool, path=escape)


def test_search_chats_uses_the_function_given() -> None:
    seen: list[str] = []

    def search(q: str, limit: int) -> list[tuple[str, str]]:
        seen.append(q)
        return [("Boats", "a lighthouse keeper")]

    (tool,) = builtin_tools(["search_chats"], search=search)
    assert run(tool, query="lighthouse") == "- Boats: a lighthouse keeper"
    assert seen == ["lighthouse"]


def test_toolbox_turns_failures_and_floods_into_results() -> None:
    def boom(_a: object, _s: object) -> str:
        raise RuntimeError("bug")

    box = ToolBox(
        [
            Tool(ToolSpec("boom", "", {}), boom),
            Tool(ToolSpec("flood", "", {}), lambda _a, _s: "x" * 5_000_000),
        ]
    )
    failed = box.run(ToolCallPart("1", "boom", {}), threading.Event())
    assert not failed.ok and "RuntimeError: bug" in failed.content
    flood = box.run(ToolCallPart("2", "flood", {}), threading.Event())
    assert flood.ok and len(flood.content) < MAX_RESULT_CHARS + 200 and "cut" in flood.content
    missing = box.run(ToolCallPart("3", "nope", {}), threading.Event())
    assert not missing.ok and "boom, flood" in missing.content


def test_permission_rules_and_their_file(tmp_path: Path) -> None:
    rules = PermissionRules()
    assert rules.decide("time", "get_current_time", chat=1) is Permission.ASK
    rules.remember("time", "get_current_time", 1, Answer.CHAT)
    assert rules.decide("time", "get_current_time", chat=1) is Permission.ALWAYS
    assert rules.decide("time", "get_current_time", chat=2) is Permission.ASK
    rules.set_rule("time", "*", Permission.NEVER)
    assert rules.decide("time", "get_current_time", chat=1) is Permission.NEVER
    rules.remember("time", "convert_time", 1, Answer.ALWAYS)
    assert (
        rules.decide("time", "convert_time", chat=3) is Permission.ALWAYS
    )  # the tool's own rule wins
    path = tmp_path / "perm.json"
    rules.save(path)
    assert PermissionRules.load(path).rules() == rules.rules()
    assert PermissionRules.from_json("{broken").rules() == {}


@pytest.mark.parametrize("server_choice", list(Choice)[1:])
@pytest.mark.parametrize("tool_choice", list(Choice))
def test_what_settings_shows_is_what_is_decided(server_choice: Choice, tool_choice: Choice) -> None:
    """Every server rule × every tool rule: Settings reads back what was chosen, and
    ``decide`` does what the two rows say, in this chat and in another."""
    rules = PermissionRules()
    rules.choose("time", "*", server_choice, chat=1)
    rules.choose("time", "get_current_time", tool_choice, chat=1)
    assert rules.choice("time", chat=1) is server_choice
    assert rules.choice("time", "convert_time", chat=1) is Choice.SERVER
    assert rules.choice("time", "get_current_time", chat=1) is tool_choice
    outcome = {
        Choice.ASK: Permission.ASK,
        Choice.ALWAYS: Permission.ALWAYS,
        Choice.NEVER: Permission.NEVER,
    }
    in_chat = {**outcome, Choice.CHAT: Permission.ALWAYS}
    elsewhere = {**outcome, Choice.CHAT: Permission.ASK}
    effective = server_choice if tool_choice is Choice.SERVER else tool_choice
    assert rules.decide("time", "get_current_time", chat=1) is in_chat[effective]
    assert rules.decide("time", "get_current_time", chat=2) is elsewhere[effective]
    assert rules.decide("time", "convert_time", chat=1) is in_chat[server_choice]
    assert rules.decide("time", "convert_time", chat=2) is elsewhere[server_choice]
    # On disk: the kept rules come back; "in this chat" is not kept.
    again = PermissionRules.from_json(rules.to_json())
    assert again.rules() == rules.rules()
    assert again.decide("time", "get_current_time", chat=2) is elsewhere[effective]
    assert (
        PermissionRules.from_json(
            '{"rules": [{"server": "a", "tool": "b", "permission": "maybe"}, 3]}'
        ).rules()
        == {}
    )


class Asker:
    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.asked: list[ToolCallPart] = []

    def __call__(self, call: ToolCallPart, spec: ToolSpec | None, stop: threading.Event) -> Answer:
        self.asked.append(call)
        return self.answers.pop(0)


def loop_for(
    backend: ScriptedBackend, gate: ToolGate, stop: threading.Event | None = None
) -> ToolLoop:
    stop = stop or threading.Event()
    return ToolLoop(lambda t: backend.stream(t, SamplingParams(), stop=stop), gate, stop=stop)


def test_the_loop_runs_a_call_feeds_the_result_and_continues() -> None:
    backend = ScriptedBackend(
        ["Let me check.\n\n" + xml_call("calculator", expression="6*7"), "It is 42."]
    )
    box = ToolBox(builtin_tools(["calculator"]))
    ask = Asker(Answer.CHAT)
    gate = ToolGate(box, PermissionRules(), ask, chat=7)
    turn = Turn(messages=(Message("user", "6*7?"),), tools=box.specs(), cache_key=7)
    events = list(loop_for(backend, gate).run(turn))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "Let me check.\n\nIt is 42."
    (call,) = [e.call for e in events if isinstance(e, ToolCallEvent)]
    (result,) = [e.result for e in events if isinstance(e, ToolResultEvent)]
    assert call.arguments == {"expression": "6*7"} and result.content == "42" and result.ok
    assert isinstance(events[-1], ReplyDone) and events[-1].reason is FinishReason.STOP
    second = backend.turns[1].messages[-1]
    assert (
        second.role == "assistant"
        and second.tool_calls == (call,)
        and second.tool_results == (result,)
    )
    # Allowed in this chat: the next reply's call runs without a question.
    backend2 = ScriptedBackend([xml_call("calculator", expression="1+1"), "2."])
    list(loop_for(backend2, gate).run(turn))
    assert len(ask.asked) == 1


def test_never_tells_the_model_the_tool_was_refused() -> None:
    backend = ScriptedBackend([xml_call("calculator", expression="1+1"), "I may not calculate."])
    rules = PermissionRules()
    gate = ToolGate(ToolBox(builtin_tools(["calculator"])), rules, Asker(Answer.NEVER))
    turn = Turn(messages=(Message("user", "1+1?"),), tools=gate.specs())
    events = list(loop_for(backend, gate).run(turn))
    (result,) = [e.result for e in events if isinstance(e, ToolResultEvent)]
    assert not result.ok and "did not allow" in result.content
    assert rules.rule("", "calculator") is Permission.NEVER
    assert backend.turns[1].messages[-1].tool_results == (result,)


def test_the_loop_stops_after_max_rounds() -> None:
    call = xml_call("calculator", expression="1")
    backend = ScriptedBackend([call, call, call])
    gate = ToolGate(ToolBox(builtin_tools(["calculator"])), PermissionRules(), Asker(Answer.ALWAYS))
    stop = threading.Event()
    loop = ToolLoop(
        lambda t: backend.stream(t, SamplingParams(), stop=stop), gate, stop=stop, max_rounds=2
    )
    events = list(loop.run(Turn(messages=(Message("user", "x"),), tools=gate.specs())))
    results = [e.result for e in events if isinstance(e, ToolResultEvent)]
    assert [r.ok for r in results] == [True, False] and "at most 2 rounds" in results[1].content
    assert len(backend.turns) == 2


def test_stop_while_asking_refuses_and_cancels() -> None:
    stop = threading.Event()

    def ask(call: ToolCallPart, spec: ToolSpec | None, s: threading.Event) -> Answer:
        stop.set()  # the person pressed Stop while the question was open
        return Answer.DENY

    backend = ScriptedBackend([xml_call("calculator", expression="1")])
    gate = ToolGate(ToolBox(builtin_tools(["calculator"])), PermissionRules(), ask)
    loop = ToolLoop(lambda t: backend.stream(t, SamplingParams(), stop=stop), gate, stop=stop)
    events = list(loop.run(Turn(messages=(Message("user", "x"),), tools=gate.specs())))
    assert isinstance(events[-1], ReplyDone) and events[-1].reason is FinishReason.CANCELLED
    assert len(backend.turns) == 1


def test_without_tools_markup_is_just_text() -> None:
    body = xml_call("calculator", expression="1")
    backend = ScriptedBackend([body])
    gate = ToolGate(ToolBox(), PermissionRules())
    events = list(loop_for(backend, gate).run(Turn(messages=(Message("user", "x"),))))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).replace(
        " ", ""
    ) == body.replace(" ", "")


def test_parts_are_hashable_and_read_only() -> None:
    call = ToolCallPart("1", "f", {"a": [1, {"b": 2}]})
    assert hash(Message("assistant", [call, ToolResultPart("1", "f", "ok")]))
    assert call.plain_arguments() == {"a": [1, {"b": 2}]}
    with pytest.raises(TypeError):
        call.arguments["a"] = 1  # type: ignore[index]


def test_each_rounds_thinking_goes_back_with_that_round() -> None:
    """Qwen3.5's template renders every assistant message after the last question as
    ``<think>{its reasoning_content}</think>`` + its text and calls
    (tests/fixtures/qwen3.5-chat-template.jinja). So each round goes back as a message
    of its own with its own thinking, and the next round's prompt (the real template)
    starts with exactly what the model read and wrote in the round before: the
    prefix a backend evaluated stays valid. Scripted model output (no model here calls
    tools), real loop, gate, calculator and template."""
    from engine.inference.chat_template import ChatTemplate, render
    from engine.types import ThinkingDelta
    from tests.fixtures.qwen35 import TEMPLATE_PATH

    backend = ScriptedBackend(
        [
            [
                ThinkingDelta("Need the product."),
                "Let me compute.\n\n",
                xml_call("calculator", expression="6*7"),
            ],
            [ThinkingDelta("Now halve it."), xml_call("calculator", expression="42/2")],
            [ThinkingDelta("That is all."), "It is 21."],
        ]
    )
    box = ToolBox(builtin_tools(["calculator"]))
    gate = ToolGate(box, PermissionRules({("", "calculator"): Permission.ALWAYS}))
    turn = Turn(messages=(Message("user", "Half of 6*7?"),), tools=box.specs(), thinking=True)
    events = list(loop_for(backend, gate).run(turn))
    assert isinstance(events[-1], ReplyDone) and len(backend.turns) == 3
    _question, one, two = backend.turns[2].messages
    assert (one.thinking, two.thinking) == ("Need the product.", "Now halve it.")
    assert [r.content for r in (*one.tool_results, *two.tool_results)] == ["42", "21"]

    template = ChatTemplate("gguf", TEMPLATE_PATH.read_text(encoding="utf-8"))

    def prompt(messages: tuple[Message, ...]) -> str:
        return render(template, messages, tools=box.specs(), extra={"enable_thinking": True})

    second, third = prompt(backend.turns[1].messages), prompt(backend.turns[2].messages)
    assert second.endswith("<|im_start|>assistant\n<think>\n")
    written = "Now halve it.\n</think>\n\n<tool_call>\n<function=calculator>\n"
    assert third.startswith(second + written)  # round two's thinking, in round two
    assert third.count("Need the product.") == 1 and third.count("Now halve it.") == 1
    # The next question: the template drops the earlier turn's thinking, all rounds' of it.
    stored = Message(
        "assistant", (*one.parts, *two.parts), thinking="Need the product.Now halve it."
    )
    later = prompt((*backend.turns[2].messages[:1], stored, Message("user", "Thanks!")))
    assert "Need the product." not in later and "Now halve it." not in later
