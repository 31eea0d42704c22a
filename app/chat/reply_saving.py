"""Saving replies while the store fails (a full disk, a locked database).

GUI thread, owned by ``ReplyController``. A streaming reply keeps everything in
its ``ReplyRecorder`` while saving fails, and a save is tried at most every
SAVE_TRY_S; a finished reply that could not be saved is kept here, shown as it
was written (``shown_as``), and tried again every RETRY_SAVE_MS until it is.
Each failure is said once, and so is the moment saving works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, QTimer, Slot

from app.chat.conversations import ConversationController
from app.notifier import Notifier
from engine.errors import KnownError
from engine.history.recorder import ReplyRecorder
from engine.history.types import MessageStatus, StoredMessage

log = logging.getLogger(__name__)

RETRY_SAVE_MS = 3000  # a reply that could not be saved is tried again this often
SAVE_TRY_S = 1.0  # while saving fails, a streaming reply is tried at most this often
KEPT_NOTE = "What was written stays on screen and is saved as soon as saving works again."


@dataclass(slots=True)
class SaveTries:
    """How saving goes for one streaming reply."""

    failing: bool = False
    tried: float = 0.0  # time.monotonic() of the last try while failing


class ReplySaving(QObject):
    def __init__(
        self,
        notifier: Notifier,
        conversations: ConversationController,
        idle: Callable[[], bool],  # no reply is being written (the chat may be re-shown)
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.notifier = notifier
        self.conversations = conversations
        self._idle = idle
        self._unsaved: list[tuple[ReplyRecorder, MessageStatus]] = []  # finished, not saved
        self._retry = QTimer(self)
        self._retry.timeout.connect(self.retry)

    @property
    def pending(self) -> int:
        """How many finished replies are not saved yet."""
        return len(self._unsaved)

    def record(
        self,
        recorder: ReplyRecorder,
        tries: SaveTries,
        append: Callable[[str], None],
        text: str,
    ) -> None:
        """Keep ``text`` in the recorder (which saves at most every second). While
        saving fails, the recorder keeps everything and a save is tried each second;
        the first one that works writes it all."""
        try:
            append(text)
            if tries.failing and time.monotonic() - tries.tried >= SAVE_TRY_S:
                tries.tried = time.monotonic()
                recorder.flush()
                tries.failing = False
                self.notifier.clear_error()
                self.notifier.info("Saving works again: the reply is being saved.")
        except KnownError as exc:
            tries.tried = time.monotonic()
            if not tries.failing:
                tries.failing = True
                self.notifier.known(exc, KEPT_NOTE)

    def keep(
        self, recorder: ReplyRecorder, status: MessageStatus, exc: KnownError, *, say: bool
    ) -> None:
        """A finished reply that could not be saved: kept, and tried again on a timer."""
        self._unsaved.append((recorder, status))
        self._retry.start(RETRY_SAVE_MS)
        if say:
            self.notifier.known(exc, KEPT_NOTE)
        else:
            log.warning("reply %d not saved yet: %s", recorder.message_id, exc)

    @Slot()
    def retry(self) -> bool:
        """Try again to save the replies that could not be saved; True when all are."""
        still: list[tuple[ReplyRecorder, MessageStatus]] = []
        shown: set[int] = set()
        for recorder, status in self._unsaved:
            try:
                recorder.finish(status)
                shown.add(recorder.message_id)
            except KnownError as exc:
                log.info("reply %d still not saved: %s", recorder.message_id, exc)
                still.append((recorder, status))
        self._unsaved = still
        if still:
            return False
        self._retry.stop()
        if shown:
            self.notifier.clear_error()
            self.notifier.info("Saving works again: every reply is saved.", 6000)
            if self._idle():
                self.conversations.show_current(keep_scroll=True)
        return True

    def stop_retrying(self) -> None:
        self._retry.stop()

    def shown_as(self, msg: StoredMessage) -> StoredMessage:
        """A reply not saved yet is shown as it was written, not as the store has it."""
        for recorder, status in self._unsaved:
            if recorder.message_id == msg.id:
                return replace(
                    msg, content=recorder.text, thinking=recorder.thinking, status=status
                )
        return msg
