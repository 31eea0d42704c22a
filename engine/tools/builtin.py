"""Built-in tools that need no network: date and time, a calculator, search my
chats, read a file from folders the person allowed. Each is switchable; what
they need from elsewhere (the chat search, the allowed folders) is handed in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.tools.calculator import CalculatorError, calculate
from engine.tools.toolbox import Tool, ToolError
from engine.types import ToolSpec

__all__ = [
    "BUILTIN_NAMES",
    "builtin_tools",
    "calculator_tool",
    "datetime_tool",
    "read_file_tool",
    "search_chats_tool",
]

# NOTE: stored on disk (settings: which built-in tools are on); keep names stable.
BUILTIN_NAMES = ("datetime", "calculator", "search_chats", "read_file")

# A file larger than this is read up to here, with a note: the model's context is small.
MAX_FILE_CHARS = 20_000


def _now(arguments: Mapping[str, object], _stop: threading.Event) -> str:
    tz_name = str(arguments.get("timezone") or "").strip()
    if tz_name:
        try:
            zone = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(
                f"'{tz_name}' is not a time zone name; use an IANA name such as Asia/Tokyo."
            ) from None
        now = datetime.now(zone)
    else:
        now = datetime.now().astimezone()
    return now.strftime(f"%A %d %B %Y, %H:%M:%S ({now.tzname()}, UTC%z)")


def datetime_tool() -> Tool:
    return Tool(
        ToolSpec(
            "datetime",
            "The current date and time, on this computer's clock, in its time zone or another.",
            {
                "type": "object",
                "properties": {
                    "timezone": {
                        "type": "string",
                        "description": "An IANA time zone such as Europe/Paris; "
                        "empty for this computer's own.",
                    }
                },
            },
        ),
        _now,
    )


def _calculate(arguments: Mapping[str, object], _stop: threading.Event) -> str:
    try:
        value = calculate(str(arguments.get("expression", "")))
    except CalculatorError as exc:
        raise ToolError(str(exc)) from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def calculator_tool() -> Tool:
    return Tool(
        ToolSpec(
            "calculator",
            "Exact arithmetic: + - * / // % ** and sqrt, log, sin, cos, round, factorial, pi, e.",
            {
                "type": "object",
                "properties": {
                    "expression": {"type": "string", "description": "For example (3 + 4) * 2"}
                },
                "required": ["expression"],
            },
        ),
        _calculate,
    )


SearchFunction = Callable[[str, int], Sequence[tuple[str, str]]]


def search_chats_tool(search: SearchFunction) -> Tool:
    """``search(query, limit)`` -> (chat title, snippet) pairs, newest relevant first."""

    def run(arguments: Mapping[str, object], _stop: threading.Event) -> str:
        query = str(arguments.get("query", "")).strip()
        if not query:
            raise ToolError("The search needs words to look for.")
        hits = search(query, 8)
        if not hits:
            return f"No chat mentions '{query}'."
        return "\n".join(f"- {title}: {snippet}" for title, snippet in hits)

    return Tool(
        ToolSpec(
            "search_chats",
            "Search the person's earlier chats in Hearth for words; returns matching snippets.",
            {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "Words to look for"}},
                "required": ["query"],
            },
        ),
        run,
    )


def read_file_tool(folders: Sequence[Path]) -> Tool:
    """Reads text files inside ``folders`` only (symlinks resolved first)."""
    allowed = [f.expanduser().resolve() for f in folders]

    def run(arguments: Mapping[str, object], _stop: threading.Event) -> str:
        raw = str(arguments.get("path", "")).strip()
        if not raw:
            raise ToolError("Give the path of a file to read.")
        path = Path(raw).expanduser()
        if not path.is_absolute() and allowed:
            path = allowed[0] / path
        path = path.resolve()
        if not any(path.is_relative_to(folder) for folder in allowed):
            shown = ", ".join(str(f) for f in allowed) or "none yet"
            raise ToolError(
                f"{path} is outside the folders the person allowed ({shown}); "
                "only files in those can be read."
            )
        if not path.is_file():
            raise ToolError(f"There is no file at {path}.")
        try:
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                text = fh.read(MAX_FILE_CHARS + 1)
        except OSError as exc:
            raise ToolError(f"{path} cannot be read: {exc.strerror or exc}.") from None
        if "\x00" in text:
            raise ToolError(f"{path} is not a text file.")
        if len(text) > MAX_FILE_CHARS:
            text = text[:MAX_FILE_CHARS] + f"\n[… cut: the first {MAX_FILE_CHARS} characters]"
        return text

    listing = ", ".join(str(f) for f in allowed)
    return Tool(
        ToolSpec(
            "read_file",
            f"Read a text file from the folders the person allowed: {listing}.",
            {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "The file's path"}},
                "required": ["path"],
            },
        ),
        run,
    )


def builtin_tools(
    enabled: Sequence[str],
    *,
    search: SearchFunction | None = None,
    folders: Sequence[Path] = (),
) -> list[Tool]:
    """The built-in tools named in ``enabled`` that can work here (search needs a
    ``search``, read_file at least one folder)."""
    tools: list[Tool] = []
    for name in enabled:
        if name == "datetime":
            tools.append(datetime_tool())
        elif name == "calculator":
            tools.append(calculator_tool())
        elif name == "search_chats" and search is not None:
            tools.append(search_chats_tool(search))
        elif name == "read_file" and folders:
            tools.append(read_file_tool(folders))
    return tools
