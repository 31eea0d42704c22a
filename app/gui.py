"""Starting the window: QApplication, theme, store, engine thread, controller."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import psutil
from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from app.background import IdleIndexer
from app.controller import ChatController
from app.folders import Folders
from app.gc_guard import GuiThreadGc
from app.logs import disable_crash_dump, enable_crash_dump, setup_logging
from app.model_manager import ModelManager
from app.model_page import ModelPage
from app.paths import APP_NAME, AppPaths
from app.settings_controller import SettingsController
from app.single_instance import AlreadyRunningError, InstanceGuard
from app.version import __version__
from app.worker import EngineThread
from engine.errors import KnownError, StoreError
from engine.history.opening import open_store
from engine.models.catalog import CatalogEntry, load_catalog, resources_dir
from engine.settings import Settings, engine_options
from engine.types import EngineOptions, SamplingParams
from ui.about import AboutDialog, load_app_icon
from ui.main_window import MainWindow
from ui.state import ResponseState
from ui.theme import apply_theme

if TYPE_CHECKING:
    from engine.models.hf_token import TokenStore

log = logging.getLogger(__name__)


class HearthApp:
    """Everything one window needs, built in order and torn down in reverse."""

    def __init__(
        self,
        paths: AppPaths,
        *,
        model_path: str = "",
        theme: str | None = None,
        options: EngineOptions | None = None,
        params: SamplingParams | None = None,
        catalog: list[CatalogEntry] | None = None,
        hub_endpoint: str | None = None,
        tokens: TokenStore | None = None,
    ) -> None:
        self.paths = paths.ensure()
        self._gc = GuiThreadGc()
        setup_logging(paths.log_dir)
        previous_crash = enable_crash_dump(paths.crash_file)
        app = QApplication.instance()
        assert isinstance(app, QApplication), "create the QApplication first"
        self.settings = Settings(paths.config_dir / "settings.json")
        paths, folder_notice = _models_folder(paths, str(self.settings["storage.models_dir"] or ""))
        paths, chats_notice = _chats_folder(paths, str(self.settings["storage.chats_dir"] or ""))
        self.paths = paths
        self.folders = Folders(paths, self.settings)  # read for the folders from here on
        dark = apply_theme(app, theme or str(self.settings["appearance.theme"]))
        self.store, store_notice = open_store(paths.db_path)
        self.indexer = IdleIndexer(  # CJK search index, in idle time (not while a reply streams)
            self.store,
            busy=lambda: self.window.state in (ResponseState.GENERATING, ResponseState.STOPPING),
        )
        self.window = MainWindow()
        self.window.close_requested.connect(self.indexer.stop)  # first: that closes the store
        self.window.chat_view.set_dark(dark)
        self.engine = EngineThread(paths.models_dir)
        self.controller = ChatController(
            self.window,
            self.store,
            self.engine,
            options=options or engine_options(self.settings),
            params=params,
        )
        self.models = ModelManager(
            self.settings,
            self.folders,
            self.controller,
            catalog=catalog,
            endpoint=hub_endpoint,
            tokens=tokens,
            launch_options=options,
        )
        # The file to load: the one asked for, else the chosen quantization if it is
        # downloaded, else the starter model ("").
        self.controller.model_path = model_path or self.models.startup_path()
        if options is None:
            path = self.controller.model_path
            self.controller.options = self.models.options_for(Path(path) if path else None)
        self.settings_controller = SettingsController(
            self.settings,
            self.controller,
            self.folders,
            self.models,
            ModelPage(self.models, self.folders),
        )
        self.settings_controller.apply_live("generation.system_prompt")  # sampling + prompt
        if self.settings["appearance.font_size"]:
            self.settings_controller.apply_live("appearance.font_size")
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._on_uncaught
        self.window.about_requested.connect(self.show_about)
        found = (
            store_notice,
            chats_notice,
            folder_notice,
            self.models.notice,
            *self.settings.problems,
        )
        notices = [n for n in found if n]
        if notices:
            self.window.show_error(" ".join(notices))
        elif previous_crash:
            self.window.show_error(
                "Hearth closed unexpectedly last time. Your chats were kept; a crash report "
                f"was saved to {paths.crash_file.with_suffix('.previous.txt')}."
            )

    def start(self) -> None:
        self.controller.start()
        self.window.show()
        self.indexer.start()
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

    def close(self) -> None:
        self.indexer.stop()  # before the controller closes the store
        self.models.shutdown()
        self.controller.shutdown()
        self._gc.stop()
        sys.excepthook = self._previous_excepthook
        disable_crash_dump(self.paths.crash_file)

    def _on_uncaught(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        # A bug in a slot must not take the whole app (and the chat) down.
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        # Chain on (stderr by default; pytest-qt's capture in tests, so bugs fail tests).
        self._previous_excepthook(kind, exc, tb)
        self.window.show_error(
            "Something went wrong inside Hearth. Your chats are safe. The details are in "
            f"{self.paths.log_dir / 'hearth.log'}."
        )


def _chats_folder(paths: AppPaths, chosen: str) -> tuple[AppPaths, str]:
    """The paths with the chats folder the person chose, if it is there; else the default
    and a sentence (the chats there are untouched and used again once it is back)."""
    return _chosen_folder(
        paths,
        chosen,
        paths.with_chats_dir,
        lambda folder: (
            f"Your chats folder {folder} is not available (is its disk "
            f"connected?). Hearth opened the chats in {paths.chats_dir} meanwhile; the chats in "
            f"{folder} are untouched and open again once it is back."
        ),
    )


def _models_folder(paths: AppPaths, chosen: str) -> tuple[AppPaths, str]:
    """The paths with the models folder the person chose, if it is there (a disk that is
    not plugged in, say, is not recreated empty); else the default, and a sentence."""
    return _chosen_folder(
        paths,
        chosen,
        paths.with_models_dir,
        lambda folder: (
            f"The models folder {folder} is not available (is its disk "
            f"connected?). Hearth uses {paths.models_dir} until it is back."
        ),
    )


def _chosen_folder(
    paths: AppPaths,
    chosen: str,
    use: Callable[[Path], AppPaths],
    missing: Callable[[Path], str],
) -> tuple[AppPaths, str]:
    if not chosen:
        return paths, ""
    folder = Path(chosen).expanduser()
    return (use(folder), "") if folder.is_dir() else (paths, missing(folder))


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
