"""The tools the window offers the model: which built-in tools are on, the MCP
servers the person added (started when a reply first needs them, never at launch),
and the permission rules. No Qt: the engine thread calls ``prepare`` for each
reply; Settings changes it on the GUI thread (hence the lock).

Off by default: no built-in tool is on and no server is configured until the
person chooses so in Settings (or with ``hearth mcp add``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.tools.builtin import BUILTIN_NAMES, SearchFunction, builtin_tools
from engine.tools.gate import AskFunction, ToolGate
from engine.tools.loop import DEFAULT_MAX_ROUNDS
from engine.tools.mcp_client import McpError, McpServer
from engine.tools.mcp_config import McpServers, SecretStore
from engine.tools.permissions import PermissionRules
from engine.tools.toolbox import ToolBox
from engine.types import ToolSpec, Turn

if TYPE_CHECKING:
    from engine.endpoints.keys import KeyStore

__all__ = [
    "PERMISSIONS_FILE",
    "SERVERS_FILE",
    "TOOLS_FILE",
    "KeyringSecrets",
    "ToolSettings",
    "ToolsService",
    "store_search",
]

log = logging.getLogger(__name__)

TOOLS_FILE = "tools.json"
PERMISSIONS_FILE = "tool_permissions.json"
SERVERS_FILE = "mcp_servers.json"


class KeyringSecrets:
    """MCP servers' environment values in the system keyring (engine.endpoints' KeyStore:
    kept in memory for this run, with a note, where there is no keyring)."""

    def __init__(self) -> None:
        self._store: KeyStore | None = None

    @property
    def _keys(self) -> KeyStore:
        # Made when first needed: finding the keyring can take a while, and a window
        # with no server that has secrets never needs it.
        if self._store is None:
            from engine.endpoints.keys import KeyStore

            self._store = KeyStore()
        return self._store

    def get(self, name: str) -> str | None:
        return self._keys.get(name)

    def set(self, name: str, value: str) -> None:
        self._keys.set(name, value)

    def delete(self, name: str) -> None:
        self._keys.forget(name)


@dataclass(frozen=True, slots=True)
class ToolSettings:
    """# NOTE: stored on disk (tools.json); keep keys stable."""

    builtin: tuple[str, ...] = ()  # the built-in tools switched on
    folders: tuple[str, ...] = ()  # where read_file may read
    max_rounds: int = DEFAULT_MAX_ROUNDS

    @classmethod
    def load(cls, path: Path) -> ToolSettings:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        builtin = [b for b in data.get("builtin", []) if b in BUILTIN_NAMES]
        folders = [str(f) for f in data.get("folders", []) if isinstance(f, str)]
        rounds = data.get("max_rounds", DEFAULT_MAX_ROUNDS)
        if not isinstance(rounds, int) or not 1 <= rounds <= 50:
            rounds = DEFAULT_MAX_ROUNDS
        return cls(tuple(builtin), tuple(folders), rounds)

    def save(self, path: Path) -> None:
        body: dict[str, object] = {
            "builtin": list(self.builtin),
            "folders": list(self.folders),
            "max_rounds": self.max_rounds,
        }
        _write_atomic(path, json.dumps(body, indent=2))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tools-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True, slots=True)
class Prepared:
    """One reply's tools: the turn that offers them and the gate that runs them."""

    turn: Turn
    gate: ToolGate
    max_rounds: int
    problems: tuple[str, ...] = ()  # servers that would not start, in sentences


