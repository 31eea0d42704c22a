"""The window's side of remote models (issue 15): the person's connections, the
Settings → Connections page, and the line that says where a chat's messages go.

GUI thread. ``Connections`` owns the list (engine.endpoints.store, a JSON file), the
API keys (engine.endpoints.keys, the system keyring: asked off the GUI thread, and
by the engine thread when a remote model loads) and each connection's models as last
listed (``GET /v1/models``, in the background). ``ConnectionsPage`` carries out the
page's intents; ``DestinationLine`` shows, above the composer, where the messages go
whenever the model in use is on a server. With no connection nothing here touches
the network (tests/integration/test_offline.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from app.backends import RemoteTarget
from app.background import Report, run_in_background
from app.engine_client import EngineClient
from engine.endpoints.store import Endpoint, EndpointStore, EndpointStoreError, check_name
from engine.errors import KnownError
from engine.settings import Model, Settings
from engine.types import ModelInfo
from ui.main_window import MainWindow
from ui.remote_notice import DestinationLine
from ui.settings_connections import ConnectionRow, ConnectionsPanel
from ui.settings_dialog import SettingsDialog

if TYPE_CHECKING:  # keyring loads when a key is first needed, not with the window
    from engine.endpoints.keys import KeyStore
    from engine.inference.endpoint import Timeouts

log = logging.getLogger(__name__)

# engine.inference.endpoint is imported where used: it loads the HTTP client, which
# a window with no connection never needs (and its start should not wait for).


def _normalize(url: str) -> str:
    from engine.inference.endpoint import normalize_base_url

    return normalize_base_url(url)


def _warning(base_url: str) -> str | None:
    from engine.inference.endpoint import plain_http_warning

    return plain_http_warning(base_url)


def _where(base_url: str) -> str:
    from engine.inference.endpoint import where_of

    return where_of(base_url)


# A connection's entry in the Model page's list of model families.
FAMILY_PREFIX = "connection:"


def family_of(name: str) -> str:
    return FAMILY_PREFIX + name


def connection_of(family: str) -> str | None:
    """The connection's name for a Model page family that is one, else None."""
    return family[len(FAMILY_PREFIX) :] if family.startswith(FAMILY_PREFIX) else None


@dataclass(frozen=True, slots=True)
class Listed:
    """A connection's models as last asked: the ids, or the sentence why not."""

    models: tuple[str, ...] = ()
    problem: str = ""


class Connections(QObject):
    """The person's connections and what their servers last said."""

    changed = Signal()  # the list, or a connection's models, changed

    def __init__(self, path: Path, *, keys: KeyStore | None = None) -> None:
        super().__init__()
        self.store = EndpointStore(path)
        self._keys = keys
        self._keys_lock = threading.Lock()
        self.listed: dict[str, Listed] = {}  # by name, casefolded
        self._asking: set[str] = set()
        self.problem = ""  # why the list cannot be read, a sentence
        # How long to wait for a server (None: the defaults a person would accept; tests
        # set short ones). Read by every request: listing, checking, chatting.
        self.timeouts: Timeouts | None = None

    # --- the list ---------------------------------------------------------------------
    def all(self) -> list[Endpoint]:
        try:
            found = self.store.all()
        except EndpointStoreError as exc:
            self.problem = exc.message
            return []
        self.problem = ""
        return found

    def get(self, name: str) -> Endpoint | None:
        wanted = name.strip().casefold()
        return next((e for e in self.all() if e.name.casefold() == wanted), None)

    def target(self, name: str, model: str) -> RemoteTarget | None:
        endpoint = self.get(name)
        if endpoint is None or not model:
            return None
        return RemoteTarget(connection=endpoint.name, base_url=endpoint.base_url, model=model)

    def models_of(self, name: str) -> Listed | None:
        return self.listed.get(name.casefold())

    # --- keys (may wait on the keyring: never on the GUI thread) ---------------------------
    @property
    def keys(self) -> KeyStore:
        with self._keys_lock:
            if self._keys is None:
                from engine.endpoints.keys import KeyStore

                self._keys = KeyStore()
            return self._keys

    def key_for(self, name: str) -> str | None:
        """The API key saved for ``name``; for the engine thread (thread-safe)."""
        return self.keys.get(name)

    # --- asking a server for its models --------------------------------------------------
    def ask_models(self, name: str) -> None:
        """List ``name``'s models in the background (``changed`` when it answers)."""
        endpoint = self.get(name)
        if endpoint is None or name.casefold() in self._asking:
            return
        self._asking.add(name.casefold())
        keys, timeouts = self.key_for, self.timeouts

        def work(_report: Report, _cancel: threading.Event) -> Listed:
            from engine.inference.endpoint import list_models

            try:
                found = list_models(endpoint.base_url, keys(endpoint.name), timeouts=timeouts)
            except KnownError as exc:
                return Listed(problem=exc.message)
            return Listed(models=tuple(m.id for m in found))

        def done(listed: Listed) -> None:
            self._asking.discard(name.casefold())
            self.listed[name.casefold()] = listed
            self.changed.emit()

        def failed(sentence: str) -> None:
            done(Listed(problem=sentence))

        run_in_background(work, done, failed, what=f"Asking {name} for its models")


