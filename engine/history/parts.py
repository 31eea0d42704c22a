"""A message's parts on disk: JSON in ``messages.parts`` when it holds tool calls.

A plain message keeps ``parts`` empty (its ``content`` is its one text part), so
the column costs nothing for chats without tools. A reply that called tools keeps
its text, calls and results in order; ``content`` still holds its text, which is
what search and the older readers see. Unknown entries (a newer Hearth's part
types) are kept out rather than failing the chat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from engine.types import Part, TextPart, ToolCallPart, ToolResultPart

__all__ = ["parts_from_json", "parts_from_list", "parts_to_json", "parts_to_list"]


def parts_to_list(parts: Sequence[Part]) -> list[dict[str, object]]:
    """The parts as JSON-ready dicts; [] for a message of text only.
    # NOTE: stored on disk (messages.parts, JSON exports); keep keys stable."""
    if not any(isinstance(p, ToolCallPart | ToolResultPart) for p in parts):
        return []  # (attachments are stored apart: engine.history.attachments)
    out: list[dict[str, object]] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ToolCallPart):
            out.append(
                {
                    "type": "tool_call",
                    "id": p.id,
                    "name": p.name,
                    "arguments": p.plain_arguments(),
                    "server": p.server,
                }
            )
        elif isinstance(p, ToolResultPart):
            out.append(
                {
                    "type": "tool_result",
                    "call_id": p.call_id,
                    "name": p.name,
                    "content": p.content,
                    "ok": p.ok,
                    "duration_ms": p.duration_ms,
                    "server": p.server,
                }
            )
    return out


def parts_to_json(parts: Sequence[Part]) -> str:
    items = parts_to_list(parts)
    return json.dumps(items, ensure_ascii=False) if items else ""


def parts_from_list(items: object) -> tuple[Part, ...]:
    out: list[Part] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text":
            out.append(TextPart(str(item.get("text", ""))))
        elif kind == "tool_call":
            args = item.get("arguments")
            out.append(
                ToolCallPart(
                    str(item.get("id", "")),
                    str(item.get("name", "")),
                    args if isinstance(args, dict) else {},
                    str(item.get("server", "")),
                )
            )
        elif kind == "tool_result":
            ms = item.get("duration_ms", 0)
            out.append(
                ToolResultPart(
                    str(item.get("call_id", "")),
                    str(item.get("name", "")),
                    str(item.get("content", "")),
                    bool(item.get("ok", True)),
                    ms if isinstance(ms, int) and ms >= 0 else 0,
                    str(item.get("server", "")),
                )
            )
    return tuple(out)


def parts_from_json(text: str) -> tuple[Part, ...]:
    """The stored parts; () when there are none or the JSON is damaged (then the
    message reads as its text)."""
    if not text:
        return ()
    try:
        return parts_from_list(json.loads(text))
    except ValueError:
        return ()
