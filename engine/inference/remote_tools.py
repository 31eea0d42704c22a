"""A server's streamed ``tool_calls`` (OpenAI chat completions) put back together.

Calls arrive in pieces keyed by ``index``: the first piece carries the id and the
function's name, later ones more of the arguments' JSON string. They are complete
when the choice finishes; then each becomes a ``ToolCallEvent`` (arguments that are
not a JSON object: the model reads why, through the tool loop's unknown-arguments
answer, rather than the reply failing).
"""

from __future__ import annotations

import json
from typing import Any

from engine.types import ToolCallEvent, ToolCallPart

__all__ = ["ToolCallDeltas"]


class ToolCallDeltas:
    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def read(self, pieces: object) -> None:
        if not isinstance(pieces, list):
            return
        for piece in pieces:
            if not isinstance(piece, dict):
                continue
            index = piece.get("index", len(self._calls))
            call = self._calls.setdefault(
                index if isinstance(index, int) else 0, {"id": "", "name": "", "arguments": ""}
            )
            if isinstance(piece.get("id"), str) and piece["id"]:
                call["id"] = piece["id"]
            function: Any = piece.get("function") or {}
            if isinstance(function, dict):
                if isinstance(function.get("name"), str):
                    call["name"] += function["name"]
                if isinstance(function.get("arguments"), str):
                    call["arguments"] += function["arguments"]

    def events(self) -> list[ToolCallEvent]:
        """The calls read so far, as events (once: they are forgotten here)."""
        out = []
        for index, call in sorted(self._calls.items()):
            try:
                args = json.loads(call["arguments"]) if call["arguments"].strip() else {}
            except ValueError:
                args = {"_unreadable_arguments": call["arguments"][:2000]}
            if not isinstance(args, dict):
                args = {"_unreadable_arguments": call["arguments"][:2000]}
            call_id = call["id"] or f"call_{index + 1}"
            out.append(ToolCallEvent(ToolCallPart(call_id, call["name"] or "?", args)))
        self._calls.clear()
        return out