class RemoteChoice:
    """Which server model chats use, as Settings → Model saves it (its connection and
    model in the settings), and the Model page's entries for the connections."""

    def __init__(self, settings: Settings, connections: Connections | None) -> None:
        self.settings = settings
        self.connections = connections

    def chosen(self) -> tuple[str, str]:
        """(connection, model) chosen for chats; ("", "") for a model on this computer."""
        return self.settings[Model.REMOTE_CONNECTION], self.settings[Model.REMOTE_MODEL]

    def family_choice(self) -> tuple[str, str] | None:
        name, model = self.chosen()
        return (family_of(name), model) if name else None

    def families(self) -> list[tuple[str, str]]:
        servers = self.connections.all() if self.connections is not None else []
        return [(family_of(e.name), f"{e.name} (server at {e.base_url})") for e in servers]

    def target(self, family: str, model: str) -> RemoteTarget | str:
        """The server model of a Model page entry, or a sentence why there is none."""
        name = connection_of(family) or ""
        found = self.connections.target(name, model) if self.connections else None
        return found or f"There is no connection named {name} any more (Settings → Connections)."

    def at_start(self) -> tuple[RemoteTarget | None, str]:
        """The server model chosen for chats, if its connection is still there; else a
        sentence when it is gone (and the choice goes back to this computer's model)."""
        name, model = self.chosen()
        if not name or self.connections is None:
            return None, ""
        found = self.connections.target(name, model)
        if found is not None:
            return found, ""
        self.remember("", "")
        return None, (
            f"The connection {name} is gone, so Hearth uses a model on this computer. "
            "Add it again in Settings → Connections."
        )

    def remember(self, family: str, choice: str) -> bool:
        """Save the choice of ``family``; True if it is a server's (the file stays)."""
        server = connection_of(family)
        self.settings.set(Model.REMOTE_CONNECTION, server or "")
        self.settings.set(Model.REMOTE_MODEL, choice if server else "")
        return server is not None


