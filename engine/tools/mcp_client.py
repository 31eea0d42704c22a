"""One MCP server, through the official ``mcp`` SDK, behind a blocking API.

The SDK is asyncio; Hearth's engine thread is not. Each running server gets a
thread with its own event loop that holds the connection (a stdio child process
or a streamable-HTTP session) open; ``tools()`` and ``call()`` hand coroutines to
it and wait, checking the reply's Stop and a time limit. Whatever the server does
wrong — it will not start, crashes, hangs, answers nonsense — becomes
``McpError`` with a sentence, and ``restart()`` tries again. Nothing starts a
server but ``start()``: none runs unless the person configured and enabled it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Coroutine, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from engine.tools.toolbox import Tool, ToolError
from engine.types import ToolSpec

__all__ = ["McpError", "McpServer", "McpServerConfig"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 60.0
# How often a waiting call looks at the reply's Stop.
_POLL_S = 0.05


class McpError(Exception):
    """A sentence for the person: what went wrong with a server, what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class McpServerConfig:
    """A server as the person added it. Either ``command`` (stdio) or ``url``."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # values: resolved secrets
    url: str = ""
    enabled: bool = True

    @property
    def kind(self) -> str:
        return "http" if self.url else "stdio"

    def describe(self) -> str:
        return self.url or " ".join([self.command, *self.args])


class McpServer:
    """A running (or not yet running) MCP server. Thread-safe for callers."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.config = config
        self._start_timeout = start_timeout_s
        self._call_timeout = call_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: Any = None
        self._closing: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: str = ""
        self._tools: list[ToolSpec] = []
        self._stderr: TextIO | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._failure

    # -- life ------------------------------------------------------------------

    def start(self) -> list[ToolSpec]:
        """Start the server and list its tools; ``McpError`` when it cannot."""
        with self._lock:
            if self.running and self._ready.is_set():
                return list(self._tools)
            self._reset()
            # The server's own messages (stderr) go to a file: its last lines explain a crash.
            self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
            self._thread = threading.Thread(target=self._run, name=f"mcp:{self.name}", daemon=True)
            self._thread.start()
        if not self._ready.wait(self._start_timeout):
            self.close()
            raise McpError(
                f"The tool server '{self.name}' did not answer within "
                f"{self._start_timeout:.0f} s of starting, so it was stopped. Check its "
                "command in Settings, then try again."
            )
        if self._failure:
            failure = self._failure
            self.close()
            raise McpError(failure)
        return list(self._tools)

    def restart(self) -> list[ToolSpec]:
        self.close()
        return self.start()

    def close(self) -> None:
        loop, closing, thread = self._loop, self._closing, self._thread
        if loop is not None and closing is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own (a crash)
                loop.call_soon_threadsafe(closing.set)
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        self._thread = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _reset(self) -> None:
        self._ready.clear()
        self._failure = ""
        self._tools = []
        self._session = None

    # -- the server's thread ---------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._fail(self._explain(exc))

    async def _main(self) -> None:
        from mcp import ClientSession

        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        async with AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport())
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            listed = await session.list_tools()
            self._tools = [_spec(self.name, t) for t in listed.tools]
            self._session = session
            self._ready.set()
            await self._closing.wait()
        self._session = None

    def _transport(self) -> Any:
        config = self.config
        if config.url:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(config.url)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(
            command=config.command, args=list(config.args), env=dict(config.env) or None
        )
        return stdio_client(params, errlog=self._stderr or open(os.devnull, "w"))

    def _fail(self, sentence: str) -> None:
        _log.warning("MCP server %s: %s", self.name, sentence)
        self._failure = sentence
        self._session = None
        self._ready.set()

    def _explain(self, exc: BaseException) -> str:
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            return self._explain(exc.exceptions[0])
        if isinstance(exc, FileNotFoundError | PermissionError):
            return (
                f"The tool server '{self.name}' could not be started: {self.config.command} "
                "was not found or may not be run. Check its command in Settings → Tools."
            )
        last = self._last_stderr()
        said = f" It said: {last}" if last else ""
        return (
            f"The tool server '{self.name}' stopped ({type(exc).__name__}: {exc}).{said} "
            "Restart it in Settings, or check its command in Settings → Tools."
        )

    def _last_stderr(self) -> str:
        err = self._stderr
        if err is None or err.closed:
            return ""
        try:
            err.flush()
            err.seek(0)
            lines = [line.strip() for line in err.read()[-2000:].splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1][:300] if lines else ""

    # -- calls -----------------------------------------------------------------

    def tools(self) -> list[ToolSpec]:
        return list(self._tools)

    def _submit(self, coro: Coroutine[Any, Any, T], stop: threading.Event | None, what: str) -> T:
        loop = self._loop
        if self._session is None or loop is None or not self.running:
            coro.close()
            raise McpError(
                self._failure
                or f"The tool server '{self.name}' is not running. Restart it in Settings."
            )
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        waited = 0.0
        while True:
            try:
                return future.result(timeout=_POLL_S)
            except concurrent.futures.TimeoutError:
                waited += _POLL_S
            if stop is not None and stop.is_set():
                future.cancel()
                raise McpError("Stopped by the person before the tool finished.") from None
            if not self.running:
                future.cancel()
                raise McpError(
                    self._failure or f"The tool server '{self.name}' stopped during {what}."
                )
            if waited >= self._call_timeout:
                future.cancel()
                raise McpError(
                    f"The tool server '{self.name}' did not answer {what} within "
                    f"{self._call_timeout:.0f} s. Restart it in Settings if it keeps hanging."
                )

    def call(self, tool: str, arguments: Mapping[str, object], stop: threading.Event) -> str:
        """The tool's answer as text; ``McpError`` when the server fails, ``ToolError``
        when the tool itself reports an error."""
        try:
            result = self._submit(
                self._session.call_tool(tool, dict(arguments)) if self._session else _none(),
                stop,
                f"the call to {tool}",
            )
        except McpError:
            raise
        except Exception as exc:  # the SDK's own errors: a bad answer, a closed pipe
            # The connection is unusable now: stop it, so the next call says "restart".
            sentence = (
                f"The tool server '{self.name}' failed on {tool} ({type(exc).__name__}: "
                f"{exc}). Restart it in Settings."
            )
            self.close()
            self._failure = sentence
            raise McpError(sentence) from exc
        text = _result_text(result)
        if getattr(result, "isError", getattr(result, "is_error", False)):
            raise ToolError(text or f"The tool {tool} reported an error.")
        return text

    def as_tools(self) -> list[Tool]:
        """This server's tools for a ``ToolBox`` (each call goes through ``call``)."""

        def runner(name: str) -> Any:
            def run(arguments: Mapping[str, object], stop: threading.Event) -> str:
                try:
                    return self.call(name, arguments, stop)
                except McpError as exc:
                    raise ToolError(str(exc)) from None

            return run

        return [Tool(spec, runner(spec.name)) for spec in self._tools]


async def _none() -> None:
    return None


def _spec(server: str, tool: Any) -> ToolSpec:
    schema = getattr(tool, "inputSchema", None) or getattr(tool, "input_schema", None) or {}
    if not isinstance(schema, Mapping):
        schema = {"type": "object", "properties": {}}
    return ToolSpec(str(tool.name), str(tool.description or ""), schema, server=server)


def _result_text(result: Any) -> str:
    """The text a tool answered. Images, audio and other non-text content are named,
    never fetched or shown: tool output is untrusted."""
    pieces: list[str] = []
    for item in getattr(result, "content", None) or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            pieces.append(str(getattr(item, "text", "")))
        elif kind == "resource":
            resource = getattr(item, "resource", None)
            pieces.append(
                str(
                    getattr(resource, "text", "") or f"[a resource: {getattr(resource, 'uri', '')}]"
                )
            )
        else:
            pieces.append(f"[{kind or 'unknown'} content not shown]")
    if not pieces:
        structured = getattr(result, "structuredContent", None)
        if structured:
            import json

            return json.dumps(structured, ensure_ascii=False)
    return "\n".join(pieces)
