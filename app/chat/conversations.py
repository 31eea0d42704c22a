"""ConversationController: which chat is open, the list of chats, and each chat's own settings.

GUI thread. It shows the current chat (list row, toolbar, messages), renames,
deletes (with Undo), copies the last reply, and keeps each chat's settings
(``ChatSettings``: system prompt, thinking switch, where the model starts
reading) in the store. It builds the ``Turn`` the model reads of a chat with
the one turn model (``engine.history.turns``) the command line uses too.

A reply in progress belongs to ``ReplyController``; this controller only asks
it (``LiveReply``) what to show of a chat whose reply is still streaming.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QGuiApplication

from app.engine_client import EngineClient
from app.notifier import Notifier
from engine.history.doc_prompt import VectorRanking
from engine.history.store import ChatStore
from engine.history.turns import (
    ChatSettings,
    PromptMessages,
    ThinkingMode,
    chat_settings,
    prompt_of,
    prompt_with_documents,
    save_chat_settings,
    thinking_for,
    title_from,
)
from engine.history.types import Conversation, StoredMessage
from engine.types import ModelInfo, Turn
from ui.main_window import MainWindow

LIST_PAGE = 200  # conversations listed at a time; more as the sidebar scrolls


@dataclass(frozen=True, slots=True)
class GenerationDefaults:
    """What the person set in Settings → Generation: the sampling on top of the
    model's defaults, and the system prompt and thinking of new chats."""

    overrides: Mapping[str, float | int] = field(default_factory=lambda: MappingProxyType({}))
    system_prompt: str = ""
    thinking: ThinkingMode = ThinkingMode.MODEL


@dataclass(frozen=True, slots=True)
class LiveReply:
    """A reply still streaming into an open chat: what of it has arrived."""

    message_id: int
    text: str
    thinking: str


