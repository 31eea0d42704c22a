"""Nothing runs that the person did not allow: a call passes its rule, or the
person is asked (server, tool and exact arguments) before it runs.

``ask(call, spec, stop)`` is the front end's question: the window shows a dialog
and blocks the engine thread until answered, the terminal prompts. A refused call
becomes a result that tells the model so, and the reply goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping

from engine.tools.permissions import Answer, Permission, PermissionRules
from engine.tools.toolbox import ToolBox
from engine.types import ToolCallPart, ToolResultPart, ToolSpec

__all__ = ["AskFunction", "ToolGate"]

AskFunction = Callable[[ToolCallPart, ToolSpec | None, threading.Event], Answer]


def refuse_all(_call: ToolCallPart, _spec: ToolSpec | None, _stop: threading.Event) -> Answer:
    """The answer where nobody can be asked (a script without --allow)."""
    return Answer.DENY


class ToolGate:
    """The tool loop's runner: the toolbox behind the person's rules."""

    def __init__(
        self,
        toolbox: ToolBox,
        rules: PermissionRules,
        ask: AskFunction = refuse_all,
        *,
        chat: Hashable = None,
        on_rules_changed: Callable[[PermissionRules], None] | None = None,
    ) -> None:
        self.toolbox, self.rules, self._ask = toolbox, rules, ask
        self.chat = chat
        self._changed = on_rules_changed

    def specs(self) -> tuple[ToolSpec, ...]:
        return self.toolbox.specs()

    def schemas(self) -> dict[str, Mapping[str, object]]:
        return self.toolbox.schemas()

    def server_of(self, name: str) -> str:
        return self.toolbox.server_of(name)

    def run(self, call: ToolCallPart, stop: threading.Event) -> ToolResultPart:
        tool = self.toolbox.get(call.name)
        if tool is None:  # nothing to allow: the toolbox says which tools there are
            return self.toolbox.run(call, stop)
        server = tool.spec.server
        decision = self.rules.decide(server, call.name, self.chat)
        if decision is Permission.ASK:
            answer = self._ask(call, tool.spec, stop)
            before = self.rules.rules()
            self.rules.remember(server, call.name, self.chat, answer)
            if self._changed is not None and self.rules.rules() != before:
                self._changed(self.rules)
            allowed = answer.allows and not stop.is_set()
        else:
            allowed = decision is Permission.ALWAYS
        if not allowed:
            why = (
                "The person stopped the reply."
                if stop.is_set()
                else f"The person did not allow the tool {call.name} to run. Answer without it, "
                "or ask them."
            )
            return ToolResultPart(call.id, call.name, why, ok=False, server=server)
        return self.toolbox.run(call, stop)
