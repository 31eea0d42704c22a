"""Tool calls in a model's streamed text, recognised while it streams.

Two forms: Qwen3.5's (and Qwen3-Coder's) XML,

    <tool_call>
    <function=NAME>
    <parameter=P>
    V
    </parameter>
    </function>
    </tool_call>

and the JSON form many other templates ask for, ``<tool_call>{"name": …,
"arguments": {…}}</tool_call>``. Text arrives in chunks cut anywhere (a token
may be half a tag), so the parser holds back any tail that could still become
``<tool_call>`` and never lets call markup into the answer. The template asks
for no text after a call ("NO suffix"); what a model writes after its calls (a
hallucinated ``<tool_response>``, say) is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from engine.types import ToolCallPart

__all__ = ["CALL_CLOSE", "CALL_OPEN", "MalformedCall", "ToolCallParser", "parse_call_body"]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|\Z)", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.S)


@dataclass(frozen=True, slots=True)
class MalformedCall:
    """A ``<tool_call>`` block that is not a call Hearth can read."""

    id: str
    raw: str
    reason: str  # for the model: what was wrong, so it can try again
    name: str = ""


Item = str | ToolCallPart | MalformedCall


def _held_prefix(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ToolCallParser:
    """Feed it the answer's text chunks; get the answer text and calls back in order.

    ``schemas`` maps a tool's name to its JSON-schema parameters, so that XML
    values (always text) become the numbers, booleans and objects the tool
    expects. ``next_id`` names each call (unique within a reply).
    """

    def __init__(
        self,
        *,
        schemas: Mapping[str, Mapping[str, object]] | None = None,
        next_id: Callable[[], str] | None = None,
    ) -> None:
        self._schemas = dict(schemas or {})
        counter = iter(range(1, 1 << 62))
        self._next_id = next_id or (lambda: f"call_{next(counter)}")
        self._buf = ""
        self._in_call = False
        self.calls_seen = 0

    def feed(self, text: str) -> list[Item]:
        self._buf += text
        out: list[Item] = []
        while True:
            if self._in_call:
                end = self._buf.find(CALL_CLOSE)
                if end < 0:
                    return out
                body, self._buf = self._buf[:end], self._buf[end + len(CALL_CLOSE) :]
                self._in_call = False
                out.append(self._call(body))
                continue
            start = self._buf.find(CALL_OPEN)
            if start >= 0:
                self._emit_text(self._buf[:start], out)
                self._buf = self._buf[start + len(CALL_OPEN) :]
                self._in_call = True
                continue
            keep = _held_prefix(self._buf, CALL_OPEN)
            cut = len(self._buf) - keep
            self._emit_text(self._buf[:cut], out)
            self._buf = self._buf[cut:]
            return out

    def flush(self) -> list[Item]:
        """The end of the text: a call cut before ``</tool_call>`` still counts if
        its function is complete (some models stop right after ``</function>``)."""
        out: list[Item] = []
        rest, self._buf = self._buf, ""
        if self._in_call:
            self._in_call = False
            if "</function>" in rest or rest.strip().endswith("}"):
                out.append(self._call(rest))
            # else: cut off mid-call (length limit, Stop): nothing to run, nothing to show
        else:
            self._emit_text(rest, out)
        return out

    def _emit_text(self, text: str, out: list[Item]) -> None:
        if not text:
            return
        if self.calls_seen:
            return  # after a call: the model was asked to write nothing more
        out.append(text)

    def _call(self, body: str) -> ToolCallPart | MalformedCall:
        self.calls_seen += 1
        return parse_call_body(body, self._next_id(), self._schemas)


def parse_call_body(
    body: str, call_id: str, schemas: Mapping[str, Mapping[str, object]] | None = None
) -> ToolCallPart | MalformedCall:
    """What is between ``<tool_call>`` and ``</tool_call>``, in either form."""
    stripped = body.strip()
    if stripped.startswith("{"):
        return _json_call(stripped, call_id)
    match = _FUNCTION.search(body)
    if match is None:
        return MalformedCall(
            call_id,
            body,
            "The call has neither <function=NAME> nor a JSON object with a name.",
        )
    name = match.group(1).strip()
    schema = (schemas or {}).get(name, {})
    props = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
    args: dict[str, object] = {}
    for pm in _PARAMETER.finditer(match.group(2)):
        key = pm.group(1).strip()
        value = _strip_one_newline(pm.group(2))
        prop = props.get(key) if isinstance(props, Mapping) else None
        args[key] = _typed(value, prop if isinstance(prop, Mapping) else None)
    return ToolCallPart(call_id, name, args)


def _strip_one_newline(value: str) -> str:
    # The template writes "\n" + value + "\n"; a value's own newlines stay.
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _typed(value: str, prop: Mapping[str, object] | None) -> object:
    """An XML parameter's text as its schema's type; text when that does not parse.
    Without a schema, numbers, objects and lists are read as JSON, the rest is text."""
    kind = prop.get("type") if prop is not None else None
    kinds = set(kind) if isinstance(kind, list) else {kind}
    text = value.strip()
    if prop is not None and "boolean" in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if prop is not None and not kinds & {"integer", "number", "object", "array"}:
        return value
    try:
        parsed = json.loads(text)
    except ValueError:
        return value
    if isinstance(parsed, bool) or not isinstance(parsed, int | float | dict | list):
        return value
    return parsed


def _json_call(text: str, call_id: str) -> ToolCallPart | MalformedCall:
    try:
        data = json.loads(text)
    except ValueError as exc:
        return MalformedCall(call_id, text, f"The call's JSON does not parse: {exc}.")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return MalformedCall(call_id, text, 'The call\'s JSON has no "name".')
    name: str = data["name"]
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):  # OpenAI style: the arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            return MalformedCall(call_id, text, f"The arguments do not parse: {exc}.", name)
    if not isinstance(args, dict):
        return MalformedCall(call_id, text, "The arguments are not an object.", name)
    return ToolCallPart(call_id, name, args)
