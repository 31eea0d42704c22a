"""Tool calls in the window's reply (issue 16): each call and result is shown in the
reply as it streams and recorded with it; a call that needs the person's word opens
the permission question, which Stop or the reply's end closes (refused).

Beside ``ReplyController`` rather than inside it: it reads the reply being written
(``replies.active``) and adds to it; it never starts or ends one.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Slot

from app.chat.replies import ReplyController
from app.engine_client import EngineClient
from app.notifier import Notifier
from app.tool_questions import PermissionQuestion
from engine.errors import KnownError
from engine.tools.permissions import Answer
from engine.types import ToolCallPart, ToolResultPart
from ui.main_window import MainWindow
from ui.tool_permission import ToolPermissionDialog

log = logging.getLogger(__name__)


class ToolReplies(QObject):
    def __init__(
        self,
        window: MainWindow,
        replies: ReplyController,
        engine: EngineClient,
        notifier: Notifier,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.window, self.replies, self.notifier = window, replies, notifier
        self.question: ToolPermissionDialog | None = None  # the one open now
        engine.tool_called.connect(self._on_tool_called)
        engine.tool_answered.connect(self._on_tool_answered)
        engine.permission_requested.connect(self._on_permission_requested)
        engine.tools_unavailable.connect(self._on_tools_unavailable)
        replies.reply_ended.connect(self._on_reply_ended)

    def _part(self, request_id: int, part: ToolCallPart | ToolResultPart) -> None:
        active = self.replies.active
        if active is None or active.request_id != request_id:
            return
        if self.replies.conversations.current_id == active.conversation_id:
            self.window.chat_view.add_tool_part(part)
        try:
            active.recorder.append_part(part)
        except KnownError as exc:  # kept in the recorder; the reply's end saves it again
            log.warning("could not save a tool part yet: %s", exc)

    @Slot(int, object)
    def _on_tool_called(self, request_id: int, call: ToolCallPart) -> None:
        self._part(request_id, call)

    @Slot(int, object)
    def _on_tool_answered(self, request_id: int, result: ToolResultPart) -> None:
        self._part(request_id, result)

    @Slot(int, object)
    def _on_permission_requested(self, request_id: int, question: PermissionQuestion) -> None:
        active = self.replies.active
        if active is None or active.request_id != request_id:
            question.answer(Answer.DENY)  # a reply that is over: nobody to ask for it
            return
        spec = question.spec
        dialog = ToolPermissionDialog(
            question.call, question.server, spec.description if spec else "", self.window
        )
        dialog.answered.connect(question.answer)
        dialog.answered.connect(self._on_answered)
        dialog.finished.connect(dialog.deleteLater)
        self.question = dialog
        dialog.show()

    @Slot(object)
    def _on_answered(self, _answer: Answer) -> None:
        self.question = None

    @Slot(int, str)
    def _on_tools_unavailable(self, _request_id: int, sentence: str) -> None:
        self.notifier.error(sentence)

    @Slot(int, int, object)
    def _on_reply_ended(self, *_args: object) -> None:
        dialog, self.question = self.question, None
        if dialog is not None:
            dialog.close_unanswered()
