"""ContextController: how full the model's context window is, and what to do when it is full.

GUI thread. It keeps the toolbar's meter current (measured by the engine for
the open chat; grown token by token while a reply streams), asks the "context
full" question when a reply has no room (``ask_room``; the ReplyController acts
on the answer), drops the oldest turns from what the model reads when the
person chooses so, and reads the open chat into a newly loaded model ahead of
its next turn (``warm_current``), with progress in the status bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QMessageBox

from app.chat.conversations import ConversationController
from app.engine_client import EngineClient
from app.notifier import Notifier
from engine.history.store import ChatStore
from engine.types import ContextUsage, ModelInfo
from ui.context_dialog import ContextChoice, open_context_question
from ui.main_window import MainWindow

log = logging.getLogger(__name__)


class ContextController(QObject):
    # After warm_current(): tokens reused, tokens read (0, 0: nothing was read).
    warmed = Signal(int, int)

    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        engine: EngineClient,
        conversations: ConversationController,
        notifier: Notifier,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.window = window
        self.store = store
        self.engine = engine
        self.conversations = conversations
        self.notifier = notifier
        # Is a reply being written (set by the ReplyController): no warm-up then.
        self.busy: Callable[[], bool] = lambda: False
        self._streaming: tuple[int, int] | None = None  # (request id, conversation id)
        self._base: ContextUsage | None = None  # the streaming reply's prompt
        self._warm: tuple[int, str] | None = None  # (request id, model name)
        self._question: QMessageBox | None = None
        # The documents attached to the next message, not sent yet (app/chat/documents.py):
        # counted in the meter before Send, as their chips show their cost.
        self.pending_tokens: Callable[[], int] = lambda: 0
        self._measured: tuple[int | None, ContextUsage] | None = None  # (chat, its usage)
        engine.usage_measured.connect(self._on_usage_measured)
        engine.prompt_measured.connect(self._on_prompt_measured)
        engine.tokens_streamed.connect(self._on_tokens_streamed)
        engine.warm_progress.connect(self._on_warm_progress)
        engine.warm_finished.connect(self._on_warm_finished)
        engine.model_changed.connect(self._on_model_changed)
        conversations.current_changed.connect(self._on_current_changed)

    # --- the meter ---
    def measure_current(self) -> None:
        """Ask the engine how full the open chat makes the context window."""
        conv_id = self.conversations.current_id
        if conv_id is None or self.engine.model_info is None:
            return
        if self._streaming is not None and self._streaming[1] == conv_id:
            return  # the reply's own measure drives the meter; measured again at its end
        with self.notifier.guard():
            messages = self.store.messages(conv_id)
            turn, _ = self.conversations.turn_for(conv_id, messages)
            if turn.messages:
                self.engine.measure(conv_id, turn)

    def reply_started(self, request_id: int, conv_id: int) -> None:
        """The meter follows this reply while it streams."""
        self._streaming = (request_id, conv_id)
        self._base = None

    def reply_ended(self) -> None:
        self._streaming = None
        self._base = None
        self.measure_current()

    @Slot(int, object)
    def _on_prompt_measured(self, request_id: int, usage: ContextUsage) -> None:
        if self._streaming is not None and self._streaming[0] == request_id:
            self._base = usage

    @Slot(int, int)
    def _on_tokens_streamed(self, request_id: int, tokens: int) -> None:
        """The meter grows with the reply being written."""
        streaming, usage = self._streaming, self._base
        if streaming is None or streaming[0] != request_id or usage is None:
            return
        if streaming[1] != self.conversations.current_id:
            return
        self.window.chat_toolbar.set_context(
            usage.prompt_tokens + tokens, usage.n_ctx, reserve=max(0, usage.reserve - tokens)
        )

    @Slot(int, object)
    def _on_usage_measured(self, conv_id: int, usage: ContextUsage) -> None:
        if conv_id != self.conversations.current_id:
            return
        self._measured = (conv_id, usage)
        self.show_pending()

    @Slot()
    def show_pending(self) -> None:
        """The meter: the open chat as last measured, plus the documents attached to
        the next message (a new chat: those alone)."""
        if self._streaming is not None:
            return  # the reply's own figures; measured again when it ends
        info, conv_id = self.engine.model_info, self.conversations.current_id
        measured = self._measured if self._measured and self._measured[0] == conv_id else None
        attached = self.pending_tokens()
        if measured is not None:
            usage = measured[1]
            used, n_ctx, reserve, warn = usage.prompt_tokens, usage.n_ctx, usage.reserve, usage.warn
        elif info is not None and attached:
            used, n_ctx, reserve, warn = 0, info.n_ctx, 0, None
        else:
            return
        if attached and warn is not None:
            warn = warn or used + attached + reserve > n_ctx  # no room left for the reply
        self.window.chat_toolbar.set_context(
            used + attached, n_ctx, warn=warn, reserve=reserve, attached=attached
        )

    @Slot(object)
    def _on_current_changed(self, _conv_id: int | None) -> None:
        self.measure_current()

    @Slot(object, str)
    def _on_model_changed(self, info: ModelInfo | None, _error: str) -> None:
        if info is not None:
            self.measure_current()

    # --- the "context full" question ---
    def ask_room(
        self, usage: ContextUsage, dropped: int, on_choice: Callable[[ContextChoice], None]
    ) -> None:
        """Ask the person what to do about a chat that leaves the next reply no room.
        The answer arrives later (the box does not block); ``on_choice`` must check
        that it still applies."""

        def answered(choice: ContextChoice) -> None:
            self._question = None
            on_choice(choice)

        self._question = open_context_question(
            self.window,
            used=usage.prompt_tokens,
            n_ctx=usage.n_ctx,
            dropped=dropped,
            on_choice=answered,
        )

    def close_question(self) -> None:
        """Close an open question unanswered (the window is closing)."""
        box, self._question = self._question, None
        if box is not None:
            box.finished.disconnect()
            box.close()
            box.deleteLater()

    def drop_oldest(self, conv_id: int, ids: Sequence[int | None], dropped: int) -> bool:
        """The model stops reading the oldest ``dropped`` messages of ``ids`` (the
        prompt's message ids; a leading None is the system prompt, which stays).
        False (and a sentence) if that could not be saved."""
        n_system = 0
        while n_system < len(ids) and ids[n_system] is None:
            n_system += 1
        first = ids[n_system + dropped]
        if not self.conversations.change_settings(conv_id, context_from=first):
            return False
        if self.conversations.current_id == conv_id:
            self.conversations.show_current(keep_scroll=True)
        self.notifier.info(
            f"The model no longer reads the oldest {dropped} messages of this chat; "
            "they are still here.",
            6000,
        )
        return True

    # --- reading ahead after a model switch ---
    def warm_current(self, model_name: str) -> None:
        """Read the open conversation into the model now (after a model switch), with
        progress in the status bar, so that its next turn only reads the new message.
        The window stays usable: a message sent meanwhile is answered right after."""
        conv_id = self.conversations.current_id
        if conv_id is None or self.engine.model_info is None or self.busy():
            return
        with self.notifier.guard() as g:
            turn, _ = self.conversations.turn_for(conv_id, self.store.messages(conv_id))
        if g.failed or len(turn.messages) < 2:
            return
        self._warm = (self.engine.warm(turn), model_name)
        self.notifier.info(f"{model_name} is reading this conversation…", 0)

    @Slot(int, int, int)
    def _on_warm_progress(self, request_id: int, done: int, total: int) -> None:
        warm = self._warm
        if warm is None or warm[0] != request_id or self.busy():
            return
        self.notifier.info(
            f"{warm[1]} is reading this conversation: {done * 100 // max(total, 1)}%", 0
        )

    @Slot(int, int, int)
    def _on_warm_finished(self, request_id: int, reused: int, read: int) -> None:
        warm = self._warm
        if warm is None or warm[0] != request_id:
            return
        self._warm = None
        if not self.busy() and self.engine.model_info is not None:
            self.notifier.info(
                f"Now using {warm[1]}. The conversation continues where it was.", 8000
            )
        self.warmed.emit(reused, read)
