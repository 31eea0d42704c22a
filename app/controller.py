"""ChatController: the one place where the window, the engine thread and the
chat store are wired together (cf. GPT4All's ``connectLLM``).

The controller lives on the GUI thread and is the only writer of the store and
of the window's models. A reply is saved while it streams (``ReplyRecorder``,
at most every second), so a crash loses at most the last second of text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psutil
from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QGuiApplication

from app.history_actions import HistoryActions
from app.worker import EngineThread, ReplyRequest
from engine.history.recorder import ReplyRecorder
from engine.history.store import ChatStore
from engine.history.turns import title_from
from engine.history.types import Conversation, MessageStatus, StoredMessage
from engine.types import (
    ContextUsage,
    EngineOptions,
    FinishReason,
    Message,
    ModelInfo,
    ReplyDone,
    SamplingParams,
)
from ui.context_dialog import ContextChoice, ask_context_choice
from ui.main_window import MainWindow
from ui.state import ResponseState

log = logging.getLogger(__name__)

MEMORY_INTERVAL_MS = 1000
LIST_PAGE = 200  # conversations listed at a time; more as the sidebar scrolls
# Per-chat setting: the id of the first message the model still reads (the person
# chose to drop the turns before it). Those stay in the store, shown and searchable.
CONTEXT_FROM = "context_from"

_STATUS_FOR_REASON = {
    FinishReason.STOP: MessageStatus.COMPLETE,
    FinishReason.LENGTH: MessageStatus.LENGTH,
    FinishReason.CANCELLED: MessageStatus.STOPPED,
    FinishReason.CONTEXT: MessageStatus.CONTEXT,
}


@dataclass(slots=True)
class _ActiveReply:
    request_id: int
    conversation_id: int
    message_id: int
    recorder: ReplyRecorder
    kind: str = "send"  # "send", "regenerate" or "continue"
    question: StoredMessage | None = None  # the question a send stored (undone on Cancel)
    history: list[Message] = field(default_factory=list)  # what the model is sent
    history_ids: list[int | None] = field(default_factory=list)  # their ids (None: not stored)
    previous_status: MessageStatus = MessageStatus.STOPPED  # of a continued reply
    usage: ContextUsage | None = None  # the context used by its prompt (from the engine)


class ChatController(QObject):
    # Requests to the engine thread (queued: the worker lives there).
    load_requested = Signal(str, object)  # path ("" = starter model), EngineOptions
    generate_requested = Signal(int, object)  # request id, ReplyRequest
    measure_requested = Signal(int, object)  # conversation id, ReplyRequest (context meter)
    warm_requested = Signal(object)  # ReplyRequest: read this conversation in ahead
    warmed = Signal(int, int)  # after warm_current(): tokens reused, tokens read (tests)
    reply_done = Signal()  # the current reply is saved and the window is idle again (tests)
    model_changed = Signal()  # a load finished (loaded or failed), on the GUI thread

    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        engine: EngineThread,
        *,
        model_path: str = "",
        options: EngineOptions | None = None,
        params: SamplingParams | None = None,
    ) -> None:
        super().__init__()
        self.window = window
        self.store = store
        self.engine = engine
        self.model_path = model_path
        self.options = options or EngineOptions()
        self.params = params  # exact sampling (tests); None: model defaults + overrides
        self.overrides: dict[str, float | int] = {}
        self.system_prompt = ""
        self.thinking_mode = "model"  # "model", "on" or "off" (new chats)
        self._new_chat: dict[str, object] = {}  # per-chat settings chosen before it exists
        self._editing: StoredMessage | None = None  # a question being edited in the composer
        self.model_info: ModelInfo | None = None
        self.current_id: int | None = None
        self._active: _ActiveReply | None = None
        self._next_request = 0
        self._closed = False
        self._warming = ""  # the model reading the open conversation ahead, if any
        self._process = psutil.Process()

        worker = engine.worker
        self.load_requested.connect(worker.load)
        self.generate_requested.connect(worker.generate)
        self.measure_requested.connect(worker.measure)
        self.warm_requested.connect(worker.warm)
        worker.warm_progress.connect(self._on_warm_progress)
        worker.warm_finished.connect(self._on_warm_finished)
        worker.context_exceeded.connect(self._on_context_exceeded)
        worker.usage_measured.connect(self._on_usage_measured)
        worker.model_loaded.connect(self._on_model_loaded)
        worker.model_load_failed.connect(self._on_model_load_failed)
        worker.delta_ready.connect(self._on_delta_ready)
        worker.thinking_ready.connect(self._on_thinking_ready)
        worker.speed_measured.connect(self._on_speed_measured)
        worker.tokens_streamed.connect(self._on_tokens_streamed)
        worker.prompt_measured.connect(self._on_prompt_measured)
        worker.reply_finished.connect(self._on_reply_finished)
        worker.reply_failed.connect(self._on_reply_failed)

        window.send_requested.connect(self._on_send_requested)
        window.stop_requested.connect(self._on_stop_requested)
        window.new_chat_requested.connect(self._on_new_chat_requested)
        window.conversation_selected.connect(self._on_conversation_selected)
        window.rename_requested.connect(self._on_rename_requested)
        window.delete_requested.connect(self._on_delete_requested)
        window.settings_requested.connect(self._on_settings_requested)
        window.close_requested.connect(self.shutdown)
        window.copy_last_reply_requested.connect(self._on_copy_last_reply)
        window.chat_toolbar.thinking_toggled.connect(self._on_thinking_toggled)
        window.chat_toolbar.system_prompt_requested.connect(self._on_system_prompt_requested)
        window.chat_view.action_requested.connect(self._on_message_action)
        self.history = HistoryActions(self)  # search, pin, undo, export, import
        window.composer.edit_last_requested.connect(self._on_edit_last_requested)
        window.composer.edit_cancelled.connect(self._on_edit_cancelled)

        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(MEMORY_INTERVAL_MS)
        self._memory_timer.timeout.connect(self._on_memory_tick)

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        self.refresh_conversations()
        self._on_memory_tick()
        self._memory_timer.start()
        self.load_model(self.model_path)

    def refresh_conversations(self) -> None:
        """List the conversations again and open the newest."""
        conversations = self.store.list_conversations(limit=LIST_PAGE)
        self.current_id = conversations[0].id if conversations else None
        self.window.show_conversations(conversations, self.current_id, self._more_conversations)
        self._show_current()

    def load_model(self, path: str) -> None:
        self.window.set_state(ResponseState.LOADING)
        self.window.set_model_info(None, "Loading model…")
        self.load_requested.emit(path, self.options)

    def reload(self, options: EngineOptions, path: str | None = None) -> None:
        """Load the model again with new options (or another file). A reply in
        progress is stopped first; its text is kept."""
        self.options = options
        if path is not None:
            self.model_path = path
        self.engine.stop_event.set()  # the queued load runs once the reply has stopped
        self.load_model(self.model_path)

    def set_generation_settings(
        self, overrides: dict[str, float | int], system_prompt: str, thinking_mode: str
    ) -> None:
        """Sampling the person chose (applies to the next reply) and defaults for new chats."""
        self.overrides = dict(overrides)
        self.system_prompt = system_prompt
        self.thinking_mode = thinking_mode

    @Slot()
    def shutdown(self) -> None:
        """Stop any reply, save it, free the model, close the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._memory_timer.stop()
        self.engine.close()  # sets the stop event and waits for the engine thread
        if self._active is not None:
            # The engine's last events are still queued; what was received is saved.
            self._active.recorder.finish(MessageStatus.STOPPED)
            self._active = None
        self.store.close()

    # --- window intents ---------------------------------------------------------------
    @Slot(str)
    def _on_send_requested(self, text: str) -> None:
        if self.window.state != ResponseState.IDLE or self._active is not None:
            return
        self.window.clear_error()
        self.window.take_composer_text()
        editing, self._editing = self._editing, None
        if editing is not None and editing.conversation_id == self.current_id:
            # An edited question is a new version of that turn; the old one keeps its branch.
            question = self.store.add_variant(editing.id, text)
            self.window.statusBar().clearMessage()
        else:
            if self.current_id is None:
                conv = self.store.create_conversation(title_from(text), title_is_auto=True)
                self.current_id = conv.id
                self.store.set_conversation_settings(conv.id, self._new_chat_settings())
                self._new_chat = {}
            question = self.store.add_message(self.current_id, "user", text)
        reply = self.store.add_message(self.current_id, "assistant", "", MessageStatus.STREAMING)
        self._start_reply(reply, question=question)

    def _history(
        self, conv_id: int, messages: list[StoredMessage]
    ) -> tuple[list[Message], list[int | None]]:
        """What the model is sent of ``messages`` (a stretch of the chat's active
        path from its start): the chat's system prompt, then the messages from the
        first one it still reads. Returns the messages and their ids."""
        settings = self.store.conversation_settings(conv_id)
        start = _index_of(messages, settings.get(CONTEXT_FROM))
        history: list[Message] = []
        ids: list[int | None] = []
        for m in messages[start:]:
            if m.content or m.role == "user":
                history.append(Message(m.role, m.content, m.thinking))
                ids.append(m.id)
        prompt = str(settings.get("system_prompt") or "").strip()
        if prompt and not (history and history[0].role == "system"):
            history.insert(0, Message("system", prompt))
            ids.insert(0, None)
        return history, ids

    def _start_reply(
        self,
        reply: StoredMessage,
        *,
        kind: str = "send",
        question: StoredMessage | None = None,
    ) -> None:
        """Stream into ``reply``, an assistant message on the active path: an empty,
        streaming one, or (``kind="continue"``) a cut-off one the model carries on.
        The history is everything before it."""
        conv_id = reply.conversation_id
        messages = self.store.messages(conv_id)
        before = messages[: next(i for i, m in enumerate(messages) if m.id == reply.id)]
        history, ids = self._history(conv_id, before)
        if kind == "continue":
            history.append(Message("assistant", reply.content, reply.thinking))
            ids.append(reply.id)
            recorder = ReplyRecorder.resume(self.store, reply.id)
        else:
            recorder = ReplyRecorder(self.store, reply.id)
        self.refresh_conversation(conv_id)
        self._next_request += 1
        self._active = _ActiveReply(
            self._next_request,
            conv_id,
            reply.id,
            recorder,
            kind=kind,
            question=question,
            previous_status=reply.status,
        )
        view = self.window.chat_view
        self._show_context_start(conv_id)
        view.show_messages(before, keep_scroll=True)
        view.begin_reply()
        if kind == "continue":  # what was written so far, then the rest as it comes
            if reply.thinking and not reply.content:
                view.append_thinking(reply.thinking)
            view.append_reply(reply.content)
        self.window.set_state(ResponseState.GENERATING)
        self._request_reply(self._active, history, ids)

    def _request_reply(
        self, active: _ActiveReply, history: list[Message], ids: list[int | None]
    ) -> None:
        active.history, active.history_ids = history, ids
        self.engine.stop_event.clear()
        request = ReplyRequest(
            history,
            self.params,
            self.overrides,
            self._thinking(),
            conversation_id=active.conversation_id,
            continue_reply=active.kind == "continue",
        )
        self.generate_requested.emit(active.request_id, request)

    # --- context window ----------------------------------------------------------------
    @Slot(int, object, int)
    def _on_context_exceeded(self, request_id: int, usage: ContextUsage, dropped: int) -> None:
        """The reply was not started: the chat leaves it no room. Ask, then act."""
        active = self._active
        if active is None or active.request_id != request_id or self._closed:
            return
        choice = ask_context_choice(
            self.window, used=usage.prompt_tokens, n_ctx=usage.n_ctx, dropped=dropped
        )
        if self._active is not active:  # e.g. the window closed meanwhile
            return
        if choice is ContextChoice.DROP:
            history, ids = active.history, active.history_ids
            n_system = 0
            while n_system < len(history) and history[n_system].role == "system":
                n_system += 1
            first = ids[n_system + dropped]
            settings = self.store.conversation_settings(active.conversation_id)
            settings[CONTEXT_FROM] = first
            self.store.set_conversation_settings(active.conversation_id, settings)
            if self.current_id == active.conversation_id:
                self._show_context_start(active.conversation_id)
                self._show_current(keep_scroll=True)
            self.window.statusBar().showMessage(
                f"The model no longer reads the oldest {dropped} messages of this chat; "
                "they are still here.",
                6000,
            )
            kept = history[:n_system] + history[n_system + dropped :]
            self._request_reply(active, kept, ids[:n_system] + ids[n_system + dropped :])
            return
        question = self._abandon(active)
        if choice is ContextChoice.NEW_CHAT:
            old = self.store.conversation_settings(active.conversation_id)
            self._on_new_chat_requested()
            self._new_chat = {k: old[k] for k in ("system_prompt", "thinking") if k in old}
            self._update_toolbar()
            if question:
                self.window.composer.setPlainText(question)
                self._on_send_requested(question)
            else:  # a regenerate or continue: the last question is offered to send again
                last = next((m for m in reversed(active.history) if m.role == "user"), None)
                self.window.composer.setPlainText(last.content if last else "")
        elif question:
            self.window.composer.setPlainText(question)  # back where it was typed
            self.window.composer.setFocus()

    def _abandon(self, active: _ActiveReply) -> str:
        """Undo a reply that never started; returns the text of the question it
        stored ("" if none), which is removed again."""
        self._active = None
        if active.kind == "continue":
            active.recorder.finish(active.previous_status)
        else:
            self.store.delete_message(active.message_id)  # empty: nothing is lost
        text = ""
        if active.question is not None:
            self.store.delete_message(active.question.id)
            text = active.question.content
        self.refresh_conversation(active.conversation_id)
        if self.current_id == active.conversation_id:
            self._show_current(keep_scroll=True)
        self.window.set_state(ResponseState.IDLE if self.model_info else ResponseState.NO_MODEL)
        self.reply_done.emit()
        return text

    def _show_context_start(self, conv_id: int) -> None:
        """Mark in the view where the messages the model still reads begin."""
        start = self.store.conversation_settings(conv_id).get(CONTEXT_FROM)
        set_start = getattr(self.window.chat_view, "set_context_start", None)
        if set_start is not None:
            set_start(start if isinstance(start, int) else None)

    def warm_current(self, model_name: str) -> None:
        """Read the open conversation into the model now (after a model switch), with
        progress in the status bar, so that its next turn only reads the new message.
        The window stays usable: a message sent meanwhile is answered right after."""
        conv_id = self.current_id
        if conv_id is None or self.model_info is None or self._active is not None:
            return
        history, _ = self._history(conv_id, self.store.messages(conv_id))
        if len(history) < 2:
            return
        self._warming = model_name
        self.engine.stop_event.clear()
        request = ReplyRequest(
            history, self.params, self.overrides, self._thinking(), conversation_id=conv_id
        )
        self.window.statusBar().showMessage(f"{model_name} is reading this conversation…")
        self.warm_requested.emit(request)

    @Slot(int, int)
    def _on_warm_progress(self, done: int, total: int) -> None:
        if self._closed or not self._warming or self._active is not None:
            return
        self.window.statusBar().showMessage(
            f"{self._warming} is reading this conversation: {done * 100 // max(total, 1)}%"
        )

    @Slot(int, int)
    def _on_warm_finished(self, reused: int, evaluated: int) -> None:
        if self._closed:
            return
        name, self._warming = self._warming, ""
        if name and self._active is None and self.window.state == ResponseState.IDLE:
            self.window.statusBar().showMessage(
                f"Now using {name}. The conversation continues where it was.", 8000
            )
        self.warmed.emit(reused, evaluated)

    def _measure_current(self) -> None:
        """Ask the engine how full this chat makes the context window (the meter)."""
        conv_id = self.current_id
        if conv_id is None or self.model_info is None:
            return
        active = self._active
        if active is not None and active.conversation_id == conv_id:
            return  # measured when the reply is done
        history, _ = self._history(conv_id, self.store.messages(conv_id))
        if not history:
            return
        request = ReplyRequest(history, self.params, self.overrides, self._thinking())
        self.measure_requested.emit(conv_id, request)

    @Slot(int, object)
    def _on_prompt_measured(self, request_id: int, usage: ContextUsage) -> None:
        active = self._active
        if active is not None and active.request_id == request_id:
            active.usage = usage  # the meter's base while this reply streams

    @Slot(int, int)
    def _on_tokens_streamed(self, request_id: int, tokens: int) -> None:
        """The meter grows with the reply being written."""
        active = self._active
        if active is None or active.request_id != request_id or active.usage is None:
            return
        if self._closed or active.conversation_id != self.current_id:
            return
        usage = active.usage
        self.window.chat_toolbar.set_context(
            usage.prompt_tokens + tokens, usage.n_ctx, reserve=max(0, usage.reserve - tokens)
        )

    @Slot(int, object)
    def _on_usage_measured(self, conv_id: int, usage: ContextUsage) -> None:
        if self._closed or conv_id != self.current_id:
            return
        self.window.chat_toolbar.set_context(
            usage.prompt_tokens, usage.n_ctx, warn=usage.warn, reserve=usage.reserve
        )

    # --- message actions (links under each message) -------------------------------------
    @Slot(str, int)
    def _on_message_action(self, action: str, msg_id: int) -> None:
        if action in ("copy", "toggle-thinking", "earlier"):
            return  # the view handles these itself
        if self._active is not None:
            self.window.statusBar().showMessage("Wait for the reply to finish, or stop it.", 4000)
            return
        msg = self.store.message(msg_id)
        if msg is None:
            return
        if action == "regenerate":
            self._start_reply(
                self.store.add_variant(msg.id, "", MessageStatus.STREAMING), kind="regenerate"
            )
        elif action == "continue":
            if msg.role == "assistant" and msg.status in _CONTINUABLE:
                self._start_reply(msg, kind="continue")
        elif action == "edit":
            self.edit_message(msg)  # the composer, with the text
            return
        elif action == "delete":
            if not self.window.confirm(
                "Delete message", "Delete this message?", "It is removed from this computer."
            ):
                return  # cancelled: the focus stays on the link
            self.store.delete_message(msg.id)
            self._show_current()
        elif action in ("prev", "next"):
            versions = self.store.variants(msg.id)
            index = next(i for i, v in enumerate(versions) if v.id == msg.id)
            index += -1 if action == "prev" else 1
            if 0 <= index < len(versions):
                self.store.select_variant(versions[index].id)
                self._show_current(keep_scroll=True)
        else:
            return
        # The link used is gone or moved (a new reply, a deleted message, another
        # version): the person goes on in the message box, not on a neighbouring link.
        self.window.composer.setFocus()

    def edit_message(self, msg: StoredMessage) -> None:
        """Put a question back in the composer; sending it makes a new version."""
        self._editing = msg
        self.window.composer.setPlainText(msg.content)
        self.window.composer.setFocus()
        self.window.statusBar().showMessage(
            "Editing your message: Enter sends it as a new version, Esc cancels."
        )

    @Slot()
    def _on_edit_last_requested(self) -> None:
        if self.current_id is None or self._active is not None:
            return
        questions = [m for m in self.store.messages(self.current_id) if m.role == "user"]
        if questions:
            self.edit_message(questions[-1])

    @Slot()
    def _on_edit_cancelled(self) -> None:
        if self._editing is not None:
            self._editing = None
            self.window.composer.clear()
            self.window.statusBar().clearMessage()

    @Slot()
    def _on_stop_requested(self) -> None:
        if self._active is not None:
            self.engine.stop_event.set()
            self.window.set_state(ResponseState.STOPPING)

    @Slot()
    def _on_new_chat_requested(self) -> None:
        self.current_id = None
        self._new_chat = {}
        self.window.conversation_list.select_conversation(None)
        self._show_current()
        self.window.composer.setFocus()

    @Slot(int)
    def _on_conversation_selected(self, conv_id: int) -> None:
        if conv_id != self.current_id:
            self.current_id = conv_id
            self._show_current()

    @Slot(int, str)
    def _on_rename_requested(self, conv_id: int, title: str) -> None:
        self.store.rename_conversation(conv_id, title)
        self.refresh_conversation(conv_id)

    @Slot(int)
    def _on_delete_requested(self, conv_id: int) -> None:
        if self._active is not None and self._active.conversation_id == conv_id:
            self.engine.stop_event.set()
        conv = self.store.conversation(conv_id)
        self.store.delete_conversation(conv_id)  # kept until purged: can be undone
        self.window.conversations.remove(conv_id)
        if self.current_id == conv_id:
            self._on_new_chat_requested()
        if conv is not None:
            self.window.offer_undo(f"Deleted “{conv.title}”.", conv_id)

    @Slot()
    def _on_settings_requested(self) -> None:
        self.window.statusBar().showMessage("Settings are coming in a later version.", 4000)

    @Slot()
    def _on_copy_last_reply(self) -> None:
        if self.current_id is None:
            return
        replies = [m for m in self.store.messages(self.current_id) if m.role == "assistant"]
        if replies and replies[-1].content:
            QGuiApplication.clipboard().setText(replies[-1].content)  # the answer, no thinking
            self.window.statusBar().showMessage("Copied the last reply.", 3000)

    # --- engine events -------------------------------------------------------------------
    @Slot(object)
    def _on_model_loaded(self, info: ModelInfo) -> None:
        if self._closed:
            return  # queued before shutdown
        self.model_info = info
        self.window.set_model_info(info)
        self.window.set_state(ResponseState.IDLE)
        self._update_toolbar()
        self._measure_current()
        self.model_changed.emit()

    @Slot(str)
    def _on_model_load_failed(self, message: str) -> None:
        if self._closed:
            return
        self.model_info = None
        self.window.set_model_info(None, "No model loaded")
        self.window.set_state(ResponseState.NO_MODEL)
        self.window.show_error(f"{message} Your conversations are safe and can still be read.")
        self.model_changed.emit()

    @Slot(int, str)
    def _on_delta_ready(self, request_id: int, text: str) -> None:
        active = self._active
        if active is None or active.request_id != request_id:
            return
        active.recorder.append(text)
        if self.current_id == active.conversation_id:
            self.window.chat_view.append_reply(text)

    @Slot(int, str)
    def _on_thinking_ready(self, request_id: int, text: str) -> None:
        active = self._active
        if active is None or active.request_id != request_id:
            return
        append = getattr(active.recorder, "append_thinking", None)
        if append is not None:
            append(text)
        if self.current_id == active.conversation_id:
            self.window.chat_view.append_thinking(text)

    # --- per-chat settings (stored with the conversation) ------------------------------
    def _chat_settings(self) -> dict[str, object]:
        if self.current_id is None:
            return self._new_chat
        return self.store.conversation_settings(self.current_id)

    def _set_chat_setting(self, key: str, value: object) -> None:
        if self.current_id is None:
            self._new_chat[key] = value  # applied when the chat is created
            return
        settings = self.store.conversation_settings(self.current_id)
        settings[key] = value
        self.store.set_conversation_settings(self.current_id, settings)

    def _new_chat_settings(self) -> dict[str, object]:
        settings: dict[str, object] = {}
        if self.system_prompt.strip():
            settings["system_prompt"] = self.system_prompt.strip()
        settings.update(self._new_chat)
        return settings

    @Slot(bool)
    def _on_thinking_toggled(self, on: bool) -> None:
        self._set_chat_setting("thinking", on)

    @Slot()
    def _on_system_prompt_requested(self) -> None:
        prompt = self.window.ask_system_prompt(self.chat_system_prompt())
        if prompt is not None:
            self._on_system_prompt_changed(prompt)

    def _on_system_prompt_changed(self, prompt: str) -> None:
        self._set_chat_setting("system_prompt", prompt.strip())
        self.window.statusBar().showMessage(
            "This chat's system prompt is set: it applies from the next reply.", 4000
        )

    def chat_system_prompt(self) -> str:
        """This chat's system prompt (a new chat: the default from Settings)."""
        value = self._chat_settings().get("system_prompt")
        return str(value) if value is not None else self.system_prompt

    def _thinking(self) -> bool | None:
        """The thinking switch for the next reply: this chat's, else the default."""
        chosen = self._chat_settings().get("thinking")
        if isinstance(chosen, bool):
            return chosen
        if self.thinking_mode == "on":
            return True
        if self.thinking_mode == "off":
            return False
        if self.model_info is not None and self.model_info.supports_thinking:
            return self.model_info.thinking_default
        return None

    @Slot(int, float)
    def _on_speed_measured(self, request_id: int, tokens_per_s: float) -> None:
        if self._active is not None and self._active.request_id == request_id:
            self.window.set_speed(tokens_per_s)

    @Slot(int, object)
    def _on_reply_finished(self, request_id: int, done: ReplyDone) -> None:
        status = _STATUS_FOR_REASON[done.reason]
        if self._finish(request_id, status):
            self.window.set_speed(done.stats.tokens_per_s)
            if done.reason == FinishReason.CONTEXT:
                self.window.show_error(
                    "The reply stopped because the conversation filled the model's context "
                    "window. Send your next message and Hearth will ask which messages the "
                    "model may stop reading, or start a new chat."
                )

    @Slot(int, str)
    def _on_reply_failed(self, request_id: int, message: str) -> None:
        if self._finish(request_id, MessageStatus.FAILED):
            self.window.show_error(message)

    def _finish(self, request_id: int, status: MessageStatus) -> bool:
        active = self._active
        if active is None or active.request_id != request_id:
            return False
        active.recorder.finish(status)
        self._active = None
        if self.current_id == active.conversation_id:
            view = self.window.chat_view
            view.end_reply(status)
            view.show_messages(self.store.messages(active.conversation_id), keep_scroll=True)
            self._measure_current()
        self.refresh_conversation(active.conversation_id)
        self.window.set_state(ResponseState.IDLE if self.model_info else ResponseState.NO_MODEL)
        self.reply_done.emit()
        return True

    @Slot()
    def _on_memory_tick(self) -> None:
        self.window.set_memory(self._process.memory_info().rss)

    # --- helpers ------------------------------------------------------------------------
    def _more_conversations(self, offset: int) -> list[Conversation]:
        return self.store.list_conversations(limit=LIST_PAGE, offset=offset)

    def _update_toolbar(self) -> None:
        bar = self.window.chat_toolbar
        conv = self.store.conversation(self.current_id) if self.current_id is not None else None
        bar.set_title(conv.title if conv else "New chat")
        info = self.model_info
        bar.set_thinking_available(bool(info and info.supports_thinking))
        bar.set_thinking(bool(self._thinking()))
        if conv is None:
            bar.set_context(0, info.n_ctx if info else 1)

    def _show_current(self, *, keep_scroll: bool = False) -> None:
        self._update_toolbar()
        view = self.window.chat_view
        if self.current_id is None:
            self._show_context_start_none()
            view.show_messages([])
            return
        self._show_context_start(self.current_id)
        self._measure_current()
        messages = self.store.messages(self.current_id)
        active = self._active
        if active is not None and active.conversation_id == self.current_id:
            # Coming back to a reply that is still streaming: show what has
            # arrived, then keep appending.
            view.show_messages([m for m in messages if m.id != active.message_id])
            view.begin_reply()
            view.append_reply(active.recorder.text)
        else:
            view.show_messages(messages, keep_scroll=keep_scroll)

    def open_conversation(self, conv_id: int) -> None:
        """Show ``conv_id`` (e.g. a search hit's chat) as the current conversation."""
        self.current_id = conv_id
        self._show_current()

    def refresh_conversation(self, conv_id: int) -> None:
        conv = self.store.conversation(conv_id)
        if conv is not None:
            self.window.conversations.upsert(conv)
            if conv_id == self.current_id:
                self.window.conversation_list.select_conversation(conv_id)
                self.window.chat_toolbar.set_title(conv.title)

    def _show_context_start_none(self) -> None:
        set_start = getattr(self.window.chat_view, "set_context_start", None)
        if set_start is not None:
            set_start(None)


# A reply cut by the full context window too: the worker then asks the context
# question (drop the oldest turns / new chat / cancel) before it writes on.
_CONTINUABLE = (
    MessageStatus.LENGTH,
    MessageStatus.CONTEXT,
    MessageStatus.STOPPED,
    MessageStatus.INTERRUPTED,
)


def _index_of(messages: list[StoredMessage], msg_id: object) -> int:
    """Where message ``msg_id`` is in ``messages``; 0 if it is not there."""
    if isinstance(msg_id, int):
        for i, m in enumerate(messages):
            if m.id == msg_id:
                return i
    return 0
