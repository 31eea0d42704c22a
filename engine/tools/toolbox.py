"""The tools one reply may call, by name, and running one call to a result part.

A ``Tool`` is a spec (what the model reads) and a function that runs it; built-in
tools and MCP servers' tools are both ``Tool``s. Whatever a tool does wrong — it
raises, it returns megabytes — becomes a ``ToolResultPart`` with a sentence: the
model reads it and the reply goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from engine.types import ToolCallPart, ToolResultPart, ToolSpec

__all__ = ["MAX_RESULT_CHARS", "Tool", "ToolBox", "ToolError", "clip_result"]

_log = logging.getLogger(__name__)

# What the model reads of one result at most: a small context window must survive
# a tool that returns a whole web page.
MAX_RESULT_CHARS = 16_000


class ToolError(Exception):
    """A tool could not do what was asked; the message is a sentence for the model
    and the person."""


RunFunction = Callable[[Mapping[str, object], threading.Event], str]


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    run: RunFunction


def clip_result(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return (
        text[:limit]
        + f"\n[… {len(text) - limit:,} more characters not shown: the result was cut to "
        f"{limit:,} characters]"
    )


class ToolBox:
    """Tools by the name the model calls them. A later tool whose name is taken
    (two servers with a ``search``) is called ``server_name``."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> str:
        name = tool.spec.name
        if name in self._tools:
            name = f"{tool.spec.server or 'tool'}_{name}"
            tool = Tool(
                ToolSpec(name, tool.spec.description, tool.spec.parameters, tool.spec.server),
                tool.run,
            )
        self._tools[name] = tool
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self._tools.values())

    def schemas(self) -> dict[str, Mapping[str, object]]:
        return {name: t.spec.parameters for name, t in self._tools.items()}

    def server_of(self, name: str) -> str:
        tool = self._tools.get(name)
        return tool.spec.server if tool else ""

    def run(self, call: ToolCallPart, stop: threading.Event) -> ToolResultPart:
        """Run ``call`` (no permission asked here: see ``engine.tools.gate``)."""
        tool = self._tools.get(call.name)
        server = tool.spec.server if tool else call.server
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return ToolResultPart(
                call.id,
                call.name,
                f"There is no tool called '{call.name}'. The tools are: {known}.",
                ok=False,
                server=server,
            )
        t0 = time.perf_counter()
        try:
            text, ok = tool.run(call.plain_arguments(), stop), True
        except ToolError as exc:
            text, ok = str(exc), False
        except Exception as exc:  # a tool's bug must not end the reply
            _log.exception("tool %s failed", call.name)
            text, ok = f"The tool {call.name} failed: {type(exc).__name__}: {exc}", False
        ms = int((time.perf_counter() - t0) * 1000)
        if stop.is_set():
            text, ok = "Stopped by the person before the tool finished.", False
        return ToolResultPart(call.id, call.name, clip_result(text), ok, ms, server)
