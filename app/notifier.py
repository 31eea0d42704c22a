"""One place through which every sentence a person sees passes (qutebrowser's message bridge).

Passing remarks go to the status bar ("Copied the last reply."), problems to the
banner above the composer ("The disk is full: …"). Each one is also kept in
``seen`` (the last ``KEEP`` of them), so tests assert on what the person saw and
support can read it in the log. Nothing else in ``app/`` calls
``statusBar().showMessage`` or ``show_error`` directly.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Protocol

from PySide6.QtCore import QObject, Signal

from engine.errors import KnownError

log = logging.getLogger(__name__)
_QUOTED = re.compile(r"“[^”]*”")

INFO_MS = 4000  # how long a passing remark stays in the status bar


class NoticeKind(Enum):
    INFO = "info"  # the status bar, for a few seconds
    ERROR = "error"  # the banner, until dismissed or replaced
    UNDO = "undo"  # the status bar with an Undo button


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    text: str


class NoticeSurface(Protocol):
    """Where notices are drawn: the main window."""

    def show_status(self, text: str, timeout_ms: int) -> None: ...
    def clear_status(self) -> None: ...
    def show_error(self, text: str) -> None: ...
    def clear_error(self) -> None: ...
    def offer_undo(self, text: str, conv_id: int) -> None: ...


class Notifier(QObject):
    """Says things to the person; remembers what it said."""

    shown = Signal(object)  # Notice, after it is on screen
    KEEP = 200

    def __init__(self, surface: NoticeSurface, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._surface = surface
        self.seen: deque[Notice] = deque(maxlen=self.KEEP)

    def info(self, text: str, timeout_ms: int = INFO_MS) -> None:
        """A passing remark in the status bar (0: until the next one)."""
        self._surface.show_status(text, timeout_ms)
        self._record(Notice(NoticeKind.INFO, text))

    def error(self, text: str) -> None:
        """A problem, in the banner above the composer: what happened, what to do."""
        self._surface.show_error(text)
        self._record(Notice(NoticeKind.ERROR, text))

    def known(self, exc: KnownError, then: str = "") -> None:
        """A ``KnownError``'s own sentence, with what happens next (``then``) after it."""
        log.warning("%s (%s)", exc.message, exc.detail or type(exc).__name__)
        self.error(f"{exc.message} {then}".strip())

    def guard(self, then: str = "") -> Guard:
        """``with notifier.guard() as g:`` says a ``KnownError`` raised inside (a full
        disk, a locked database) in its own sentence and goes on; ``g.failed`` tells."""
        return Guard(self, then)

    def offer_undo(self, text: str, conv_id: int) -> None:
        """Say what was deleted, with an Undo button."""
        self._surface.offer_undo(text, conv_id)
        self._record(Notice(NoticeKind.UNDO, text))

    def clear_info(self) -> None:
        self._surface.clear_status()

    def clear_error(self) -> None:
        self._surface.clear_error()

    # --- for tests and support -----------------------------------------------------------
    def texts(self, kind: NoticeKind | None = None) -> list[str]:
        """What was said, oldest first (only ``kind``, if given)."""
        return [n.text for n in self.seen if kind is None or n.kind is kind]

    def _record(self, notice: Notice) -> None:
        # The person's own words (a chat's title, a search) are quoted “…” in notices;
        # they stay out of the log, which is never encrypted (issue 17).
        log.info("said (%s): %s", notice.kind.value, _QUOTED.sub("“…”", notice.text))
        self.seen.append(notice)
        self.shown.emit(notice)


class Guard:
    """See ``Notifier.guard``. Bugs (anything not a ``KnownError``) are not caught."""

    def __init__(self, notifier: Notifier, then: str) -> None:
        self._notifier = notifier
        self._then = then
        self.failed = False
        self.error: KnownError | None = None

    def __enter__(self) -> Guard:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if isinstance(exc, KnownError):
            self.failed, self.error = True, exc
            self._notifier.known(exc, self._then)
            return True
        return False