class ConnectionsPage(QObject):
    """Settings → Connections, for one open Settings window at a time."""

    def __init__(
        self,
        connections: Connections,
        engine: EngineClient,
        *,
        settings_model: Callable[[], tuple[str, str]],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.connections = connections
        self.engine = engine
        self._in_use = settings_model  # (connection, model) chosen now; ("", "") = a file
        self.panel: ConnectionsPanel | None = None
        self._saving: set[str] = set()  # its key is being stored: its server is asked after
        connections.changed.connect(self.refresh)

    def attach(self, dialog: SettingsDialog) -> None:
        panel = ConnectionsPanel()
        dialog.add_page("connections", "Connections", panel, after="model")
        self.panel = panel
        panel.save_requested.connect(self._on_save)
        panel.check_requested.connect(self._on_check)
        panel.remove_requested.connect(self._on_remove)
        panel.selected.connect(self._on_selected)
        panel.forget_key_requested.connect(self._on_forget_key)
        panel.destroyed.connect(self._on_gone)
        self.refresh()
        if self.connections.problem:
            panel.show_result(self.connections.problem)

    @Slot()
    def _on_gone(self) -> None:
        self.panel = None

    def rows(self) -> list[ConnectionRow]:
        rows = []
        for e in self.connections.all():
            listed = self.connections.models_of(e.name)
            rows.append(
                ConnectionRow(
                    e.name,
                    e.base_url,
                    listed.models if listed else (),
                    listed.problem if listed else "",
                )
            )
        return rows

    @Slot()
    def refresh(self, current: str | None = None) -> None:
        if self.panel is not None:
            self.panel.set_connections(self.rows(), current)

    # --- intents --------------------------------------------------------------------------
    @Slot(str)
    def _on_selected(self, name: str) -> None:
        panel = self.panel
        if panel is None or not name:
            return
        keys = self.connections.key_for
        panel.set_key_status("Looking for a saved key…")

        def work(_report: Report, _cancel: threading.Event) -> bool:
            return keys(name) is not None

        def done(has_key: bool) -> None:
            if self.panel is not None and self.panel.editing == name:
                note = self.connections.keys.note
                text = (
                    "An API key is saved in your system's keyring."
                    if has_key
                    else "No API key saved (a server on your own network usually needs none)."
                )
                self.panel.set_key_status(f"{text} {note}".strip(), saved=has_key)

        run_in_background(work, done, self._say, what="Asking the keyring")
        if self.connections.models_of(name) is None and name.casefold() not in self._saving:
            self.connections.ask_models(name)

    def _checked(self, name: str, url: str) -> tuple[str, str] | None:
        """(name, normalized address), or None after saying what is wrong."""
        try:
            return check_name(name), _normalize(url)
        except ValueError as exc:
            self._say(str(exc))
            return None

    @Slot(str, str, str, str)
    def _on_save(self, original: str, name: str, url: str, key: str) -> None:
        panel = self.panel
        checked = self._checked(name, url)
        if panel is None or checked is None:
            return
        name, base = checked
        clash = self.connections.get(name)
        if clash is not None and clash.name.casefold() != original.casefold():
            self._say(f'There is already a connection named "{clash.name}". Choose another name.')
            return
        if key:
            try:
                from engine.endpoints.keys import check_key

                key = check_key(key)
            except ValueError as exc:
                self._say(str(exc))
                return
        before = self.connections.get(original) if original else None
        warning = _warning(base)
        already = before is not None and before.base_url == base
        if (
            warning
            and not already
            and not panel.ask(
                "Send messages unencrypted?",
                warning,
                "Save it only if you trust every network between this computer and "
                f"{_where(base)} (your own home or office network, say).",
                "Save anyway",
            )
        ):
            self._say("Not saved. Use the server's https:// address, or save it anyway.")
            return
        in_use = self._in_use()[0]
        if original and original.casefold() != name.casefold() and in_use == original:
            self._say(
                f"{original} is the connection in use. Choose another model in Settings → "
                "Model first, then rename it."
            )
            return
        try:
            if original and original.casefold() != name.casefold():
                self.connections.store.remove(original)
            self.connections.store.put(
                Endpoint(name=name, base_url=base, model=before.model if before else "")
            )
        except (EndpointStoreError, ValueError) as exc:
            self._say(exc.message if isinstance(exc, KnownError) else str(exc))
            return
        log.info("connection %s saved", name)
        self.connections.listed.pop(name.casefold(), None)
        self._saving.add(name.casefold())
        self.refresh(current=name)
        self._store_key_then_check(original, name, base, key)

    def _store_key_then_check(self, original: str, name: str, base: str, key: str) -> None:
        """Keep the key (moving it on a rename), then ask the server for its models."""
        connections, timeouts = self.connections, self.connections.timeouts
        renamed = bool(original) and original.casefold() != name.casefold()
        if self.panel is not None:
            self.panel.set_busy(True)
            self.panel.show_result(f"Saved. Asking {_where(base)} for its models…")

        def work(_report: Report, _cancel: threading.Event) -> str:
            from engine.inference.endpoint import check_connection

            keys = connections.keys
            kept = key or (keys.get(original) if renamed else None)
            if renamed:
                keys.forget(original)
            if kept:
                keys.set(name, kept)
            sentence = check_connection(base, kept or keys.get(name), timeouts=timeouts)
            return f"{sentence} {keys.note}".strip() if kept else sentence

        def done(sentence: str) -> None:
            self._saving.discard(name.casefold())
            if self.panel is not None:
                self.panel.set_busy(False)
                self.panel.show_result(sentence)
            connections.ask_models(name)
            self._on_selected(name)

        def failed(sentence: str) -> None:
            self._saving.discard(name.casefold())
            if self.panel is not None:
                self.panel.set_busy(False)
            self._say(sentence)

        run_in_background(work, done, failed, what=f"Checking {name}")

    @Slot(str, str, str)
    def _on_check(self, name: str, url: str, key: str) -> None:
        panel = self.panel
        try:
            base = _normalize(url)
        except ValueError as exc:
            self._say(str(exc))
            return
        if panel is None:
            return
        saved = self.connections.get(name) if name.strip() else None
        keys, timeouts = self.connections.key_for, self.connections.timeouts
        panel.set_busy(True)
        panel.show_result(f"Asking {_where(base)} for its models…")

        def work(_report: Report, _cancel: threading.Event) -> str:
            from engine.inference.endpoint import check_connection

            return check_connection(
                base, key or (keys(saved.name) if saved else None), timeouts=timeouts
            )

        def done(sentence: str) -> None:
            if self.panel is not None:
                self.panel.set_busy(False)
                self.panel.show_result(sentence)
            if saved is not None and saved.base_url == base:
                self.connections.ask_models(saved.name)

        def failed(sentence: str) -> None:
            if self.panel is not None:
                self.panel.set_busy(False)
            self._say(sentence)

        run_in_background(work, done, failed, what=f"Checking {_where(base)}")

    @Slot(str)
    def _on_remove(self, name: str) -> None:
        panel = self.panel
        if panel is None or not name:
            return
        if self._in_use()[0].casefold() == name.casefold():
            self._say(
                f"{name} is the connection in use. Choose another model in Settings → Model "
                "first, then remove it."
            )
            return
        if not panel.ask(
            "Remove the connection?",
            f"Remove {name}, and its API key from the keyring?",
            "Chats that used it keep their messages.",
            "Remove",
        ):
            return
        try:
            self.connections.store.remove(name)
        except EndpointStoreError as exc:
            self._say(exc.message)
            return
        self.connections.listed.pop(name.casefold(), None)
        keys = self.connections.keys
        run_in_background(
            lambda _r, _c: keys.forget(name),
            lambda _none: None,
            self._say,
            what="Forgetting the API key",
        )
        panel.start_new()
        self.refresh(current="")
        self._say(f"Removed {name}.")

    @Slot(str)
    def _on_forget_key(self, name: str) -> None:
        if not name:
            return
        keys = self.connections.keys

        def done(_none: None) -> None:
            self._say(f"The API key of {name} is forgotten.")
            self._on_selected(name)

        run_in_background(
            lambda _r, _c: keys.forget(name), done, self._say, what="Forgetting the API key"
        )

    def _say(self, text: str) -> None:
        if self.panel is not None:
            self.panel.show_result(text)


class Destination(QObject):
    """Keeps the line above the composer true: where the messages go, every time the
    model in use is on a server; hidden for a model on this computer."""

    def __init__(self, window: MainWindow, engine: EngineClient) -> None:
        super().__init__()
        self.engine = engine
        self.line = DestinationLine()
        window.add_notice_bar(self.line)
        engine.model_loading.connect(self.update)
        engine.model_changed.connect(self.update)

    @Slot()
    @Slot(str)
    @Slot(object, str)
    def update(self, *_args: object) -> None:
        target = self.engine.remote
        info: ModelInfo | None = self.engine.model_info
        if target is None:
            self.line.clear()
            return
        self.line.show_destination(
            target.connection,
            target.base_url,
            model=target.model,
            ready=info is not None,
            warning=_warning(target.base_url) or "",
        )
