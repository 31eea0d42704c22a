"""The remote backend's tools: the request's ``tools`` and the tool history as OpenAI
messages, and streamed ``tool_calls`` deltas put together into ToolCallEvents. The
exchange is literal SSE in the shape of OpenAI's documentation (vLLM and llama-server
with --jinja send the same), served on 127.0.0.1 by tests/openai_servers.py."""

from __future__ import annotations

import json

from engine.types import (
    FinishReason,
    Message,
    TextPart,
    ToolCallEvent,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Turn,
)
from tests.openai_servers import Exchange, ScriptedServer, sse
from tests.unit.test_remote_protocol import chunk, done, guard, run, text  # noqa: F401

SPEC = ToolSpec(
    "get_current_time",
    "The time",
    {"type": "object", "properties": {"timezone": {"type": "string"}}},
)


def test_streamed_tool_calls_and_the_tool_history_sent() -> None:
    body = sse(
        chunk({"role": "assistant", "content": "Checking."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_current_time", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"timezone": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Asia/Tokyo"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "get_current_time", "arguments": "{oops"}}]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    )  # fmt: skip
    earlier = Message(
        "assistant",
        [
            TextPart("Let me see."),
            ToolCallPart("c0", "get_current_time", {"timezone": "UTC"}),
            ToolResultPart("c0", "get_current_time", "12:00"),
            TextPart("Noon."),
        ],
    )
    turn = Turn(
        messages=(Message("user", "Time?"), earlier, Message("user", "And Tokyo?")),
        tools=(SPEC,),
    )
    with ScriptedServer([Exchange(body=body)]) as server:
        events, error = run(server, turn=turn)
        sent = server.seen[-1].body
    assert error is None
    assert text(events) == "Checking."
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert calls[0] == ToolCallPart("call_a", "get_current_time", {"timezone": "Asia/Tokyo"})
    assert calls[1].id == "call_b" and "_unreadable_arguments" in calls[1].arguments
    assert done(events).reason is FinishReason.STOP
    assert sent is not None
    assert sent["tools"] == [SPEC.for_template()]
    assert sent["messages"][1:4] == [
        {
            "role": "assistant",
            "content": "Let me see.",
            "tool_calls": [
                {
                    "id": "c0",
                    "type": "function",
                    "function": {
                        "name": "get_current_time",
                        "arguments": json.dumps({"timezone": "UTC"}),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "12:00"},
        {"role": "assistant", "content": "Noon."},
    ]
