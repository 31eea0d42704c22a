"""The window's side of the local API (app/serving): Settings → Other programs.

``WindowRunner`` hands the API's requests to the window's one engine thread
(``EngineClient.run_job``), so they run one at a time between the window's own
replies, in the order they came; the window's Stop, a model load and quitting cancel
them like its own. ``ServeController`` starts and stops the server as the settings
say, keeps its key in the system keyring (made on first use, replaceable), and tells
the Settings section what the server is doing.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot

from app.background import Report, run_in_background
from app.engine_client import EngineClient
from app.notifier import Notifier
from app.serving.engine_queue import Job
from app.serving.server import ApiServer, model_id
from engine.endpoints.keys import KeyStore
from engine.settings import Serve, Settings
from engine.types import ModelInfo
from ui.settings_dialog import SettingsDialog

__all__ = ["KEY_NAME", "ServeController", "WindowRunner"]

log = logging.getLogger(__name__)

# The keyring entry of the API's key (beside the connections' keys).
KEY_NAME = "hearth-local-api"


class WindowRunner(QObject):
    """The engine thread as the API's ``Runner``: ``submit`` may be called from any
    thread; the job is passed on from the GUI thread, in order."""

    _submitted = Signal(object, object)  # job, cancel Event

    def __init__(self, engine: EngineClient) -> None:
        super().__init__()
        self._engine = engine
        # Emitted on an HTTP thread, received here on the GUI thread (queued).
        self._submitted.connect(self._on_submitted)

    def submit(self, job: Job, cancel: threading.Event) -> None:
        self._submitted.emit(job, cancel)

    def model(self) -> ModelInfo | None:
        return self._engine.model_info  # an immutable object, read whole

    @Slot(object, object)
    def _on_submitted(self, job: Job, cancel: threading.Event) -> None:
        self._engine.run_job(job, cancel)


class ServeController(QObject):
    status_changed = Signal(str)
    _server_changed = Signal()  # from the HTTP threads: requests counted

    def __init__(
        self,
        settings: Settings,
        engine: EngineClient,
        notifier: Notifier,
        *,
        keys: Callable[[], KeyStore] = KeyStore,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.engine = engine
        self.notifier = notifier
        self._keys = keys
        self.runner = WindowRunner(engine)
        self.server: ApiServer | None = None
        self.key: str | None = None  # loaded from the keyring when first needed
        self.failure = ""  # why it is not serving although switched on
        self._dialog: SettingsDialog | None = None
        self._closed = False
        self._server_changed.connect(self._show)
        engine.model_changed.connect(self._show)

    # -- the settings --
    def apply(self) -> None:
        """Serve, or stop, as the settings say now (a changed port or key rule restarts)."""
        if self._closed:
            return
        self._stop_server()
        self.failure = ""
        if not self.settings[Serve.ENABLED]:
            self._show()
            return
        if self.settings[Serve.REQUIRE_KEY] and self.key is None:
            self._load_key()  # starts the server once the key is there
            return
        self._start_server()

    def on_setting_applied(self, key: str) -> None:
        if key.startswith("serve."):
            self.apply()

    def new_key(self) -> None:
        """Replace the key; programs given the old one are refused from now on."""
        key = secrets.token_urlsafe(24)
        self._save_key(key)

    # The key is shown once: in the Settings window open when it was made. After that
    # window closes, the page says a key exists and offers a new one, never the key
    # itself (it stays in the keyring for the server), as a token page on the web does.
    _key_on_show = False

    # -- the Settings dialog --
    def attach(self, dialog: SettingsDialog) -> None:
        self._dialog = dialog
        dialog.serve_section.new_key_requested.connect(self.new_key)
        dialog.destroyed.connect(self._detach)
        self._show()

    @Slot()
    def _detach(self) -> None:
        self._dialog = None
        self._key_on_show = False

    # -- the server --
    def _start_server(self) -> None:
        port = self.settings[Serve.PORT]
        key = self.key if self.settings[Serve.REQUIRE_KEY] else None
        try:
            self.server = ApiServer(
                self.runner, port=port, api_key=key, on_change=self._server_changed.emit
            ).start()
        except OSError as exc:
            reason = "another program uses it" if exc.errno in (98, 48, 10048) else str(exc)
            self.failure = f"Could not serve on port {port} ({reason}). Choose another port above."
            self.notifier.error(f"Other programs cannot use the model: {self.failure}")
            log.warning("API server did not start on port %d: %s", port, exc)
        else:
            log.info("API server listening at %s", self.server.url)
        self._show()

    def _stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
            log.info("API server stopped (%d requests answered)", server.served)

    def close(self) -> None:
        """Stop serving (each request waiting or running ends at once). Idempotent."""
        self._closed = True
        self._stop_server()

    # -- the key, in the keyring (a background job: a keyring can block) --
    def _load_key(self) -> None:
        def op(_report: Report, _cancel: threading.Event) -> tuple[str, bool]:
            store = self._keys()
            key = store.get(KEY_NAME)
            if key is None:
                key = secrets.token_urlsafe(24)
                store.set(KEY_NAME, key)
                return key, True
            return key, False

        self.failure = "Getting the API key from the system keyring…"
        self._show()
        run_in_background(op, self._on_key, self._on_key_failed, what="the API key")

    def _save_key(self, key: str) -> None:
        def op(_report: Report, _cancel: threading.Event) -> tuple[str, bool]:
            self._keys().set(KEY_NAME, key)
            return key, True

        run_in_background(op, self._on_key, self._on_key_failed, what="the API key")

    def _on_key(self, got: tuple[str, bool]) -> None:
        self.key, made = got
        if made and self._dialog is not None:
            self._key_on_show = True
        if self.settings[Serve.ENABLED] and not self._closed:
            self.apply()

    def _on_key_failed(self, sentence: str) -> None:
        self.failure = f"Could not keep the API key: {sentence}"
        self._show()

    # -- what the person sees --
    def status(self) -> str:
        server = self.server
        if not self.settings[Serve.ENABLED]:
            return "Off. Turn on the switch above to let other programs use the model."
        if server is None:
            return self.failure or "Starting…"
        info = self.engine.model_info
        model = (
            f"{info.name} (model name “{model_id(info)}”)"
            if info is not None
            else "the model, once it has loaded,"
        )
        served = server.served
        waiting = server.pending
        counts = f"{served} request{'s' if served != 1 else ''} answered"
        if waiting:
            counts += f", {waiting} waiting or running"
        return f"Serving {model} at {server.url} — {counts}."

    def usage(self) -> str:
        server = self.server
        info = self.engine.model_info
        if server is None or info is None:
            return ""
        key = '"none"'
        if server.api_key:
            key = f'"{self.key}"' if self._key_on_show else '"YOUR_KEY"'
        return (
            "from openai import OpenAI\n"
            f'client = OpenAI(base_url="{server.url}", api_key={key})\n'
            f'client.chat.completions.create(model="{model_id(info)}",\n'
            '    messages=[{"role": "user", "content": "Hello"}])'
        )

    @Slot()
    def _show(self, *_args: object) -> None:
        text = self.status()
        self.status_changed.emit(text)
        dialog = self._dialog
        if dialog is None:
            return
        section = dialog.serve_section
        section.set_status(text)
        if not self.settings[Serve.REQUIRE_KEY]:
            section.set_key(None)
        else:
            section.set_key(self.key if self._key_on_show else "", shown=self._key_on_show)
        section.set_usage(self.usage())
