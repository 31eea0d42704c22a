"""Tools on the command line (issue 16): ``hearth mcp add|list|remove|import`` and
``hearth chat --tools time,calculator --mcp NAME --allow TOOL``. No Qt here.

A call the rules do not already allow is asked about on the terminal (server, tool,
the exact arguments) before it runs; without a terminal it is refused, unless
``--allow`` names it. Answers "always"/"never" are kept in the same rules file as
the window's.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.tools_service import PERMISSIONS_FILE, SERVERS_FILE, KeyringSecrets
from engine.tools.builtin import BUILTIN_NAMES, builtin_tools
from engine.tools.gate import ToolGate
from engine.tools.loop import ToolLoop
from engine.tools.mcp_client import McpError, McpServer
from engine.tools.mcp_config import McpConfigError, McpServers
from engine.tools.permissions import Answer, PermissionRules
from engine.tools.toolbox import ToolBox
from engine.types import Event, ToolCallEvent, ToolCallPart, ToolResultEvent, ToolSpec, Turn

if TYPE_CHECKING:
    from app.paths import AppPaths
    from engine.inference.backend import ChatBackend
    from engine.types import SamplingParams

__all__ = ["ChatTools", "add_mcp_parser", "add_tool_options", "open_tools", "run_mcp"]

# What people type for the built-in tools ("time" is the date-and-time tool).
_ALIASES = {"time": "datetime", "date": "datetime", "calc": "calculator", "search": "search_chats"}


def servers_file(paths: AppPaths) -> McpServers:
    return McpServers(paths.config_dir / SERVERS_FILE, KeyringSecrets())


# -- hearth mcp ---------------------------------------------------------------


def add_mcp_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mcp = sub.add_parser(
        "mcp",
        help="tool servers (MCP) the model may call",
        description="Tool servers (Model Context Protocol). None is configured or started "
        "unless you add it; each call is shown and asked about before it runs.",
    )
    cmd = mcp.add_subparsers(dest="mcp_command", required=True)
    add = cmd.add_parser("add", help="add a server: hearth mcp add NAME -- COMMAND [ARGS...]")
    add.add_argument("name")
    add.add_argument("--url", default="", help="a streamable-HTTP server's address instead")
    add.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="an environment variable for the server (its value goes to the keyring)",
    )
    add.add_argument("server_command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    cmd.add_parser("list", help="the servers and their tools (each is started once)")
    remove = cmd.add_parser("remove", help="remove a server (and its secrets)")
    remove.add_argument("name")
    imp = cmd.add_parser("import", help="add the servers of a Claude Desktop / Cursor mcp.json")
    imp.add_argument("file", type=Path)


def _add_arguments(args: argparse.Namespace) -> tuple[list[str], str, list[str]] | str:
    """(command, url, env pairs) of ``hearth mcp add``, or a sentence. Options may come
    after NAME too (``add web --url URL``), where argparse's remainder takes them: read
    them, up to a ``--``, when the remainder starts with one. (argparse drops the ``--``
    that ends its own options, so ``add NAME -- CMD`` arrives as the command alone.)"""
    rest = list(args.server_command)
    if not rest or not rest[0].startswith("--"):
        return rest, args.url, list(args.env)
    end = rest.index("--") if "--" in rest else len(rest)
    before, command = rest[:end], rest[end + 1 :]
    options = argparse.ArgumentParser(prog="hearth mcp add", add_help=False, exit_on_error=False)
    options.add_argument("--url", default="")
    options.add_argument("--env", action="append", default=[])
    try:
        known, unknown = options.parse_known_args(before)
    except argparse.ArgumentError as exc:
        return f"{exc}."
    if unknown:
        joined = " ".join(unknown)
        return f"put the server's command after --: hearth mcp add {args.name} -- {joined}"
    return command, known.url or args.url, [*args.env, *known.env]


def run_mcp(args: argparse.Namespace, paths: AppPaths) -> int:
    paths.ensure()
    servers = servers_file(paths)
    if servers.note:
        print(f"hearth: {servers.note}", file=sys.stderr)
    try:
        if args.mcp_command == "add":
            added = _add_arguments(args)
            if isinstance(added, str):
                print(f"hearth: {added}", file=sys.stderr)
                return 2
            command, url, envs = added
            if not command and not url:
                print("hearth: give the server's command after --, or --url.", file=sys.stderr)
                return 2
            env = dict(_env_pair(e) for e in envs)
            servers.add(
                args.name,
                command=command[0] if command else "",
                args=tuple(command[1:]),
                url=url,
                env=env,
            )
            print(
                f"Added the tool server '{args.name}'. It starts when a chat uses it "
                f"(hearth chat --mcp {args.name})."
            )
            return 0
        if args.mcp_command == "remove":
            if not servers.remove(args.name):
                print(f"hearth: there is no tool server '{args.name}'.", file=sys.stderr)
                return 1
            print(f"Removed the tool server '{args.name}'.")
            return 0
        if args.mcp_command == "import":
            names = servers.import_json(args.file.read_text(encoding="utf-8"))
            print(f"Added {len(names)} tool server(s): {', '.join(names) or 'none'}.")
            return 0
    except (McpConfigError, ValueError) as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hearth: {args.file} cannot be read: {exc.strerror or exc}.", file=sys.stderr)
        return 1
    return _list(servers)


def _env_pair(text: str) -> tuple[str, str]:
    var, sep, value = text.partition("=")
    if not sep or not var.strip():
        raise ValueError(f"--env takes VAR=VALUE, not '{text}'.")
    return var.strip(), value


def _list(servers: McpServers) -> int:
    stored = servers.servers()
    if not stored:
        print("No tool servers. Add one: hearth mcp add time -- uvx mcp-server-time")
        return 0
    failed = 0
    for entry in stored:
        server = McpServer(servers.config(entry.name))
        print(f"{entry.name}  ({server.config.kind}: {server.config.describe()})")
        try:
            for spec in server.start():
                off = "  [off]" if spec.name in entry.disabled_tools else ""
                about = spec.description.strip().splitlines()[0] if spec.description.strip() else ""
                print(f"  {spec.name}{off} - {about}")
        except McpError as exc:
            failed += 1
            print(f"  {exc}")
        finally:
            server.close()
    return 1 if failed else 0


# -- hearth chat --tools/--mcp/--allow ------------------------------------------


def add_tool_options(chat: argparse.ArgumentParser) -> None:
    chat.add_argument(
        "--tools",
        default="",
        metavar="LIST",
        help=f"built-in tools the model may call, comma-separated: {', '.join(BUILTIN_NAMES)} "
        "(time and calc also work)",
    )
    chat.add_argument(
        "--mcp", action="append", default=[], metavar="NAME", help="a tool server to use (repeat)"
    )
    chat.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="TOOL",
        help="run this tool without asking ('all' for every one), for this run only",
    )


class ChatTools:
    """The tools of one ``hearth chat`` run: built-ins, started servers, the gate."""

    def __init__(self, gate: ToolGate, servers: Sequence[McpServer]) -> None:
        self.gate = gate
        self._servers = list(servers)

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return self.gate.specs()

    def stream(
        self,
        backend: ChatBackend,
        turn: Turn,
        params: SamplingParams,
        stop: threading.Event,
    ) -> Iterator[Event]:
        loop = ToolLoop(lambda t: backend.stream(t, params, stop=stop), self.gate, stop=stop)
        for event in loop.run(turn):
            if isinstance(event, ToolCallEvent):
                print(
                    f"[tool] {_where(event.call)}({event.call.arguments_json()})", file=sys.stderr
                )
            elif isinstance(event, ToolResultEvent):
                r = event.result
                head = r.content.strip().splitlines()[0][:200] if r.content.strip() else ""
                state = "ok" if r.ok else "not run" if not r.duration_ms else "failed"
                print(f"[tool] {r.name}: {state}, {r.duration_ms} ms: {head}", file=sys.stderr)
            yield event

    def close(self) -> None:
        for server in self._servers:
            server.close()


def _where(call: ToolCallPart) -> str:
    return f"{call.server}/{call.name}" if call.server else call.name


def open_tools(
    args: argparse.Namespace, paths: AppPaths, *, chat: object = None
) -> ChatTools | None:
    """The tools ``--tools``/``--mcp`` ask for, servers started; None when none is asked.
    Raises ``McpError``/``ValueError`` with a sentence."""
    names = [n.strip() for n in (args.tools or "").split(",") if n.strip()]
    if not names and not args.mcp:
        return None
    wanted = [_ALIASES.get(n, n) for n in names]
    unknown = [n for n in wanted if n not in BUILTIN_NAMES]
    if unknown:
        raise ValueError(
            f"There is no built-in tool called {', '.join(unknown)}; the built-in tools are "
            f"{', '.join(BUILTIN_NAMES)}."
        )
    box = ToolBox(builtin_tools(wanted, search=None, folders=()))
    started: list[McpServer] = []
    servers = servers_file(paths) if args.mcp else None
    try:
        for name in args.mcp:
            assert servers is not None
            if servers.get(name) is None:
                raise ValueError(f"There is no tool server '{name}'; see hearth mcp list.")
            server = McpServer(servers.config(name))
            server.start()
            started.append(server)
            off = set(servers.get(name).disabled_tools)  # type: ignore[union-attr]
            for tool in server.as_tools():
                if tool.spec.name not in off:
                    box.add(tool)
    except BaseException:
        for server in started:
            server.close()
        raise
    rules_path = paths.config_dir / PERMISSIONS_FILE
    rules = PermissionRules.load(rules_path)
    allow = set(args.allow)
    ask = TerminalAsker(allow)
    gate = ToolGate(box, rules, ask, chat=chat, on_rules_changed=lambda r: r.save(rules_path))
    return ChatTools(gate, started)


class TerminalAsker:
    """The permission question on the terminal (stderr), or ``--allow``'s answer."""

    def __init__(self, allow: set[str]) -> None:
        self._allow = allow

    def __call__(self, call: ToolCallPart, spec: ToolSpec | None, stop: threading.Event) -> Answer:
        if "all" in self._allow or call.name in self._allow:
            return Answer.ONCE
        if not sys.stdin.isatty():
            print(
                f"[tool] {_where(call)} was not run: nobody can be asked here. Add --allow "
                f"{call.name} to let it run.",
                file=sys.stderr,
            )
            return Answer.DENY
        args = json.dumps(call.plain_arguments(), ensure_ascii=False, indent=2)
        source = f" from the server '{call.server}'" if call.server else " (built in)"
        print(
            f"\nThe model wants to run {call.name}{source} with:\n{args}\n"
            "[o] allow once  [c] allow in this chat  [a] always  [n] never  [Enter] refuse: ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        choice = sys.stdin.readline().strip().lower()[:1]
        return {
            "o": Answer.ONCE,
            "c": Answer.CHAT,
            "a": Answer.ALWAYS,
            "n": Answer.NEVER,
        }.get(choice, Answer.DENY)