class ToolsService:
    def __init__(
        self,
        config_dir: Path,
        secrets: SecretStore,
        *,
        search: SearchFunction | None = None,
    ) -> None:
        self._dir = config_dir
        self._lock = threading.RLock()
        self.settings = ToolSettings.load(config_dir / TOOLS_FILE)
        self.servers = McpServers(config_dir / SERVERS_FILE, secrets)
        self.rules = PermissionRules.load(config_dir / PERMISSIONS_FILE)
        self._search = search
        self._running: dict[str, McpServer] = {}
        self._failed: dict[str, str] = {}

    # -- settings (GUI thread) --------------------------------------------------

    def set_settings(self, settings: ToolSettings) -> None:
        with self._lock:
            self.settings = settings
            settings.save(self._dir / TOOLS_FILE)

    def save_rules(self, rules: PermissionRules | None = None) -> None:
        with self._lock:
            (rules or self.rules).save(self._dir / PERMISSIONS_FILE)

    @property
    def active(self) -> bool:
        """Whether a reply is offered any tool at all."""
        with self._lock:
            return bool(self.settings.builtin) or any(s.enabled for s in self.servers.servers())

    # -- servers ----------------------------------------------------------------

    def start_server(self, name: str) -> list[ToolSpec]:
        """Start (or restart) ``name`` and list its tools; ``McpError`` with a sentence."""
        with self._lock:
            old = self._running.pop(name, None)
        if old is not None:
            old.close()
        server = McpServer(self.servers.config(name))
        try:
            specs = server.start()
        except McpError as exc:
            with self._lock:
                self._failed[name] = str(exc)
            raise
        with self._lock:
            self._running[name] = server
            self._failed.pop(name, None)
        return specs

    def stop_server(self, name: str) -> None:
        with self._lock:
            server = self._running.pop(name, None)
        if server is not None:
            server.close()

    def server_status(self, name: str) -> str:
        with self._lock:
            server = self._running.get(name)
            if server is not None and server.running:
                return f"Running: {len(server.tools())} tools."
            if name in self._failed:
                return self._failed[name]
        return "Not started: it starts when a reply first needs it."

    def running_tools(self, name: str) -> list[ToolSpec]:
        with self._lock:
            server = self._running.get(name)
        return server.tools() if server is not None else []

    # -- a reply (engine thread) ------------------------------------------------

    def offered(self, turn: Turn) -> Turn:
        """``turn`` with the tools a reply would be offered now, starting no server
        (for the context meter and the warm-up, whose prompt must match the reply's)."""
        with self._lock:
            settings = self.settings
            enabled = [s for s in self.servers.servers() if s.enabled]
            running = {name: server for name, server in self._running.items()}
        folders = [Path(f) for f in settings.folders]
        box = ToolBox(builtin_tools(settings.builtin, search=self._search, folders=folders))
        for stored in enabled:
            server = running.get(stored.name)
            for tool in server.as_tools() if server is not None and server.running else []:
                if tool.spec.name not in stored.disabled_tools:
                    box.add(tool)
        return replace(turn, tools=box.specs()) if len(box) else turn

    def prepare(self, turn: Turn, ask: AskFunction) -> Prepared | None:
        """The turn with the tools on now, and its gate; None when none is on."""
        with self._lock:
            settings = self.settings
            enabled = [s for s in self.servers.servers() if s.enabled]
        if not settings.builtin and not enabled:
            return None
        folders = [Path(f) for f in settings.folders]
        box = ToolBox(builtin_tools(settings.builtin, search=self._search, folders=folders))
        problems: list[str] = []
        for stored in enabled:
            with self._lock:
                server = self._running.get(stored.name)
            if server is None or not server.running:
                try:
                    self.start_server(stored.name)
                except McpError as exc:
                    problems.append(str(exc))
                    continue
                with self._lock:
                    server = self._running[stored.name]
            for tool in server.as_tools():
                if tool.spec.name not in stored.disabled_tools:
                    box.add(tool)
        if not len(box):
            return (
                None
                if not problems
                else Prepared(turn, ToolGate(box, self.rules), 1, tuple(problems))
            )
        gate = ToolGate(box, self.rules, ask, chat=turn.cache_key, on_rules_changed=self.save_rules)
        return Prepared(
            replace(turn, tools=box.specs()), gate, settings.max_rounds, tuple(problems)
        )

    def close(self) -> None:
        with self._lock:
            running, self._running = list(self._running.values()), {}
        for server in running:
            server.close()


def store_search(db_path: Path) -> SearchFunction:
    """The chat search for the search_chats tool: a read-only connection of its own
    per search (it runs on the engine thread; the window's connection is the GUI's)."""
    from engine.history.store import ChatStore
    from engine.history.types import HIGHLIGHT_END, HIGHLIGHT_START

    def search(query: str, limit: int) -> list[tuple[str, str]]:
        store = ChatStore.second(db_path, read_only=True)
        try:
            hits = store.search(query, limit)
        finally:
            store.close()
        clean = str.maketrans("", "", HIGHLIGHT_START + HIGHLIGHT_END)
        return [(h.title, h.snippet.translate(clean)) for h in hits]

    return search
