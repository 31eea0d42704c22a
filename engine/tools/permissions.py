"""Who may run what: Ask (the default), Allow in this chat, Always allow, Never —
per server and per tool. Plain data, no Qt; the window and the terminal ask.

A tool's own rule wins over its server's (``server/*``); "allowed in this chat" is
remembered for that chat while Hearth runs, for one tool or a whole server.
Settings shows and sets both levels as a ``Choice`` (``choice``/``choose``).
Rules are kept as JSON (``to_json``/``from_json``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Hashable, Mapping
from enum import StrEnum
from pathlib import Path

__all__ = ["ANY_TOOL", "Answer", "Choice", "Permission", "PermissionRules", "ToolKey"]


class Permission(StrEnum):
    """A remembered rule.

    # NOTE: stored on disk (tool_permissions.json); keep values stable.
    """

    ASK = "ask"
    ALWAYS = "always"
    NEVER = "never"


class Answer(StrEnum):
    """The person's answer to one permission question."""

    ONCE = "once"  # run this call, ask again next time
    CHAT = "chat"  # run it, and this tool's calls in this chat without asking
    ALWAYS = "always"  # run it, and never ask again for this tool
    NEVER = "never"  # refuse it, and refuse this tool from now on
    DENY = "deny"  # refuse this call only (a closed question, Stop)

    @property
    def allows(self) -> bool:
        return self in (Answer.ONCE, Answer.CHAT, Answer.ALWAYS)


class Choice(StrEnum):
    """What Settings → Tools shows and sets for a server (all its tools) or a tool."""

    SERVER = "server"  # a tool: as its server says
    ASK = "ask"
    CHAT = "chat"  # allowed in the current chat (until Hearth quits)
    ALWAYS = "always"
    NEVER = "never"


# (server, tool); server "" is Hearth's built-in tools; tool "*" is a whole server.
ToolKey = tuple[str, str]
ANY_TOOL = "*"


class PermissionRules:
    def __init__(self, rules: Mapping[ToolKey, Permission] | None = None) -> None:
        self._rules: dict[ToolKey, Permission] = dict(rules or {})
        self._chat: dict[Hashable, set[ToolKey]] = {}

    def rule(self, server: str, tool: str = ANY_TOOL) -> Permission:
        return self._rules.get((server, tool), Permission.ASK)

    def own_rule(self, server: str, tool: str = ANY_TOOL) -> Permission | None:
        return self._rules.get((server, tool))

    def set_rule(self, server: str, tool: str, permission: Permission | None) -> None:
        """A tool's ASK is kept (it overrides its server's rule); a server's ASK and
        ``None`` remove the rule."""
        if permission is None or (permission is Permission.ASK and tool == ANY_TOOL):
            self._rules.pop((server, tool), None)
        else:
            self._rules[(server, tool)] = permission

    def decide(self, server: str, tool: str, chat: Hashable = None) -> Permission:
        """What happens to a call now: ALWAYS (run), NEVER (refuse) or ASK.

        The tool's own Always/Never; else its server's Never (a tool allowed in the
        chat from a question included: Never on a server is its off switch); else
        allowed in this chat; else the tool's own Ask; else the server's Always,
        the server allowed in this chat, or Ask."""
        own = self._rules.get((server, tool))
        if own is Permission.ALWAYS or own is Permission.NEVER:
            return own
        whole = self._rules.get((server, ANY_TOOL))
        if own is None and whole is Permission.NEVER:
            return whole
        if self.allowed_in_chat(server, tool, chat):
            return Permission.ALWAYS
        if own is Permission.ASK:
            return own
        if whole is Permission.ALWAYS or self.allowed_in_chat(server, ANY_TOOL, chat):
            return Permission.ALWAYS
        return Permission.ASK

    def allowed_in_chat(self, server: str, tool: str, chat: Hashable) -> bool:
        return chat is not None and (server, tool) in self._chat.get(chat, ())

    def set_allowed_in_chat(self, server: str, tool: str, chat: Hashable, on: bool) -> None:
        if chat is None:
            return
        keys = self._chat.setdefault(chat, set())
        (keys.add if on else keys.discard)((server, tool))

    def choice(self, server: str, tool: str = ANY_TOOL, chat: Hashable = None) -> Choice:
        """What Settings shows for ``server`` (``tool`` "*") or one of its tools."""
        own = self._rules.get((server, tool))
        if own is Permission.ALWAYS or own is Permission.NEVER:
            return Choice(own.value)
        if tool != ANY_TOOL and own is None and self.rule(server) is Permission.NEVER:
            return Choice.SERVER
        if self.allowed_in_chat(server, tool, chat):
            return Choice.CHAT
        if tool == ANY_TOOL:
            return Choice.ASK
        return Choice.ASK if own is Permission.ASK else Choice.SERVER

    def choose(self, server: str, tool: str, choice: Choice, chat: Hashable = None) -> None:
        """Set what Settings shows as ``choice`` (``decide`` then agrees with it).
        A tool allowed in this chat keeps an own Ask: elsewhere it asks, whatever
        its server says."""
        whole = tool == ANY_TOOL
        if choice is Choice.CHAT:
            self.set_rule(server, tool, None if whole else Permission.ASK)
        elif choice is Choice.SERVER:
            self.set_rule(server, tool, None)
        else:
            self.set_rule(server, tool, Permission(choice.value))
        self.set_allowed_in_chat(server, tool, chat, choice is Choice.CHAT)

    def remember(self, server: str, tool: str, chat: Hashable, answer: Answer) -> None:
        if answer is Answer.CHAT:
            self._chat.setdefault(chat, set()).add((server, tool))
        elif answer is Answer.ALWAYS:
            self._rules[(server, tool)] = Permission.ALWAYS
        elif answer is Answer.NEVER:
            self._rules[(server, tool)] = Permission.NEVER

    def forget_chat(self, chat: Hashable) -> None:
        self._chat.pop(chat, None)

    def rules(self) -> dict[ToolKey, Permission]:
        return dict(self._rules)

    # -- on disk ---------------------------------------------------------------

    def to_json(self) -> str:
        items = [
            {"server": s, "tool": t, "permission": p.value}
            for (s, t), p in sorted(self._rules.items())
        ]
        return json.dumps({"version": 1, "rules": items}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> PermissionRules:
        """Unknown or damaged entries are skipped (they fall back to Ask)."""
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        rules: dict[ToolKey, Permission] = {}
        items = data.get("rules", []) if isinstance(data, dict) else []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            server, tool, perm = item.get("server"), item.get("tool"), item.get("permission")
            if (
                isinstance(server, str)
                and isinstance(tool, str)
                and isinstance(perm, str)
                and perm in {p.value for p in Permission}
            ):
                rules[(server, tool)] = Permission(perm)
        return cls(rules)

    @classmethod
    def load(cls, path: Path) -> PermissionRules:
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except OSError:
            return cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".perm-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
