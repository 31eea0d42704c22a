"""ChatPort: what the models and settings code (app/model_manager.py, model_page.py,
settings_controller.py) reaches of the chat side, in the shape it reaches it today.

Those modules were written against the old ChatController (``chat.window``,
``chat.model_info``, ``chat.reload(...)``, ``chat.engine.worker.model_loaded``).
This port gives them exactly that surface, delegating every call to its one
owner: the EngineClient for the model, the controllers for chats and replies.
It holds no state of its own. Once those modules take the EngineClient, the
Notifier and the controllers directly, this file goes.

R5: the port hears ``model_changed`` after every controller (it is connected
last), so the models code sees the client, the state and the window already
updated, and its fallback banner replaces the controller's, never the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from PySide6.QtCore import QObject, Signal, Slot

from app.chat.context import ContextController
from app.chat.conversations import ConversationController, GenerationDefaults
from app.chat.replies import ReplyController
from app.engine_client import EngineClient
from app.notifier import Notifier
from engine.history.store import ChatStore
from engine.history.turns import ThinkingMode
from engine.types import EngineOptions, ModelInfo
from ui.main_window import MainWindow


class _EngineEvents(QObject):
    """``chat.engine.worker`` as the models code knows it: the load events (re-sent
    by the port, on the GUI thread) and the models folder."""

    model_loaded = Signal(object)  # ModelInfo
    model_load_failed = Signal(str)  # sentence

    def __init__(self, engine: EngineClient) -> None:
        super().__init__(engine)
        self._engine = engine

    def set_models_dir(self, folder: Path) -> None:
        self._engine.relocate(folder)


class _EngineHandle:
    def __init__(self, events: _EngineEvents) -> None:
        self.worker = events


class ChatPort(QObject):
    reply_done = Signal()  # a reply ended and the window is usable again
    model_changed = Signal()  # a load ended (loaded or failed)
    warmed = Signal(int, int)  # after warm_current(): tokens reused, tokens read

    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        engine: EngineClient,
        conversations: ConversationController,
        replies: ReplyController,
        context: ContextController,
        notifier: Notifier,
    ) -> None:
        super().__init__()
        self.window = window
        self.store = store
        self.notifier = notifier
        self._client = engine
        self._conversations = conversations
        self._context = context
        self._events = _EngineEvents(engine)
        self.engine = _EngineHandle(self._events)
        replies.reply_ended.connect(self._on_reply_ended)
        context.warmed.connect(self.warmed)
        engine.model_changed.connect(self._on_model_changed)
        # SettingsController replaces this stub with its dialog.
        window.settings_requested.connect(self._on_settings_requested)

    # --- the model (owned by the EngineClient) ---
    @property
    def model_info(self) -> ModelInfo | None:
        return self._client.model_info

    @model_info.setter
    def model_info(self, info: ModelInfo | None) -> None:
        # Only a new name or a moved folder is ever written here; both have an owner.
        current = self._client.model_info
        if info is None or current is None:
            return
        if Path(info.path).parent != Path(current.path).parent:
            self._client.relocate(Path(info.path).parent)
        if info.name != current.name:
            self._client.rename_model(info.name)

    @property
    def model_path(self) -> str:
        return self._client.model_path

    @model_path.setter
    def model_path(self, path: str) -> None:
        self._client.set_path(path)

    @property
    def options(self) -> EngineOptions:
        return self._client.options

    @options.setter
    def options(self, options: EngineOptions) -> None:
        self._client.set_options(options)

    def reload(self, options: EngineOptions, path: str | None = None) -> None:
        """Load the model again with new options (or another file). A reply in
        progress is stopped first; its text is kept."""
        self._client.load(path, options)

    def warm_current(self, model_name: str) -> None:
        self._context.warm_current(model_name)

    # --- chats ---
    @property
    def current_id(self) -> int | None:
        return self._conversations.current_id

    @property
    def overrides(self) -> Mapping[str, float | int]:
        return self._conversations.defaults.overrides

    def refresh_conversations(self) -> None:
        self._conversations.refresh_conversations()

    def set_generation_settings(
        self, overrides: Mapping[str, float | int], system_prompt: str, thinking_mode: str
    ) -> None:
        """Sampling the person chose (applies to the next reply) and defaults for new chats."""
        self._conversations.defaults = GenerationDefaults(
            MappingProxyType(dict(overrides)), system_prompt, ThinkingMode(thinking_mode)
        )
        self._conversations.show_toolbar()

    # --- events ---
    @Slot(int, int, object)
    def _on_reply_ended(self, _conv_id: int, _msg_id: int, _status: object) -> None:
        self.reply_done.emit()

    @Slot(object, str)
    def _on_model_changed(self, info: ModelInfo | None, error: str) -> None:
        if info is not None:
            self._events.model_loaded.emit(info)
        else:
            self._events.model_load_failed.emit(error)
        self.model_changed.emit()

    @Slot()
    def _on_settings_requested(self) -> None:
        self.notifier.info("Settings are coming in a later version.")
