"""Starting the window: QApplication, theme, store, engine thread, controller."""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType

from PySide6.QtWidgets import QApplication

from app.controller import ChatController
from app.logs import disable_crash_dump, enable_crash_dump, setup_logging
from app.paths import APP_NAME, AppPaths
from app.storage import open_store
from app.version import __version__
from app.worker import EngineThread
from engine.types import EngineOptions, SamplingParams
from ui.main_window import MainWindow
from ui.theme import apply_theme

log = logging.getLogger(__name__)


class HearthApp:
    """Everything one window needs, built in order and torn down in reverse."""

    def __init__(
        self,
        paths: AppPaths,
        *,
        model_path: str = "",
        theme: str = "system",
        options: EngineOptions | None = None,
        params: SamplingParams | None = None,
    ) -> None:
        self.paths = paths.ensure()
        setup_logging(paths.log_dir)
        previous_crash = enable_crash_dump(paths.crash_file)
        app = QApplication.instance()
        assert isinstance(app, QApplication), "create the QApplication first"
        dark = apply_theme(app, theme)
        self.store, store_notice = open_store(paths.db_path)
        self.window = MainWindow()
        self.window.chat_view.set_dark(dark)
        self.engine = EngineThread(paths.models_dir)
        self.controller = ChatController(
            self.window,
            self.store,
            self.engine,
            model_path=model_path,
            options=options,
            params=params,
        )
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._on_uncaught
        if store_notice:
            self.window.show_error(store_notice)
        elif previous_crash:
            self.window.show_error(
                "Hearth closed unexpectedly last time. Your chats were kept; a crash report "
                f"was saved to {paths.crash_file.with_suffix('.previous.txt')}."
            )

    def start(self) -> None:
        self.controller.start()
        self.window.show()

    def close(self) -> None:
        self.controller.shutdown()
        sys.excepthook = self._previous_excepthook
        disable_crash_dump(self.paths.crash_file)

    def _on_uncaught(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        # A bug in a slot must not take the whole app (and the chat) down.
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        self.window.show_error(
            "Something went wrong inside Hearth. Your chats are safe. The details are in "
            f"{self.paths.log_dir / 'hearth.log'}."
        )


def run_gui(paths: AppPaths, *, model_path: str = "", theme: str = "system") -> int:
    QApplication.setApplicationName(APP_NAME)
    QApplication.setApplicationDisplayName(APP_NAME)
    QApplication.setApplicationVersion(__version__)
    QApplication.setDesktopFileName("hearth")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    hearth = HearthApp(paths, model_path=model_path, theme=theme)
    app.aboutToQuit.connect(hearth.close)
    hearth.start()
    return app.exec()
