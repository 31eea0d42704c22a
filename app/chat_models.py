"""Each chat's model (issue 15: a chat or the default can use a server's model).

GUI thread. A chat remembers the model that last wrote in it (``ChatSettings.model``,
stored with the chat: set when a reply ends, and when the person picks a model for
it). Opening a chat that last used another model than the one in use never switches
by surprise (a switch can mean loading gigabytes, or sending the chat to a server): a
strip above the composer says which model the chat was on and where the next message
goes now, and offers to switch (``ChatModelNotice``). The toolbar's picker
(``ModelPicker``) names the model the next message goes to and lists the models on
this computer and on each connection's server; picking one switches the model for
this chat, through the model manager, as Settings → Model does (it is also the
default for new chats). The line above the composer (app.connections.Destination)
keeps saying where messages go; the strip says it too when a chat changes hands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Slot

from app.chat.conversations import ConversationController
from app.chat.replies import ReplyController
from app.connections import Connections, connection_of, family_of
from app.engine_client import EngineClient
from app.model_jobs import LOCAL_FILES
from app.model_manager import ModelManager
from app.notifier import Notifier
from engine.errors import KnownError
from engine.history.store import ChatStore
from engine.history.turns import ChatModel
from engine.models.service import label
from ui.main_window import MainWindow
from ui.model_picker import ChatModelNotice, ModelPicker, PickerEntry

log = logging.getLogger(__name__)

HERE = "On this computer"
_PENDING = -1  # a pick made in a chat not created yet


class ChatModels(QObject):
    def __init__(
        self,
        window: MainWindow,
        store: ChatStore,
        engine: EngineClient,
        models: ModelManager,
        conversations: ConversationController,
        replies: ReplyController,
        notifier: Notifier,
        *,
        connections: Connections | None,
        open_settings: Callable[[], None],
    ) -> None:
        super().__init__()
        self.window = window
        self.store = store
        self.engine = engine
        self.models = models
        self.conversations = conversations
        self.notifier = notifier
        self.connections = connections
        self._picked: int | None = None  # the chat a pick or "Use it" was made for
        self._kept: set[int] = set()  # chats whose strip the person closed (this session)
        self.picker = ModelPicker()
        window.chat_toolbar.add_tool(self.picker)
        self.notice = ChatModelNotice()
        window.add_notice_bar(self.notice)
        self.picker.picked.connect(self._on_picked)
        self.picker.opening.connect(self.fill_menu)
        self.picker.manage_requested.connect(open_settings)
        self.notice.switch_clicked.connect(self._on_use_clicked)
        self.notice.dismissed.connect(self._on_kept)
        conversations.current_changed.connect(self.update)
        engine.model_loading.connect(self.update)
        engine.model_changed.connect(self.update)
        models.switch_finished.connect(self._on_switch_finished)
        replies.reply_ended.connect(self._on_reply_ended)
        self.update()

    # --- naming models ----------------------------------------------------------------
    def of_path(self, path: str) -> ChatModel | None:
        """The choice that names the model a reply records as ``path`` (its file, or
        ``{base_url}/models/{id}`` for a server's); None for a server no connection has."""
        if not path:
            return None
        if "://" in path:
            base, _, model = path.rpartition("/models/")
            servers = self.connections.all() if self.connections is not None else []
            named = next((e.name for e in servers if e.base_url == base), None)
            return ChatModel(family_of(named), model, f"{model} on {named}") if named else None
        entry = self.models.service.entry_for_path(path)
        if entry is not None:
            return ChatModel(entry.family, entry.quantization, label(entry))
        info = self.engine.model_info
        named = info.name if info is not None and info.path == path else Path(path).name
        return ChatModel(LOCAL_FILES, path, named)

    def in_use(self) -> ChatModel | None:
        """The model the next message goes to (None while none is loaded)."""
        remote = self.engine.remote
        if remote is not None:
            name = remote.connection
            return ChatModel(family_of(name), remote.model, f"{remote.model} on {name}")
        info = self.engine.model_info
        if info is None:
            return None
        return self.of_path(info.path)

    def _missing(self, model: ChatModel) -> str:
        """Why ``model`` cannot be switched to now, as the end of a sentence; "" if it can."""
        server = connection_of(model.source)
        if server is not None:
            if self.connections is None or self.connections.get(server) is None:
                return f"but there is no connection named {server} any more"
            return ""
        if model.source == LOCAL_FILES:
            return "" if Path(model.choice).is_file() else "but its file is not there any more"
        target = self.models.resolve(model.source, model.choice)
        return "" if target.path is not None else "but it is not downloaded on this computer"

    def _where(self, model: ChatModel) -> str:
        remote = self.engine.remote
        if remote is not None:
            return f"your next message goes to {model.name} at {remote.base_url}"
        return f"your next message goes to {model.name} and stays on this computer"

    # --- the picker and the strip -------------------------------------------------------
    @Slot()
    @Slot(object)
    @Slot(str)
    @Slot(object, str)
    def update(self, *_args: object) -> None:
        """Name the model in use on the picker; offer the chat's own model if it differs."""
        now = self.in_use()
        if self.engine.loading:
            self.picker.setText("Loading…")
        elif now is not None:
            where = "runs on a server" if self.engine.remote else "runs on this computer"
            self.picker.setText(now.name)
            self.picker.setToolTip(
                f"{now.name} {where}: this chat's next message goes to it. Click to change."
            )
        else:
            self.picker.setText("No model")
        info = self.engine.model_info
        known = info is None or info.extra.get("context") != "assumed"
        self.window.chat_toolbar.set_context_known(known)
        self._offer(now)

    def _offer(self, now: ChatModel | None) -> None:
        conv_id = self.conversations.current_id
        chosen: ChatModel | None = None
        if conv_id is not None and now is not None and conv_id not in self._kept:
            try:
                chosen = self.conversations.settings(conv_id).model
            except KnownError as exc:
                log.warning("could not read the chat's settings: %s", exc)
        if (
            chosen is None
            or now is None
            or (chosen.source, chosen.choice)
            == (
                now.source,
                now.choice,
            )
        ):
            self.notice.clear()
            return
        missing = self._missing(chosen)
        where = self._where(now)
        if missing:
            self.notice.show_offer(f"This chat last used {chosen.name}, {missing}; {where}.")
        else:
            short = chosen.choice if connection_of(chosen.source) else chosen.name
            self.notice.show_offer(f"This chat last used {chosen.name}; {where}.", f"Use {short}")

    @Slot()
    def fill_menu(self) -> None:
        """The menu's models, as they are now (asked when it opens): the installed
        files, then each connection's models as its server last listed them."""
        service = self.models.service
        entries: list[PickerEntry] = []
        for family, _name in service.families():
            for entry in service.entries(family):
                path = service.installed(entry)
                if path is not None:
                    entries.append(
                        PickerEntry(
                            entry.family, entry.quantization, label(entry), HERE, note=str(path)
                        )
                    )
        for own in service.own_files():
            entries.append(
                PickerEntry(LOCAL_FILES, str(own.path), own.name, HERE, note=str(own.path))
            )
        now = self.in_use()
        local_now = now is not None and connection_of(now.source) is None
        if (
            local_now
            and now is not None
            and not any((e.source, e.choice) == (now.source, now.choice) for e in entries)
        ):  # a model loaded from elsewhere (a file given at launch)
            entries.insert(0, PickerEntry(now.source, now.choice, now.name, HERE))
        for endpoint in self.connections.all() if self.connections is not None else []:
            group = f"On {endpoint.name} ({endpoint.base_url})"
            listed = self.connections.models_of(endpoint.name) if self.connections else None
            if listed is None or listed.problem:
                if self.connections is not None:
                    self.connections.ask_models(endpoint.name)
                text = f"Asking {endpoint.name} for its models…"
                if listed is not None:
                    text = f"{endpoint.name} did not list its models"
                note = listed.problem if listed is not None else ""
                entries.append(PickerEntry("", "", text, group, enabled=False, note=note))
                continue
            for model in listed.models:
                entries.append(
                    PickerEntry(
                        family_of(endpoint.name), model, model, group, note=endpoint.base_url
                    )
                )
        current = (now.source, now.choice) if now is not None else None
        self.picker.set_entries(entries, current, self.picker.text(), tip=self.picker.toolTip())

    # --- what the person does -----------------------------------------------------------
    @Slot(str, str)
    def _on_picked(self, source: str, choice: str) -> None:
        conv_id = self.conversations.current_id
        now = self.in_use()
        if now is not None and (now.source, now.choice) == (source, choice):
            self._remember(conv_id, now)
            return
        self._picked = _PENDING if conv_id is None else conv_id
        self.models.select(source, choice)

    @Slot()
    def _on_use_clicked(self) -> None:
        conv_id = self.conversations.current_id
        if conv_id is None:
            return
        try:
            chosen = self.conversations.settings(conv_id).model
        except KnownError as exc:
            self.notifier.known(exc)
            return
        if chosen is not None:
            self._picked = conv_id
            self.models.select(chosen.source, chosen.choice)

    @Slot()
    def _on_kept(self) -> None:
        conv_id = self.conversations.current_id
        if conv_id is not None:
            self._kept.add(conv_id)

    @Slot(bool)
    def _on_switch_finished(self, ok: bool) -> None:
        picked, self._picked = self._picked, None
        now = self.in_use()
        if ok and picked is not None and now is not None:
            self._remember(None if picked == _PENDING else picked, now)
        self.update()

    @Slot(int, int, object)
    def _on_reply_ended(self, conv_id: int, msg_id: int, _status: object) -> None:
        try:
            msg = self.store.message(msg_id)
        except KnownError as exc:
            log.warning("could not read the reply %d: %s", msg_id, exc)
            return
        wrote = self.of_path(msg.model) if msg is not None else None
        if wrote is not None:
            self._remember(conv_id, wrote)

    def _remember(self, conv_id: int | None, model: ChatModel) -> None:
        try:
            if self.conversations.settings(conv_id).model == model:
                return
        except KnownError:
            pass  # change_settings says so
        self.conversations.change_settings(conv_id, model=model)
        if conv_id is not None:
            self._kept.discard(conv_id)
