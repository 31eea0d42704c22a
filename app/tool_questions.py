"""A permission question crossing from the engine thread to the window and back.

The engine thread is inside the tool loop when a call needs the person's word:
it posts a ``PermissionQuestion`` (by signal) and waits on it, looking at the
reply's Stop; the window answers from the GUI thread by calling ``answer``. A
queued slot could not do this: the engine thread is busy waiting. No Qt here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from engine.tools.permissions import Answer
from engine.types import ToolCallPart, ToolSpec

__all__ = ["PermissionQuestion"]

_POLL_S = 0.05


@dataclass(eq=False)
class PermissionQuestion:
    call: ToolCallPart
    spec: ToolSpec | None
    _answer: Answer | None = None
    _given: threading.Event = field(default_factory=threading.Event)

    @property
    def server(self) -> str:
        return self.call.server or (self.spec.server if self.spec else "")

    def answer(self, answer: Answer) -> None:
        """From any thread; the first answer counts."""
        if not self._given.is_set():
            self._answer = answer
            self._given.set()

    @property
    def answered(self) -> bool:
        return self._given.is_set()

    def wait(self, stop: threading.Event) -> Answer:
        """The answer, or DENY once ``stop`` is set (Stop pressed, Hearth closing)."""
        while not self._given.wait(_POLL_S):
            if stop.is_set():
                self.answer(Answer.DENY)
        assert self._answer is not None
        return self._answer