class ConversationController(QObject):
    # The chat on screen changed (or was shown again): its id, None for a new chat.
    current_changed = Signal(object)

    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        engine: EngineClient,
        notifier: Notifier,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.window = window
        self.store = store
        self.engine = engine
        self.notifier = notifier
        self.defaults = GenerationDefaults()
        self._current: int | None = None
        self._closed = False
        self._pending = ChatSettings()  # settings chosen for a chat not yet created
        # What of a still-streaming reply to show (set by ReplyController).
        self.live_reply: Callable[[int], LiveReply | None] = lambda _conv_id: None
        # Chunk ids by meaning (an embedding model; app/chat/documents.py): None, words only.
        self.vector_ranking: Callable[[], VectorRanking | None] = lambda: None
        # A message as the person should see it: a reply not yet saved (the disk was
        # full) shows what was written, not what the store still has.
        self.shown_as: Callable[[StoredMessage], StoredMessage] = lambda m: m

        window.new_chat_requested.connect(self._on_new_chat_requested)
        window.conversation_selected.connect(self._on_conversation_selected)
        window.rename_requested.connect(self._on_rename_requested)
        window.copy_last_reply_requested.connect(self._on_copy_last_reply)
        window.chat_toolbar.thinking_toggled.connect(self._on_thinking_toggled)
        window.chat_toolbar.system_prompt_requested.connect(self._on_system_prompt_requested)
        engine.model_changed.connect(self._on_model_changed)

    # --- the current chat ---
    @property
    def current_id(self) -> int | None:
        return self._current

    def refresh_conversations(self) -> None:
        """List the conversations again and open the newest."""
        conversations: list[Conversation] = []
        with self.notifier.guard("Your chats are still on disk; restart Hearth to see them."):
            conversations = self.store.list_conversations(limit=LIST_PAGE)
        self._current = conversations[0].id if conversations else None
        self.window.show_conversations(conversations, self._current, self._more_conversations)
        self.show_current()

    def open_conversation(self, conv_id: int) -> None:
        """Show ``conv_id`` (e.g. a search hit's chat) as the current conversation."""
        self._current = conv_id
        self.window.conversation_list.select_conversation(conv_id)
        self.show_current()

    def refresh_conversation(self, conv_id: int) -> None:
        """Show ``conv_id``'s row (title, order, pin) as the store has it now."""
        with self.notifier.guard():
            conv = self.store.conversation(conv_id)
            if conv is not None:
                self.window.conversations.upsert(conv)
                if conv_id == self._current:
                    self.window.conversation_list.select_conversation(conv_id)
                    self.window.chat_toolbar.set_title(conv.title)

    def new_chat(self) -> None:
        self._current = None
        self._pending = ChatSettings()
        self.window.conversation_list.select_conversation(None)
        self.show_current()
        self.window.composer.setFocus()

    def create_for(self, text: str) -> int:
        """Create the chat a first message ``text`` starts, with the settings chosen for
        it so far. Raises ``KnownError`` (nothing is shown then)."""
        conv = self.store.create_conversation(title_from(text), title_is_auto=True)
        settings = self._pending
        if settings.system_prompt is None and self.defaults.system_prompt.strip():
            settings = settings.with_(system_prompt=self.defaults.system_prompt.strip())
        try:
            save_chat_settings(self.store, conv.id, settings)
        except BaseException:
            self._current = conv.id  # the next try goes on in this (empty) chat
            raise
        self._current = conv.id
        self._pending = ChatSettings()
        return conv.id

    def show_current(self, *, keep_scroll: bool = False) -> None:
        """Show the current chat: its messages, its toolbar, where the model starts reading."""
        self.show_toolbar()
        view = self.window.chat_view
        conv_id = self._current
        if conv_id is None:
            view.set_context_start(None)
            view.show_messages([])
            self.current_changed.emit(None)
            return
        messages: list[StoredMessage] = []
        with self.notifier.guard():
            view.set_context_start(self.settings(conv_id).context_from)
            messages = [self.shown_as(m) for m in self.store.messages(conv_id)]
        live = self.live_reply(conv_id)
        if live is not None:
            # Back to a reply that is still streaming: what has arrived, then the rest.
            view.show_messages([m for m in messages if m.id != live.message_id])
            view.begin_reply()
            if live.thinking and not live.text:
                view.append_thinking(live.thinking)
            view.append_reply(live.text)
        else:
            view.show_messages(messages, keep_scroll=keep_scroll)
        self.current_changed.emit(conv_id)

    # --- per-chat settings ---
    def settings(self, conv_id: int | None = None) -> ChatSettings:
        """The settings of chat ``conv_id`` (default: the current one; a chat not yet
        created: those chosen for it). Raises ``KnownError`` if they cannot be read."""
        conv_id = self._current if conv_id is None else conv_id
        if conv_id is None:
            return self._pending
        return chat_settings(self.store, conv_id)

    def change_settings(self, conv_id: int | None = None, **changes: Any) -> bool:
        """Change some of a chat's settings (default: the current one). False (and a
        sentence) if they could not be saved."""
        conv_id = self._current if conv_id is None else conv_id
        if conv_id is None:
            self._pending = self._pending.with_(**changes)
            return True
        with self.notifier.guard() as g:
            save_chat_settings(self.store, conv_id, self.settings(conv_id).with_(**changes))
        return not g.failed

    def system_prompt(self) -> str:
        """The current chat's system prompt (a new chat: the default from Settings)."""
        prompt = self.settings().system_prompt
        return prompt if prompt is not None else self.defaults.system_prompt

    def thinking(self, settings: ChatSettings | None = None) -> bool | None:
        """The thinking switch for the current chat's (or ``settings``') next reply."""
        chosen = self.settings() if settings is None else settings
        return thinking_for(chosen, self.defaults.thinking, self.engine.model_info)

    def turn_for(
        self,
        conv_id: int,
        messages: Sequence[StoredMessage],
        *,
        continue_reply: bool = False,
    ) -> tuple[Turn, PromptMessages]:
        """What the model reads for a reply after ``messages`` (a stretch of chat
        ``conv_id``'s active path from its start). Raises ``KnownError``."""
        settings = self.settings(conv_id)
        info = self.engine.model_info
        if info is not None:  # documents read whole or by passages, by the model's window
            prompt = prompt_with_documents(
                self.store,
                messages,
                settings,
                n_ctx=info.n_ctx,
                data=self.store.with_data,
                vector_ranking=self.vector_ranking(),
            )
        else:
            prompt = prompt_of(messages, settings, self.store.with_data)
        turn = Turn(
            messages=prompt.messages,
            thinking=self.thinking(settings),
            overrides=MappingProxyType(dict(self.defaults.overrides)),
            continue_reply=continue_reply,
            cache_key=conv_id,
        )
        return turn, prompt

    # --- messages ---
    def delete_message(self, msg: StoredMessage) -> None:
        with self.notifier.guard():
            self.store.delete_message(msg.id)
        self.show_current()

    def show_version(self, msg: StoredMessage, step: int) -> None:
        """Show the previous (-1) or next (+1) version of the turn ``msg`` is in."""
        with self.notifier.guard():
            versions = self.store.variants(msg.id)
            index = next(i for i, v in enumerate(versions) if v.id == msg.id) + step
            if 0 <= index < len(versions):
                self.store.select_variant(versions[index].id)
        self.show_current(keep_scroll=True)

    def delete_conversation(self, conv_id: int) -> None:
        with self.notifier.guard() as g:
            conv = self.store.conversation(conv_id)
            self.store.delete_conversation(conv_id)  # kept until purged: can be undone
        if g.failed:
            return
        self.window.conversations.remove(conv_id)
        if self._current == conv_id:
            self.new_chat()
        if conv is not None:
            self.notifier.offer_undo(f"Deleted “{conv.title}”.", conv_id)

    # --- window intents ---
    @Slot()
    def _on_new_chat_requested(self) -> None:
        self.new_chat()

    @Slot(int)
    def _on_conversation_selected(self, conv_id: int) -> None:
        if conv_id != self._current:
            self._current = conv_id
            self.show_current()

    @Slot(int, str)
    def _on_rename_requested(self, conv_id: int, title: str) -> None:
        with self.notifier.guard():
            self.store.rename_conversation(conv_id, title)
        self.refresh_conversation(conv_id)

    @Slot()
    def _on_copy_last_reply(self) -> None:
        if self._current is None:
            return
        with self.notifier.guard():
            replies = [m for m in self.store.messages(self._current) if m.role == "assistant"]
            if replies and replies[-1].content:
                QGuiApplication.clipboard().setText(replies[-1].content)  # the answer only
                self.notifier.info("Copied the last reply.", 3000)

    @Slot(bool)
    def _on_thinking_toggled(self, on: bool) -> None:
        if not self.change_settings(thinking=on):
            self.window.chat_toolbar.set_thinking(not on)  # as it still is

    @Slot()
    def _on_system_prompt_requested(self) -> None:
        with self.notifier.guard():
            prompt = self.window.ask_system_prompt(self.system_prompt())
            if prompt is not None and self.change_settings(system_prompt=prompt.strip()):
                self.notifier.info(
                    "This chat's system prompt is set: it applies from the next reply."
                )

    @Slot(object, str)
    def _on_model_changed(self, _info: ModelInfo | None, _error: str) -> None:
        self.show_toolbar()

    # --- helpers ---
    def close(self) -> None:
        """The store is closing: the list asks for no more rows."""
        self._closed = True

    def _more_conversations(self, offset: int) -> list[Conversation]:
        if self._closed:
            return []
        with self.notifier.guard():
            return self.store.list_conversations(limit=LIST_PAGE, offset=offset)
        return []

    def show_toolbar(self) -> None:
        bar = self.window.chat_toolbar
        info = self.engine.model_info
        conv: Conversation | None = None
        thinking: bool | None = None
        with self.notifier.guard():
            conv = self.store.conversation(self._current) if self._current is not None else None
            thinking = self.thinking()
        bar.set_title(conv.title if conv else "New chat")
        bar.set_thinking_available(bool(info and info.supports_thinking))
        bar.set_thinking(bool(thinking))
        if conv is None:
            bar.set_context(0, info.n_ctx if info else 1)
