"""ReplyController: send, edit, regenerate and continue; the reply while it streams.

GUI thread. It owns the ``ResponseState`` that gates every action (the window
only renders it) and the reply in progress: it builds the ``Turn`` with the
one turn model, asks the engine for it, routes the streamed text to the screen
and to the store (``ReplyRecorder``: saved at most every second, so a crash
loses at most the last second), and ends it.

No dead ends: a store that fails (a full disk, a locked database) is said in
its own sentence; what was written stays on screen and is saved as soon as
saving works again (the recorder keeps the text; ``app.chat.reply_saving``
tries again); the window always comes back to a state where the person can
act; a typed message leaves the composer only once it is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from PySide6.QtCore import QObject, Signal, Slot

from app.chat.context import ContextController
from app.chat.conversations import ConversationController, LiveReply
from app.chat.documents import DocumentController
from app.chat.reply_saving import ReplySaving, SaveTries
from app.engine_client import EngineClient
from app.notifier import Notifier
from engine.errors import KnownError
from engine.history.recorder import ReplyRecorder
from engine.history.store import ChatStore
from engine.history.turns import CONTINUABLE, PromptMessages, status_for
from engine.history.types import MessageStatus, StoredMessage
from engine.types import (
    AttachmentPart,
    ContextUsage,
    FinishReason,
    ImagePart,
    Message,
    ModelInfo,
    ReplyDone,
    Turn,
)
from ui.context_dialog import ContextChoice
from ui.main_window import MainWindow
from ui.message_html import MessageAction
from ui.state import ResponseState

log = logging.getLogger(__name__)

SAVE_INTERVAL_S = 1.0  # a streaming reply is saved at most this often
UNSENT_NOTE = "Your message is still in the box below: send it again once that is fixed."


class Attachments(Protocol):
    """What waits to be sent with the next message (app.chat.attachments)."""

    def pending(self) -> tuple[AttachmentPart, ...]: ...
    def refusal(self) -> str: ...  # why they cannot be sent now; "" if they can
    def sent(self) -> None: ...
    def edit(self, msg: StoredMessage) -> None: ...


def _named(parts: tuple[AttachmentPart, ...]) -> str:
    """A title for a chat that starts with images alone."""
    return parts[0].name if parts and parts[0].name else ""


class ReplyKind(StrEnum):
    SEND = "send"  # a new question's reply
    REGENERATE = "regenerate"  # another version of a reply
    CONTINUE = "continue"  # a cut-off reply written on


@dataclass(slots=True)
class _Active:
    request_id: int
    conversation_id: int
    message_id: int
    recorder: ReplyRecorder
    kind: ReplyKind
    turn: Turn
    prompt: PromptMessages  # what the model reads, with the stored ids
    question: StoredMessage | None = None  # the question a send stored (undone on Cancel)
    previous_status: MessageStatus = MessageStatus.STOPPED  # of a continued reply
    saving: SaveTries = field(default_factory=SaveTries)


class ReplyController(QObject):
    state_changed = Signal(object)  # ResponseState
    # A reply is over and the window is usable again: conversation id, message id,
    # MessageStatus. It is saved, unless a notice said it could not be (yet).
    reply_ended = Signal(int, int, object)

    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        engine: EngineClient,
        conversations: ConversationController,
        context: ContextController,
        notifier: Notifier,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.window = window
        self.store = store
        self.engine = engine
        self.conversations = conversations
        self.context = context
        self.notifier = notifier
        self._state = ResponseState.LOADING
        self._active: _Active | None = None
        self._editing: StoredMessage | None = None  # a question being edited in the composer
        # The documents attached to the next message (set by the wiring, app/gui.py).
        self.documents: DocumentController | None = None
        # The images waiting to go with the next message (app.chat.attachments; issue 13).
        self.attachments: Attachments | None = None
        # Replies kept while saving fails, tried again until saved (reply_saving.py).
        self.saving = ReplySaving(notifier, conversations, lambda: self._active is None, self)
        conversations.live_reply = self._live_reply
        conversations.shown_as = self.saving.shown_as
        context.busy = lambda: self.busy

        engine.model_loading.connect(self._on_model_loading)
        engine.model_changed.connect(self._on_model_changed)
        engine.delta_ready.connect(self._on_delta_ready)
        engine.thinking_ready.connect(self._on_thinking_ready)
        engine.speed_measured.connect(self._on_speed_measured)
        engine.reply_finished.connect(self._on_reply_finished)
        engine.reply_failed.connect(self._on_reply_failed)
        engine.context_exceeded.connect(self._on_context_exceeded)
        window.send_requested.connect(self._on_send_requested)
        window.stop_requested.connect(self._on_stop_requested)
        window.delete_requested.connect(self._on_delete_requested)
        window.chat_view.action_requested.connect(self._on_message_action)
        window.composer.edit_last_requested.connect(self._on_edit_last_requested)
        window.composer.edit_cancelled.connect(self._on_edit_cancelled)
        self._set_state(ResponseState.LOADING)

    # --- state ---
    @property
    def state(self) -> ResponseState:
        return self._state

    @property
    def active(self) -> _Active | None:
        """The reply being written, if any (its tool calls join it: chat/tool_replies.py)."""
        return self._active

    @property
    def busy(self) -> bool:
        """A reply is being written (or stopped)."""
        return self._state in (ResponseState.GENERATING, ResponseState.STOPPING)

    def _model(self) -> str:
        """Which model writes the next reply, as the reply records it (its path)."""
        info = self.engine.model_info
        return info.path if info is not None else ""

    def _set_state(self, state: ResponseState) -> None:
        self._state = state
        self.window.set_state(state)
        self.state_changed.emit(state)

    def _resting_state(self) -> ResponseState:
        if self.engine.loading:
            return ResponseState.LOADING
        return ResponseState.IDLE if self.engine.model_info else ResponseState.NO_MODEL

    # --- sending ---
    def send(self, text: str) -> None:
        """Store ``text`` as the next question of the open chat and ask for its reply.
        The composer is cleared only once the question is stored."""
        if self._state != ResponseState.IDLE or self._active is not None:
            return
        waiting = self.documents.waiting_sentence() if self.documents else ""
        if waiting:  # never send without a document the person attached
            self.notifier.info(waiting)
            return
        parts = self.documents.parts() if self.documents else ()
        self.notifier.clear_error()
        attached = self.attachments.pending() if self.attachments is not None else ()
        refusal = self.attachments.refusal() if self.attachments is not None else ""
        if refusal:  # (the text and the images stay where they are)
            self.notifier.error(refusal)
            return
        editing, self._editing = self._editing, None
        conv_id = self.conversations.current_id
        question: StoredMessage | None = None
        try:
            if editing is not None and editing.conversation_id == conv_id:
                # An edited question is a new version of that turn; the old one keeps its branch.
                # Its documents stay; its images are those back in the tray (removable).
                kept = [a for a in editing.attachments if not isinstance(a, ImagePart)]
                question = self.store.add_variant(
                    editing.id, text, attachments=(*kept, *attached, *parts)
                )
                self.notifier.clear_info()
            else:
                if conv_id is None:
                    conv_id = self.conversations.create_for(text or _named(attached))
                question = self.store.add_message(
                    conv_id, "user", text, attachments=(*attached, *parts)
                )
            reply = self.store.add_message(
                conv_id, "assistant", "", MessageStatus.STREAMING, model=self._model()
            )
        except KnownError as exc:
            self._editing = editing  # still editing, if it was
            if question is not None:
                self._undo_question(question)
            if conv_id is not None:
                self.conversations.refresh_conversation(conv_id)
            self.notifier.known(exc, UNSENT_NOTE)
            return
        self.window.composer.clear()
        if self.attachments is not None:
            self.attachments.sent()
        if self.documents is not None:
            self.documents.sent(conv_id)
        self._start(reply, ReplyKind.SEND, question=question)

    def _undo_question(self, question: StoredMessage) -> None:
        """Remove a question whose reply could not be stored (it is sent again from the
        composer); if even that fails it stays in the chat, marked as sent."""
        try:
            self.store.delete_message(question.id)
        except KnownError as exc:
            log.warning("could not remove the unanswered question %d: %s", question.id, exc)

    def _start(
        self, reply: StoredMessage, kind: ReplyKind, *, question: StoredMessage | None = None
    ) -> None:
        """Stream into ``reply``, an assistant message on the active path: an empty,
        streaming one, or (CONTINUE) a cut-off one the model carries on. The model
        reads everything before it."""
        conv_id = reply.conversation_id
        try:
            messages = self.store.messages(conv_id)
            before = messages[: next(i for i, m in enumerate(messages) if m.id == reply.id)]
            turn, prompt = self.conversations.turn_for(
                conv_id, before, continue_reply=kind is ReplyKind.CONTINUE
            )
            if kind is ReplyKind.CONTINUE:
                cut = Message("assistant", reply.content, reply.thinking)
                turn = replace(turn, messages=(*turn.messages, cut))
                prompt = PromptMessages((*prompt.messages, cut), (*prompt.ids, reply.id))
                recorder = ReplyRecorder.resume(self.store, reply.id, interval=SAVE_INTERVAL_S)
            else:
                recorder = ReplyRecorder(self.store, reply.id, interval=SAVE_INTERVAL_S)
                # the passages it is given, by the numbers it cites them with
                self.store.set_citations(reply.id, prompt.citations)
        except KnownError as exc:
            self.notifier.known(exc)
            self.conversations.show_current(keep_scroll=True)
            return
        request_id = self.engine.generate(turn)
        active = _Active(
            request_id,
            conv_id,
            reply.id,
            recorder,
            kind,
            turn,
            prompt,
            question=question,
            previous_status=reply.status,
        )
        self._active = active
        self.context.reply_started(request_id, conv_id)
        self.conversations.refresh_conversation(conv_id)
        view = self.window.chat_view
        with self.notifier.guard():
            view.set_context_start(self.conversations.settings(conv_id).context_from)
        view.show_messages(before, keep_scroll=True)
        view.begin_reply()
        if kind is ReplyKind.CONTINUE:  # what was written so far, then the rest as it comes
            if reply.thinking and not reply.content:
                view.append_thinking(reply.thinking)
            view.append_reply(reply.content)
        self._set_state(ResponseState.GENERATING)

    def stop(self) -> None:
        if self._active is not None:
            self.engine.stop(self._active.request_id)
            self._set_state(ResponseState.STOPPING)

    # --- the reply as it streams ---
    @Slot(int, str)
    def _on_delta_ready(self, request_id: int, text: str) -> None:
        active = self._active
        if active is None or active.request_id != request_id:
            return
        if self.conversations.current_id == active.conversation_id:
            self.window.chat_view.append_reply(text)  # the screen first: saving may fail
        self.saving.record(active.recorder, active.saving, active.recorder.append, text)

    @Slot(int, str)
    def _on_thinking_ready(self, request_id: int, text: str) -> None:
        active = self._active
        if active is None or active.request_id != request_id:
            return
        if self.conversations.current_id == active.conversation_id:
            self.window.chat_view.append_thinking(text)
        self.saving.record(active.recorder, active.saving, active.recorder.append_thinking, text)

    @Slot(int, float)
    def _on_speed_measured(self, request_id: int, tokens_per_s: float) -> None:
        if self._active is not None and self._active.request_id == request_id:
            self.window.set_speed(tokens_per_s)

    # --- the end of a reply ---
    @Slot(int, object)
    def _on_reply_finished(self, request_id: int, done: ReplyDone) -> None:
        if self._finish(request_id, status_for(done.reason)):
            self.window.set_speed(done.stats.tokens_per_s)
            if done.reason == FinishReason.CONTEXT:
                self.notifier.error(
                    "The reply stopped because the conversation filled the model's context "
                    "window. Send your next message and Hearth will ask which messages the "
                    "model may stop reading, or start a new chat."
                )

    @Slot(int, str)
    def _on_reply_failed(self, request_id: int, message: str) -> None:
        if self._finish(request_id, MessageStatus.FAILED):
            self.notifier.error(message)

    def _finish(self, request_id: int, status: MessageStatus) -> bool:
        """Save the reply with its final status and give the window back. Whatever
        fails on the way, the window ends where the person can act."""
        active = self._active
        if active is None or active.request_id != request_id:
            return False
        self._active = None
        saved = False
        try:
            try:
                active.recorder.finish(status)
                saved = True
            except KnownError as exc:
                # Said once: a reply that could not be saved while it streamed was.
                self.saving.keep(active.recorder, status, exc, say=not active.saving.failing)
            if self.conversations.current_id == active.conversation_id:
                self.window.chat_view.end_reply(status)
                if saved:  # else the streamed text stays as it is on screen
                    self.conversations.show_current(keep_scroll=True)
            self.conversations.refresh_conversation(active.conversation_id)
        finally:
            self.context.reply_ended()
            self._set_state(self._resting_state())
            self.reply_ended.emit(active.conversation_id, active.message_id, status)
        return True

    def _live_reply(self, conv_id: int) -> LiveReply | None:
        active = self._active
        if active is None or active.conversation_id != conv_id:
            return None
        return LiveReply(active.message_id, active.recorder.text, active.recorder.thinking)

    # --- the context window was full ---
    @Slot(int, object, int)
    def _on_context_exceeded(self, request_id: int, usage: ContextUsage, dropped: int) -> None:
        """The reply was not started: the chat leaves it no room. Ask, then act."""
        active = self._active
        if active is None or active.request_id != request_id:
            return
        self.context.ask_room(
            usage,
            dropped,
            lambda choice: self._on_room_chosen(active, dropped, choice),
        )

    def _on_room_chosen(self, active: _Active, dropped: int, choice: ContextChoice) -> None:
        if self._active is not active:  # e.g. stopped, or the window closed meanwhile
            return
        if choice is ContextChoice.DROP:
            ids = active.prompt.ids
            if self.context.drop_oldest(active.conversation_id, ids, dropped):
                n_system = next((i for i, x in enumerate(ids) if x is not None), len(ids))
                keep = list(range(n_system)) + list(range(n_system + dropped, len(ids)))
                messages = tuple(active.prompt.messages[i] for i in keep)
                active.prompt = PromptMessages(messages, tuple(ids[i] for i in keep))
                active.turn = replace(active.turn, messages=messages)
                active.request_id = self.engine.generate(active.turn)
                self.context.reply_started(active.request_id, active.conversation_id)
                return
            choice = ContextChoice.CANCEL  # the choice could not be saved: nothing changes
        question = self._abandon(active)
        if choice is ContextChoice.NEW_CHAT:
            old = self.conversations.settings(active.conversation_id)
            self.conversations.new_chat()
            self.conversations.change_settings(
                system_prompt=old.system_prompt, thinking=old.thinking
            )
            if question:
                self.window.composer.setPlainText(question)
                self.send(question)
            else:  # a regenerate or continue: the last question is offered to send again
                last = next((m for m in reversed(active.prompt.messages) if m.role == "user"), None)
                self.window.composer.setPlainText(last.content if last else "")
        elif question:
            self.window.composer.setPlainText(question)  # back where it was typed
            self.window.composer.setFocus()

    def _abandon(self, active: _Active) -> str:
        """Undo a reply that never started; returns the text of the question it stored
        ("" if none), which is removed again."""
        self._active = None
        text = active.question.content if active.question is not None else ""
        try:
            with self.notifier.guard():
                if active.kind is ReplyKind.CONTINUE:
                    active.recorder.finish(active.previous_status)
                else:
                    self.store.delete_message(active.message_id)  # empty: nothing is lost
                if active.question is not None:
                    self.store.delete_message(active.question.id)
            self.conversations.refresh_conversation(active.conversation_id)
            if self.conversations.current_id == active.conversation_id:
                self.conversations.show_current(keep_scroll=True)
        finally:
            self.context.reply_ended()
            self._set_state(self._resting_state())
            self.reply_ended.emit(active.conversation_id, active.message_id, active.previous_status)
        return text

    # --- message actions (the links under each message) ---
    @Slot(object, int)
    def _on_message_action(self, action: MessageAction, msg_id: int) -> None:
        if action in (MessageAction.COPY, MessageAction.TOGGLE_THINKING, MessageAction.EARLIER):
            return  # the view handles these itself
        if self._active is not None:
            self.notifier.info("Wait for the reply to finish, or stop it.")
            return
        msg: StoredMessage | None = None
        with self.notifier.guard():
            msg = self.store.message(msg_id)
        if msg is None:
            return
        starts_reply = action in (MessageAction.REGENERATE, MessageAction.CONTINUE)
        if starts_reply and self._state != ResponseState.IDLE:
            self.notifier.info("No model is ready yet: wait for it to load, then try again.")
            return
        if action is MessageAction.REGENERATE:
            with self.notifier.guard() as g:
                reply = self.store.add_variant(
                    msg.id, "", MessageStatus.STREAMING, model=self._model()
                )
            if not g.failed:
                self._start(reply, ReplyKind.REGENERATE)
        elif action is MessageAction.CONTINUE:
            if msg.role == "assistant" and msg.status in CONTINUABLE:
                self._start(msg, ReplyKind.CONTINUE)
        elif action is MessageAction.EDIT:
            self.edit(msg)  # the composer, with the text
            return
        elif action is MessageAction.DELETE:
            if not self.window.confirm(
                "Delete message", "Delete this message?", "It is removed from this computer."
            ):
                return  # cancelled: the focus stays on the link
            if self._active is None:  # (still: the box had its own event loop)
                self.conversations.delete_message(msg)
        elif action in (MessageAction.PREV, MessageAction.NEXT):
            self.conversations.show_version(msg, -1 if action is MessageAction.PREV else 1)
        else:
            return
        # The link used is gone or moved (a new reply, a deleted message, another
        # version): the person goes on in the message box, not on a neighbouring link.
        self.window.composer.setFocus()

    def edit(self, msg: StoredMessage) -> None:
        """Put a question back in the composer; sending it makes a new version."""
        self._editing = msg
        self.window.composer.setPlainText(msg.content)
        if self.attachments is not None:
            self.attachments.edit(msg)
        self.window.composer.setFocus()
        self.notifier.info("Editing your message: Enter sends it as a new version, Esc cancels.", 0)

    # --- window intents ---
    @Slot(str)
    def _on_send_requested(self, text: str) -> None:
        self.send(text)

    @Slot()
    def _on_stop_requested(self) -> None:
        self.stop()

    @Slot(int)
    def _on_delete_requested(self, conv_id: int) -> None:
        active = self._active
        if active is not None and active.conversation_id == conv_id:
            self.engine.stop(active.request_id)
        self.conversations.delete_conversation(conv_id)

    @Slot()
    def _on_edit_last_requested(self) -> None:
        conv_id = self.conversations.current_id
        if conv_id is None or self._active is not None:
            return
        with self.notifier.guard():
            questions = [m for m in self.store.messages(conv_id) if m.role == "user"]
            if questions:
                self.edit(questions[-1])

    @Slot()
    def _on_edit_cancelled(self) -> None:
        if self._editing is not None:
            self._editing = None
            self.window.composer.clear()
            self.notifier.clear_info()

    # --- the model ---
    @Slot(str)
    def _on_model_loading(self, _path: str) -> None:
        self.window.set_model_info(None, "Loading model…")
        if self._active is None:
            self._set_state(ResponseState.LOADING)

    @Slot(object, str)
    def _on_model_changed(self, info: ModelInfo | None, error: str) -> None:
        if info is not None:
            self.window.set_model_info(info)
        else:
            self.window.set_model_info(None, "No model loaded")
            self.notifier.error(f"{error} Your conversations are safe and can still be read.")
        if self._active is None:
            self._set_state(self._resting_state())

    # --- the end ---
    def shutdown(self) -> None:
        """After the engine has stopped: save what the reply in progress received (its
        last events are still queued) and what could not be saved before."""
        self.saving.stop_retrying()
        active, self._active = self._active, None
        if active is not None:
            try:
                active.recorder.finish(MessageStatus.STOPPED)
            except KnownError as exc:
                log.error("the reply in progress could not be saved on closing: %s", exc)
        if self.saving.pending and not self.saving.retry():
            log.error("%d replies could not be saved before closing", self.saving.pending)
