"""A message with tool calls and results, as a chat template or a server reads it.

Hearth keeps a reply that called tools as one message: its text, its calls and
their results in order. Templates and the OpenAI API want it split: an assistant
message with ``tool_calls``, then one ``tool`` message per result, then the
assistant's next words. A template that knows no tools (it never mentions
``tool_calls``) gets the calls written into the text in the JSON form and the
results as ``<tool_response>`` in a user message, and the tool list in the
system message, so any chat model can be offered tools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from engine.types import Message, TextPart, ToolCallPart, ToolResultPart, ToolSpec

__all__ = [
    "openai_messages",
    "template_messages",
    "template_supports_tools",
    "tools_system_text",
    "with_tools_in_system",
]


def template_supports_tools(template_text: str) -> bool:
    """The template renders a ``tools`` list and assistant ``tool_calls`` itself."""
    return "tools" in template_text and "tool_calls" in template_text


def _call_json(call: ToolCallPart) -> str:
    return json.dumps({"name": call.name, "arguments": call.plain_arguments()}, ensure_ascii=False)


def _segments(
    message: Message,
) -> list[tuple[str, list[ToolCallPart], list[ToolResultPart]]]:
    """(text, calls, results) per round of a reply."""
    out: list[tuple[str, list[ToolCallPart], list[ToolResultPart]]] = []
    text, calls, results = "", list[ToolCallPart](), list[ToolResultPart]()
    for part in message.parts:
        if isinstance(part, TextPart):
            if results:
                out.append((text, calls, results))
                text, calls, results = "", [], []
            text += part.text
        elif isinstance(part, ToolCallPart):
            if results:
                out.append((text, calls, results))
                text, calls, results = "", [], []
            calls.append(part)
        elif isinstance(part, ToolResultPart):
            results.append(part)
        # (attachments: the template reads them from the message itself)
    out.append((text, calls, results))
    return out


def template_messages(message: Message, *, native: bool) -> list[dict[str, object]]:
    """``message`` as the template's ``messages`` entries (one, unless it called tools)."""
    base: dict[str, object] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.thinking:
        # The name Hugging Face templates read; each template decides what of
        # it to keep (Qwen3.5 drops it for turns before the last question).
        base["reasoning_content"] = message.thinking
    if message.role != "assistant" or not any(
        isinstance(p, ToolCallPart | ToolResultPart) for p in message.parts
    ):
        return [base]
    out: list[dict[str, object]] = []
    for i, (text, calls, results) in enumerate(_segments(message)):
        if not (text or calls or results):
            continue
        entry: dict[str, object] = {"role": "assistant", "content": text}
        if i == 0 and message.thinking:
            entry["reasoning_content"] = message.thinking
        if native:
            if calls:
                entry["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.plain_arguments()},
                    }
                    for c in calls
                ]
            if text or calls:
                out.append(entry)
            out.extend(
                {"role": "tool", "content": r.content, "tool_call_id": r.call_id, "name": r.name}
                for r in results
            )
        else:
            written = text + "".join(f"<tool_call>\n{_call_json(c)}\n</tool_call>" for c in calls)
            if written:
                entry["content"] = written
                out.append(entry)
            if results:
                body = "\n".join(f"<tool_response>\n{r.content}\n</tool_response>" for r in results)
                out.append({"role": "user", "content": body})
    return out


def tools_system_text(tools: Sequence[ToolSpec]) -> str:
    """The tool list and the call format, for a template that cannot render tools."""
    listing = "\n".join(json.dumps(t.for_template(), ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to answer the question. "
        f"The functions:\n<tools>\n{listing}\n</tools>\n\n"
        "To call a function, reply with only a JSON object naming it and its arguments "
        "inside <tool_call></tool_call> tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def with_tools_in_system(
    messages: list[dict[str, object]], tools: Sequence[ToolSpec]
) -> list[dict[str, object]]:
    """``messages`` with the tool text added to (or as) the system message."""
    text = tools_system_text(tools)
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content', '')}\n\n{text}".lstrip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def openai_messages(message: Message) -> list[dict[str, object]]:
    """``message`` as OpenAI chat-completions messages: ``tool_calls`` with JSON-string
    arguments, one ``tool`` message per result."""
    if message.role != "assistant" or not any(
        isinstance(p, ToolCallPart | ToolResultPart) for p in message.parts
    ):
        return [{"role": message.role, "content": message.content}]
    out: list[dict[str, object]] = []
    for text, calls, results in _segments(message):
        if text or calls:
            entry: dict[str, object] = {"role": "assistant", "content": text or None}
            if calls:
                entry["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.plain_arguments())},
                    }
                    for c in calls
                ]
            out.append(entry)
        out.extend(
            {"role": "tool", "tool_call_id": r.call_id, "content": r.content} for r in results
        )
    return out
