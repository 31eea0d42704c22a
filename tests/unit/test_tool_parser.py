"""The tool-call parser on Qwen3.5's XML form and the JSON form, fed in every
possible two-chunk cut and token by token, and on the real Qwen3.5 template's
own rendering of a call (the template file the qwen35 fixture GGUF carries)."""

from __future__ import annotations

from engine.inference.chat_template import ChatTemplate, render
from engine.tools.parser import MalformedCall, ToolCallParser
from engine.types import Message, TextPart, ToolCallPart, ToolResultPart, ToolSpec
from tests.fixtures.qwen35 import TEMPLATE_PATH

XML = (
    "Let me check.\n\n<tool_call>\n<function=get_current_time>\n<parameter=timezone>\n"
    "Asia/Tokyo\n</parameter>\n<parameter=count>\n3\n</parameter>\n</function>\n</tool_call>"
)
JSON = (
    'Sure. <tool_call>\n{"name": "calculator", "arguments": {"expression": "2 + 2"}}\n</tool_call>'
)
SCHEMAS = {
    "get_current_time": {
        "type": "object",
        "properties": {"timezone": {"type": "string"}, "count": {"type": "integer"}},
    }
}


def parse(chunks: list[str]) -> list[object]:
    parser = ToolCallParser(schemas=SCHEMAS)
    items: list[object] = []
    for chunk in chunks:
        items += parser.feed(chunk)
    return items + list(parser.flush())


def text_of(items: list[object]) -> str:
    return "".join(i for i in items if isinstance(i, str))


def calls_of(items: list[object]) -> list[object]:
    return [i for i in items if not isinstance(i, str)]


def test_xml_call_cut_at_every_position() -> None:
    want = [ToolCallPart("call_1", "get_current_time", {"timezone": "Asia/Tokyo", "count": 3})]
    for cut in range(len(XML) + 1):
        items = parse([XML[:cut], XML[cut:]])
        assert text_of(items) == "Let me check.\n\n", cut
        assert calls_of(items) == want, cut
        assert "<" not in text_of(items)


def test_json_call_character_by_character() -> None:
    items = parse(list(JSON))
    assert text_of(items) == "Sure. "
    assert calls_of(items) == [ToolCallPart("call_1", "calculator", {"expression": "2 + 2"})]


def test_json_cut_at_every_position_and_string_arguments() -> None:
    body = '<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>'
    for cut in range(len(body) + 1):
        assert calls_of(parse([body[:cut], body[cut:]])) == [ToolCallPart("call_1", "f", {"x": 1})]


def test_text_that_only_looks_like_a_tag_is_kept() -> None:
    text = "a < b and <tool and <tool_cal are not calls; x<t"
    for cut in range(len(text) + 1):
        assert text_of(parse([text[:cut], text[cut:]])) == text


def test_two_calls_and_a_hallucinated_response_after_them() -> None:
    call = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    items = parse([call + "\n" + call + "\n<tool_response>\nfake\n</tool_response>\nDone."])
    assert [c.id for c in calls_of(items)] == ["call_1", "call_2"]  # type: ignore[attr-defined]
    assert text_of(items) == ""


def test_malformed_calls_say_why() -> None:
    (bad,) = calls_of(parse(["<tool_call>{not json}</tool_call>"]))
    assert isinstance(bad, MalformedCall) and "does not parse" in bad.reason
    (bad,) = calls_of(parse(["<tool_call>call it please</tool_call>"]))
    assert isinstance(bad, MalformedCall)


def test_a_call_cut_mid_way_is_neither_run_nor_shown() -> None:
    items = parse(["Hi <tool_call>\n<function=f>\n<parameter=x>\n1"])
    assert items == ["Hi "]
    # ...but one that stopped right after </function> is complete enough to run.
    items = parse(["<tool_call>\n<function=f>\n<parameter=x>\n1\n</parameter>\n</function>\n"])
    assert calls_of(items) == [ToolCallPart("call_1", "f", {"x": 1})]


def test_multiline_string_parameter_keeps_its_newlines() -> None:
    body = (
        "<tool_call>\n<function=w>\n<parameter=text>\nline 1\n\nline 2\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    (call,) = calls_of(parse([body]))
    assert call == ToolCallPart("call_1", "w", {"text": "line 1\n\nline 2"})


def test_the_real_qwen35_template_renders_what_the_parser_reads() -> None:
    """The template writes the tool list and a past call; the parser reads that call back
    exactly, and the result goes back in a user turn as <tool_response>."""
    template = ChatTemplate("gguf", TEMPLATE_PATH.read_text(encoding="utf-8"))
    spec = ToolSpec("get_current_time", "The time", SCHEMAS["get_current_time"], server="time")
    call = ToolCallPart("call_1", "get_current_time", {"timezone": "Asia/Tokyo", "count": 3})
    reply = Message(
        "assistant",
        [
            TextPart("Let me check."),
            call,
            ToolResultPart("call_1", "get_current_time", "12:00 JST"),
            TextPart("It is noon."),
        ],
        thinking="The person wants the time.",
    )
    convo = [Message("user", "What time is it in Tokyo?"), reply]
    text = render(template, convo, tools=[spec], extra={"enable_thinking": True})
    assert '"name": "get_current_time"' in text.split("</tools>")[0]
    assert "<|im_start|>user\n<tool_response>\n12:00 JST\n</tool_response><|im_end|>" in text
    assert "<think>\nThe person wants the time.\n</think>" in text
    first_turn = text.split("<|im_start|>assistant\n", 1)[1].split("<|im_end|>")[0]
    items = parse([first_turn.split("</think>\n\n", 1)[1]])
    assert calls_of(items) == [call]
    assert text_of(items) == "Let me check.\n\n"
    assert text.endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\nIt is noon.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n"
    )


def test_a_template_without_tools_gets_them_in_the_system_message() -> None:
    chatml = ChatTemplate(
        "gguf",
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n",
    )
    spec = ToolSpec("calculator", "Arithmetic", {"type": "object", "properties": {}})
    reply = Message(
        "assistant",
        [
            ToolCallPart("c1", "calculator", {"expression": "2+2"}),
            ToolResultPart("c1", "calculator", "4"),
        ],
    )
    text = render(chatml, [Message("user", "2+2?"), reply], tools=[spec])
    assert text.startswith("<|im_start|>system\n# Tools")
    assert (
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>'
        in text
    )
    assert "<|im_start|>user\n<tool_response>\n4\n</tool_response><|im_end|>" in text
