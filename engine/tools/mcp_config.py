"""The MCP servers the person added: a JSON file, and their secrets in the keyring.

The file holds names, commands, arguments, URLs and the *names* of environment
variables; their values (API tokens, mostly) are kept by a ``SecretStore`` (the
system keyring, handed in). An ``mcp.json`` in the format Claude Desktop and
Cursor use (``{"mcpServers": {NAME: {"command", "args", "env"} | {"url"}}}``)
can be imported. The file starts empty: no server is configured by default.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from engine.tools.mcp_client import McpServerConfig

__all__ = ["McpConfigError", "McpServers", "SecretStore", "StoredServer", "parse_mcp_json"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class McpConfigError(ValueError):
    """A sentence: why this server or file cannot be added."""


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredServer:
    """A server as the file keeps it (no secret values)."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env_names: tuple[str, ...] = ()
    url: str = ""
    enabled: bool = True
    disabled_tools: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "enabled": self.enabled}
        if self.url:
            out["url"] = self.url
        else:
            out.update(command=self.command, args=list(self.args))
        if self.env_names:
            out["env"] = list(self.env_names)
        if self.disabled_tools:
            out["disabled_tools"] = list(self.disabled_tools)
        return out


def check_server(name: str, command: str, url: str) -> None:
    if not _NAME.match(name):
        raise McpConfigError(
            f"'{name}' cannot name a tool server: use letters, digits, - _ or . (up to 64)."
        )
    if bool(command) == bool(url):
        raise McpConfigError(
            f"The tool server '{name}' needs either a command to run or a URL, not both."
        )
    if url and not url.startswith(("http://", "https://")):
        raise McpConfigError(f"'{url}' is not an http:// or https:// address.")


def _secret_name(server: str, var: str) -> str:
    return f"mcp:{server}:{var}"


def parse_mcp_json(text: str) -> list[tuple[StoredServer, dict[str, str]]]:
    """Servers (and their environment values) from a Claude Desktop / Cursor mcp.json."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise McpConfigError(f"This file is not JSON ({exc}).") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError('This file has no "mcpServers" object: it is not an mcp.json.')
    out: list[tuple[StoredServer, dict[str, str]]] = []
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            continue
        command = str(entry.get("command", "") or "")
        url = str(entry.get("url", "") or entry.get("serverUrl", "") or "")
        args = entry.get("args", [])
        env = entry.get("env", {})
        check_server(str(name), command, url)
        env_values = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
        out.append(
            (
                StoredServer(
                    name=str(name),
                    command=command,
                    args=tuple(str(a) for a in args) if isinstance(args, list) else (),
                    env_names=tuple(env_values),
                    url=url,
                ),
                env_values,
            )
        )
    return out


class McpServers:
    """The servers file (``mcp_servers.json``) and the secrets that go with it."""

    def __init__(self, path: Path, secrets: SecretStore) -> None:
        self._path = path
        self._secrets = secrets
        self._servers: dict[str, StoredServer] = {}
        self.note = ""  # a sentence when the file could not be read
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.note = (
                f"The tool servers file {self._path} could not be read ({exc}); "
                "no tool server is started until it is fixed or the servers are added again."
            )
            return
        for item in data.get("servers", []) if isinstance(data, dict) else []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            env = item.get("env", [])
            self._servers[item["name"]] = StoredServer(
                name=item["name"],
                command=str(item.get("command", "")),
                args=tuple(str(a) for a in item.get("args", []) or []),
                env_names=tuple(str(e) for e in env) if isinstance(env, list) else (),
                url=str(item.get("url", "")),
                enabled=bool(item.get("enabled", True)),
                disabled_tools=tuple(str(t) for t in item.get("disabled_tools", []) or []),
            )

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"version": 1, "servers": [s.to_json() for s in self._servers.values()]}, indent=2
        )
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".mcp-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def servers(self) -> list[StoredServer]:
        return list(self._servers.values())

    def get(self, name: str) -> StoredServer | None:
        return self._servers.get(name)

    def add(
        self,
        name: str,
        *,
        command: str = "",
        args: tuple[str, ...] = (),
        url: str = "",
        env: Mapping[str, str] | None = None,
        replace_existing: bool = False,
    ) -> StoredServer:
        check_server(name, command, url)
        if name in self._servers and not replace_existing:
            raise McpConfigError(
                f"A tool server called '{name}' exists already: remove it first, or pick "
                "another name."
            )
        env = dict(env or {})
        for var, value in env.items():
            self._secrets.set(_secret_name(name, var), value)
        server = StoredServer(
            name=name, command=command, args=tuple(args), env_names=tuple(env), url=url
        )
        self._servers[name] = server
        self._save()
        return server

    def import_json(self, text: str) -> list[str]:
        """Adds the servers of an mcp.json (replacing same-named ones); their names."""
        names = []
        for server, env in parse_mcp_json(text):
            self.add(
                server.name,
                command=server.command,
                args=server.args,
                url=server.url,
                env=env,
                replace_existing=True,
            )
            names.append(server.name)
        return names

    def remove(self, name: str) -> bool:
        server = self._servers.pop(name, None)
        if server is None:
            return False
        for var in server.env_names:
            self._secrets.delete(_secret_name(name, var))
        self._save()
        return True

    def set_enabled(self, name: str, enabled: bool) -> None:
        if name in self._servers:
            self._servers[name] = replace(self._servers[name], enabled=enabled)
            self._save()

    def set_tool_enabled(self, name: str, tool: str, enabled: bool) -> None:
        server = self._servers.get(name)
        if server is None:
            return
        off = set(server.disabled_tools)
        (off.discard if enabled else off.add)(tool)
        self._servers[name] = replace(server, disabled_tools=tuple(sorted(off)))
        self._save()

    def config(self, name: str) -> McpServerConfig:
        """What starting the server needs, its secrets read from the store."""
        server = self._servers[name]
        env = {var: self._secrets.get(_secret_name(name, var)) or "" for var in server.env_names}
        return McpServerConfig(
            name=name,
            command=server.command,
            args=server.args,
            env=env,
            url=server.url,
            enabled=server.enabled,
        )
