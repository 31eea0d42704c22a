"""Starting the window: QApplication, theme, store, engine thread, the chat controllers,
wired together in one place (``HearthApp``) and shut down in one ordered ``shutdown()``."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psutil
from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from app.background import IdleIndexer
from app.chat.attachments import AttachmentController, vision_family_of
from app.chat.context import ContextController
from app.chat.conversations import ConversationController
from app.chat.documents import DocumentController
from app.chat.history_actions import HistoryActions
from app.chat.replies import ReplyController
from app.chat.tool_replies import ToolReplies
from app.chat_lock import ChatLock
from app.chat_models import ChatModels
from app.connections import Connections, ConnectionsPage, Destination
from app.embedding_page import EmbeddingModels
from app.engine_client import EngineClient
from app.folders import Folders
from app.gc_guard import GuiThreadGc
from app.logs import disable_crash_dump, enable_crash_dump, setup_logging
from app.model_manager import ModelManager
from app.model_page import ModelPage
from app.notifier import Notifier
from app.paths import APP_NAME, AppPaths
from app.privacy import PrivacyController, open_at_start
from app.privacy_offer import EncryptOffer, show_privacy_page
from app.serve_window import ServeController
from app.settings_controller import SettingsController
from app.single_instance import AlreadyRunningError, InstanceGuard
from app.tools_page import ToolsPageController
from app.tools_service import KeyringSecrets, ToolsService, store_search
from app.version import __version__
from app.worker import OpenBackend, open_local, with_remote
from engine.errors import KnownError, StoreError
from engine.history.store import ChatStore
from engine.models.catalog import CatalogEntry, load_catalog, resources_dir
from engine.settings import Settings, engine_options
from engine.types import EngineOptions
from ui.about import AboutDialog, load_app_icon
from ui.main_window import MainWindow
from ui.message_html import model_label
from ui.theme import apply_theme

if TYPE_CHECKING:
    from engine.models.hf_token import TokenStore

log = logging.getLogger(__name__)

MEMORY_INTERVAL_MS = 1000  # the status bar's memory figure


class HearthApp:
    """Everything one window needs, built and wired here (and only here), torn down
    in one ordered ``shutdown()``.

    ``open_backend`` replaces the local llama.cpp backend (tests run the real
    window on a scripted one). ``options`` fixes the engine options instead of
    the Settings' (tests).
    """

    def __init__(
        self,
        paths: AppPaths,
        *,
        model_path: str = "",
        theme: str | None = None,
        options: EngineOptions | None = None,
        catalog: list[CatalogEntry] | None = None,
        hub_endpoint: str | None = None,
        tokens: TokenStore | None = None,
        open_backend: OpenBackend | None = None,
    ) -> None:
        self._closed = False
        self._store: ChatStore | None = None
        self._engine: EngineClient | None = None
        self._gc: GuiThreadGc | None = None
        self._previous_excepthook = sys.excepthook
        self.paths = paths.ensure()
        try:
            self._build(
                paths, model_path, theme, options, catalog, hub_endpoint, tokens, open_backend
            )
        except BaseException:
            # R6: nothing half-built may outlive a failed start (an engine thread
            # left running makes Qt abort at exit).
            self._release()
            raise

    def _build(
        self,
        paths: AppPaths,
        model_path: str,
        theme: str | None,
        options: EngineOptions | None,
        catalog: list[CatalogEntry] | None,
        hub_endpoint: str | None,
        tokens: TokenStore | None,
        open_backend: OpenBackend | None,
    ) -> None:
        self._gc = GuiThreadGc()
        setup_logging(paths.log_dir)
        previous_crash = enable_crash_dump(paths.crash_file)
        app = QApplication.instance()
        assert isinstance(app, QApplication), "create the QApplication first"
        self.settings = Settings(paths.config_dir / "settings.json")
        # The one owner of the folders: everyone reads them there, nobody copies them.
        self.folders, folder_notices = Folders.from_settings(paths, self.settings)
        paths = self.paths = self.folders.paths
        dark = apply_theme(app, theme or str(self.settings["appearance.theme"]))
        chat_lock = ChatLock(paths.db_path)  # issue 17: unlocked as the key is held
        self._store, store_notice, chat_key = open_at_start(chat_lock)
        store = self.store
        self.window = MainWindow()
        self.window.chat_view.set_dark(dark)
        self.window.close_requested.connect(self.shutdown)
        self.notifier = Notifier(self.window)
        # Servers to chat through (Settings → Connections); none: nothing touches a network.
        self.connections = Connections(paths.config_dir / "connections.json")
        self._engine = EngineClient(
            self.folders.models_dir,
            options=options or engine_options(self.settings),
            open_backend=with_remote(
                open_backend or open_local,
                self.connections.key_for,
                lambda: self.connections.timeouts,
            ),
        )
        engine = self.engine
        self.folders.models_dir_changed.connect(engine.relocate)
        self.conversations = ConversationController(self.window, store, engine, self.notifier)
        self.context = ContextController(
            self.window, store, engine, self.conversations, self.notifier
        )
        self.replies = ReplyController(
            self.window, store, engine, self.conversations, self.context, self.notifier
        )
        self.documents = DocumentController(
            self.window, store, engine, self.notifier, lambda: self.conversations.current_id
        )
        self.replies.documents = self.documents
        self.conversations.vector_ranking = self.documents.vector_ranking
        self.conversations.current_changed.connect(self._on_chat_shown)
        self.documents.modes_changed.connect(self._on_document_modes_changed)
        self.context.pending_tokens = self.documents.pending_tokens  # the meter counts them
        self.documents.pending_changed.connect(self.context.show_pending)
        self.history = HistoryActions(self.window, store, self.conversations, self.notifier)
        # Tools (issue 16): none on and no server started until the person chooses.
        self.tools = ToolsService(
            paths.config_dir, KeyringSecrets(), search=store_search(paths.db_path)
        )
        engine.set_tools(self.tools)
        self.tool_replies = ToolReplies(self.window, self.replies, engine, self.notifier)
        self.indexer = IdleIndexer(  # CJK search index, in idle time (not while a reply streams)
            store, busy=lambda: self.replies.busy
        )
        self._memory_timer = QTimer()
        self._memory_timer.setInterval(MEMORY_INTERVAL_MS)
        self._memory_timer.timeout.connect(self._on_memory_tick)
        self._process = psutil.Process()
        self.models = ModelManager(
            self.settings,
            self.folders,
            engine,
            notifier=self.notifier,
            replies=self.replies,
            context=self.context,
            window=self.window,
            catalog=catalog,
            endpoint=hub_endpoint,
            tokens=tokens,
            launch_options=options,
            connections=self.connections,
        )
        self.window.chat_view.set_model_namer(self._model_name)
        self.attachments = AttachmentController(  # images in the chat (issue 13)
            self.window, store, engine, self.notifier,
            vision_family=lambda: vision_family_of(
                self.models.catalog, self.models.current_choice()[0]
            ),
            switch_family=lambda family: self.models.select(family, "auto"),
            current_conversation=lambda: self.conversations.current_id,
        )  # fmt: skip
        self.replies.attachments = self.attachments
        self.window.may_close = self.models.may_close  # quitting mid-move asks first (R4)
        # R5: connected after every controller, so the models code hears a load ended
        # once the client, the state and the window have taken it in, and its fallback
        # banner replaces the controller's, never the reverse.
        engine.model_changed.connect(self.models.on_model_changed)
        # The file to load: the one asked for, else the chosen quantization if it is
        # downloaded, else the starter model ("").
        engine.set_path(model_path or self.models.startup_path())
        if not model_path:  # a server's model chosen for chats (else the file above)
            engine.set_remote(self.models.startup_remote())
        self.destination = Destination(self.window, engine)
        if options is None:
            path = engine.model_path
            engine.set_options(self.models.options_for(Path(path) if path else None))
        self.settings_controller = SettingsController(
            self.settings,
            self.folders,
            self.models,
            ModelPage(self.models, self.folders),
            window=self.window,
            store=store,
            engine=engine,
            conversations=self.conversations,
            replies=self.replies,
            notifier=self.notifier,
        )
        self.privacy = PrivacyController(
            chat_lock,
            store,
            chat_key,
            window=self.window,
            settings=self.settings,
            notifier=self.notifier,
            indexer=self.indexer,
            busy=lambda: self.replies.busy,
        )
        self.settings_controller.page_attachers.append(self.privacy.attach)
        models_may_close = self.window.may_close  # quitting mid-conversion asks too (issue 17)
        self.window.may_close = lambda: self.privacy.may_close() and models_may_close()
        self.encrypt_offer = EncryptOffer(  # once, after the first chats (issue 17)
            self.privacy, store, self.settings, add_bar=self.window.add_notice_bar,
            open_privacy=lambda: show_privacy_page(self.settings_controller),
        )  # fmt: skip
        self.replies.reply_ended.connect(lambda *_: self.encrypt_offer.check())
        self.privacy.conversion.finished.connect(lambda _ok: self.encrypt_offer.check())
        self.connections_page = ConnectionsPage(
            self.connections, engine, settings_model=self.models.remote.chosen
        )
        self.settings_controller.page_attachers.append(self.connections_page.attach)
        # The optional embedding model for documents: the Model page and a chip's "Get it".
        self.embeddings = EmbeddingModels(self.models, self.documents, self.notifier)
        self.settings_controller.page_attachers.append(self.embeddings.attach)
        self.chat_models = ChatModels(  # each chat's model; the toolbar's model picker
            self.window, store, engine, self.models, self.conversations, self.replies,
            self.notifier, connections=self.connections,
            open_settings=self.settings_controller.open,
        )  # fmt: skip
        self.tools_page = ToolsPageController(
            self.tools, self.notifier, current_chat=lambda: self.conversations.current_id
        )
        self.settings_controller.page_attachers.append(self.tools_page.attach)
        self.settings_controller.apply_live("generation.system_prompt")  # sampling + prompt
        # Settings → Other programs: the local API on the engine thread (issue 15).
        self.serve = ServeController(self.settings, engine, self.notifier)
        self.settings_controller.setting_applied.connect(self.serve.on_setting_applied)
        self.settings_controller.page_attachers.append(self.serve.attach)
        self.serve.apply()
        if self.settings["appearance.font_size"]:
            self.settings_controller.apply_live("appearance.font_size")
        sys.excepthook = self._on_uncaught
        self.window.about_requested.connect(self.show_about)
        found = (
            store_notice,
            *folder_notices,
            self.models.notice,
            *self.settings.problems,
        )
        notices = [n for n in found if n]
        if notices:
            self.notifier.error(" ".join(notices))
        elif previous_crash:
            self.notifier.error(
                "Hearth closed unexpectedly last time. Your chats were kept; a crash report "
                f"was saved to {paths.crash_file.with_suffix('.previous.txt')}."
            )

    @property
    def store(self) -> ChatStore:
        assert self._store is not None
        return self._store

    @property
    def engine(self) -> EngineClient:
        assert self._engine is not None
        return self._engine

    def start(self) -> None:
        self.conversations.refresh_conversations()
        self.encrypt_offer.check()
        self._on_memory_tick()
        self._memory_timer.start()
        # The window first: the model loads on the engine thread, and a load started
        # before show() competes with the window's first layout for the GIL (a few ms
        # later for the model, up to ~10 ms sooner for the window with a long chat).
        self.window.show()
        self.engine.load()
        self.indexer.start()
        self.documents.index_missing()
        self.documents.load_embedder()
        self._first_frame = _FirstFrameLogger(self.window)

    def raise_window(self) -> None:
        """Bring the window forward (a second launch asked for it)."""
        w = self.window
        w.setWindowState(w.windowState() & ~Qt.WindowState.WindowMinimized)
        w.show()
        w.raise_()
        w.activateWindow()

    def show_about(self) -> None:
        folders = [
            ("Chats", self.folders.chats_dir),
            ("Models", self.folders.models_dir),
            ("Settings", self.paths.config_dir),
            ("Logs and crash reports", self.paths.log_dir),
        ]
        dialog = AboutDialog(
            version=__version__,
            folders=folders,
            licenses_dir=resources_dir() / "licenses",
            icon=QApplication.windowIcon(),
            parent=self.window,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()

    @Slot()
    def shutdown(self) -> None:
        """Close everything, in order: the window leaves the screen; file jobs stop;
        the indexer stops; the engine stops (waiting for a load in progress) and the
        reply it was writing is saved; the database closes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.window.hide()  # never a frozen window on screen while the engine lets go
        self._memory_timer.stop()
        self.privacy.close()
        self.context.close_question()
        self.models.shutdown()  # downloads, moves
        self.documents.shutdown()  # documents being read and indexed
        self.indexer.stop()
        self.serve.close()  # its requests end before the engine they wait for
        self.engine.close()
        self.tools_page.shutdown()  # a server still starting
        self.tools.close()  # MCP servers' processes
        self.replies.shutdown()
        self.conversations.close()
        self.store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Shut down (if the window did not already) and hand back what the process
        borrowed (the excepthook, the crash dump)."""
        self.shutdown()
        self._release()

    def _release(self) -> None:
        if self._engine is not None:
            self._engine.close()
        if self._store is not None:
            self._store.close()
        if self._gc is not None:
            self._gc.stop()
        sys.excepthook = self._previous_excepthook
        disable_crash_dump(self.paths.crash_file)

    def _model_name(self, model: str) -> str:
        """A stored reply's model (its path) as its header names it: the loaded model's
        own name, a catalog file's name, else the file's stem (a server's model name)."""
        info = self.engine.model_info
        if info is not None and info.path == model and "://" not in model:
            return info.name
        if "://" in model:  # a server's model: which one, and where (issue 15)
            where = model.rsplit("/models/", 1)[0]
            named = next((e.name for e in self.connections.all() if e.base_url == where), "")
            return f"{model_label(model)} · {named or urlsplit(where).netloc or where}"
        entry = self.models.service.entry_for_path(model)
        return entry.name if entry is not None else model_label(model)

    def _on_chat_shown(self, conv_id: int | None) -> None:
        """The chat view shows a chat: the passages its replies cite, its documents."""
        if conv_id is None:
            self.window.chat_view.set_sources({}, {})
            return
        with self.notifier.guard():
            sources, documents = self.documents.sources(self.store.messages(conv_id))
            self.window.chat_view.set_sources(sources, documents)

    def _on_document_modes_changed(self, conv_id: int) -> None:
        if conv_id == self.conversations.current_id:
            self.conversations.show_current(keep_scroll=True)
            self.context.measure_current()

    @Slot()
    def _on_memory_tick(self) -> None:
        self.window.set_memory(self._process.memory_info().rss)

    def _on_uncaught(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        # A bug in a slot must not take the whole app (and the chat) down.
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        # Chain on (stderr by default; pytest-qt's capture in tests, so bugs fail tests).
        self._previous_excepthook(kind, exc, tb)
        self.notifier.error(
            "Something went wrong inside Hearth. Your chats are safe. The details are in "
            f"{self.paths.log_dir / 'hearth.log'}."
        )


def run_gui(
    paths: AppPaths,
    *,
    model_path: str = "",
    theme: str | None = None,
    catalog_path: str | None = None,
) -> int:
    QApplication.setApplicationName(APP_NAME)
    QApplication.setApplicationDisplayName(APP_NAME)
    QApplication.setApplicationVersion(__version__)
    QApplication.setDesktopFileName("hearth")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    QApplication.setWindowIcon(load_app_icon(resources_dir() / "icons"))
    guard = InstanceGuard(paths.data_dir)
    try:
        if not guard.claim():
            return 0  # the Hearth already running on this data folder came forward
    except AlreadyRunningError as exc:
        QMessageBox.warning(None, APP_NAME, exc.message)
        return 1
    try:
        catalog = load_catalog(Path(catalog_path)) if catalog_path else None
        hearth = HearthApp(paths, model_path=model_path, theme=theme, catalog=catalog)
    except StoreError as exc:  # e.g. a newer Hearth's database, or one locked by another
        log.error("cannot open the chat database: %s", exc)
        QMessageBox.critical(None, "Hearth", exc.message)
        return 1
    except KnownError as exc:  # a damaged catalog file given with --catalog
        log.error("cannot start: %s", exc)
        QMessageBox.critical(None, "Hearth", exc.message)
        return 1
    guard.activation_requested.connect(hearth.raise_window)
    app.aboutToQuit.connect(hearth.close)
    app.aboutToQuit.connect(guard.release)
    hearth.start()
    return app.exec()


class _FirstFrameLogger(QObject):
    """Logs once how long the start took, when the window first reaches the screen
    (support reads it in the log; bench/startup.py measures with it)."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        handle = window.windowHandle()
        if handle is None or handle.isExposed():
            QTimer.singleShot(0, self._log)
        else:
            handle.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Expose:
            watched.removeEventFilter(self)
            QTimer.singleShot(0, self._log)  # after the frame this expose paints
        return False

    def _log(self) -> None:
        log.info("window shown %.0f ms after the process started", _process_age_s() * 1000)


def _process_age_s() -> float:
    """Seconds since this process was created, to the OS clock tick (10 ms)."""
    try:  # Linux: psutil's create_time rests on a boot time rounded to whole seconds
        stat = Path("/proc/self/stat").read_bytes().rsplit(b")", 1)[1].split()
        ticks = int(stat[19])  # field 22, starttime, in clock ticks after boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time() - psutil.Process().create_time()
