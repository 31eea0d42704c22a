"""Settings: the dialog's intents → validated, saved, applied.

Options that need the model reloaded are collected and applied together when
the person presses "Reload model now" (asking first if a reply is streaming);
everything else applies at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from PySide6.QtCore import QObject, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFont
from PySide6.QtWidgets import QApplication, QMessageBox

from app import chat_lock
from app.background import BackgroundOp, Report, run_in_background
from app.chat.conversations import ConversationController, GenerationDefaults
from app.chat.replies import ReplyController
from app.engine_client import EngineClient
from app.folders import Folder, Folders
from app.model_manager import ModelManager
from app.model_page import ModelPage
from app.notifier import Notifier
from engine.errors import KnownError
from engine.history.store import ChatStore
from engine.history.turns import ThinkingMode
from engine.settings import (
    SAMPLING,
    SPECS,
    Appearance,
    Generation,
    Performance,
    Settings,
    Value,
    sampling_overrides,
)
from engine.types import SamplingParams
from engine.units import format_bytes
from ui.main_window import MainWindow
from ui.settings_dialog import SettingsDialog
from ui.theme import apply_theme

log = logging.getLogger(__name__)


class SettingsController(QObject):
    # A live setting was applied (for the controllers of other pages' sections:
    # app/serve_window.py).
    setting_applied = Signal(str)

    def __init__(
        self,
        settings: Settings,
        folders: Folders,
        models: ModelManager,
        page: ModelPage,
        *,
        window: MainWindow,
        store: ChatStore,
        engine: EngineClient,
        conversations: ConversationController,
        replies: ReplyController,
        notifier: Notifier,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.folders = folders
        self.models = models
        self.page = page
        self.window = window  # the dialog's parent, its fonts and questions
        self.store = store
        self.engine = engine
        self.conversations = conversations
        self.replies = replies
        self.notifier = notifier
        self.dialog: SettingsDialog | None = None
        self._reload_pending = False
        self._moving: BackgroundOp[None] | None = None  # the chats' copy, while it runs
        # Pages built elsewhere, given each new Settings window (e.g. Connections).
        self.page_attachers: list[Callable[[SettingsDialog], None]] = []
        window.settings_requested.connect(self.open)

    @Slot()
    def open(self) -> None:
        if self.dialog is not None:
            self.dialog.raise_()
            self.dialog.activateWindow()
            return
        values = dict(self.settings.items())
        dialog = SettingsDialog(
            values, gpu_offload=self._gpu_offload(), estimate=None, parent=self.window
        )
        dialog.setting_changed.connect(self._on_setting_changed)
        dialog.reload_requested.connect(self._on_reload_requested)
        dialog.open_folder_requested.connect(self._on_open_folder)
        dialog.finished.connect(self._on_dialog_finished)
        dialog.delete_all_chats_requested.connect(self._on_delete_all_chats)
        dialog.move_chats_requested.connect(self._on_move_chats)
        dialog.set_reload_pending(self._reload_pending)
        dialog.set_auto_values(self._auto_values())
        self.dialog = dialog
        self.page.attach(dialog)
        for attach in self.page_attachers:
            attach(dialog)
        dialog.show()

    def _auto_values(self) -> dict[str, Value]:
        """What the "Automatic" and "Model default" fields come to with the model loaded."""
        values: dict[str, Value] = {Appearance.FONT_SIZE.key: QApplication.font().pointSize()}
        info = self.engine.model_info
        if info is None:
            return values
        values[Performance.N_CTX.key] = info.n_ctx
        threads = info.extra.get("threads", "")
        if threads.isdigit():
            values[Performance.THREADS.key] = int(threads)
        layers = info.extra.get("gpu_layers", "")
        if layers.isdigit():  # what "Automatic" put on the GPU for this model
            values[Performance.GPU_LAYERS.key] = int(layers)
        entry = self.models.service.entry_for_path(info.path)
        preset = entry.sampling_for(thinking=info.thinking_default) if entry else None
        defaults = preset.apply(SamplingParams()) if preset else SamplingParams()
        for field, spec in SAMPLING:
            values[spec.key] = getattr(defaults, field)
        return values

    def _gpu_offload(self) -> bool:
        """Whether this llama.cpp can use a GPU here (the GPU layers control is shown)."""
        devices = self.models.service.devices
        if devices is None:  # llama.cpp is loaded by now (the engine thread), so this is quick
            from engine.inference.devices import probe_devices

            devices = probe_devices()
        return devices.can_offload

    @Slot(int)
    def _on_dialog_finished(self, _result: int) -> None:
        if self.dialog is not None:
            self.dialog.deleteLater()
        self.dialog = None

    @Slot(str, object)
    def _on_setting_changed(self, key: str, value: Value) -> None:
        try:
            changed = self.settings.set(key, value)
        except ValueError as exc:
            self.notifier.error(f"{SPECS[key].label}: {exc}.")
            if self.dialog is not None:
                self.dialog.set_value(key, self.settings[key])
            return
        if not changed:
            return
        log.info("setting %s changed", key)
        if SPECS[key].reload:
            self._reload_pending = True
            if self.dialog is not None:
                self.dialog.set_reload_pending(True)
            return
        self.apply_live(key)
        self.setting_applied.emit(key)

    def apply_live(self, key: str) -> None:
        """Apply one option that needs no reload."""
        window = self.window
        if key == Appearance.THEME.key:
            app = QApplication.instance()
            assert isinstance(app, QApplication)
            window.chat_view.set_dark(apply_theme(app, self.settings[Appearance.THEME]))
        elif key == Appearance.FONT_SIZE.key:
            size = self.settings[Appearance.FONT_SIZE]
            font = QFont(QApplication.font())
            if size:
                font.setPointSize(size)
            window.chat_view.setFont(font)
            window.chat_view.document().setDefaultFont(font)
        elif SPECS[key].page == "generation":
            # Sampling applies to the next reply; the prompt and thinking to new chats.
            self.conversations.defaults = GenerationDefaults(
                MappingProxyType(dict(sampling_overrides(self.settings))),
                self.settings[Generation.SYSTEM_PROMPT],
                ThinkingMode(self.settings[Generation.THINKING]),
            )
            self.conversations.show_toolbar()

    @Slot()
    def _on_reload_requested(self) -> None:
        if self.replies.busy:
            answer = QMessageBox.question(
                self.dialog or self.window,
                "Reload the model?",
                "A reply is being written. Stop it and reload the model with the new settings?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self._reload_pending = False
        if self.dialog is not None:
            self.dialog.set_reload_pending(False)
        path = self.engine.model_path
        self.engine.load(None, self.models.options_for(Path(path) if path else None))

    @Slot()
    def _on_delete_all_chats(self) -> None:
        window = self.window
        if self.replies.busy:
            self.notifier.error("A reply is being written. Stop it first, then delete the chats.")
            return
        if not window.confirm(
            "Delete all chats?",
            "Delete every conversation for good? This cannot be undone.",
            "To keep a copy, export them first (⋯ menu → Export all chats).",
            "Delete all chats",
        ):
            return
        try:
            count = self.store.delete_all_conversations()
        except KnownError as exc:
            self.notifier.known(exc)
            return
        log.info("deleted all %d conversations", count)
        self.conversations.refresh_conversations()
        self.notifier.info(f"Deleted {count} conversation{'' if count == 1 else 's'}.", 8000)

    @Slot(str)
    def _on_move_chats(self, folder: str) -> None:
        """Move the chat history to ``folder`` (asks first), and go on using it there."""
        window, store = self.window, self.store
        if self.replies.busy:
            self.notifier.error("A reply is being written. Stop it first, then move the chats.")
            return
        if self._moving is not None:
            self.notifier.error(
                "Hearth is still moving your chats. Wait until it is done, then try again."
            )
            return
        old = store.path
        target = Path(folder).expanduser().absolute()
        if target.resolve() == old.parent.resolve():
            self.notifier.info("Your chats are already in that folder.", 5000)
            return
        size = sum(p.stat().st_size for p in old.parent.glob(old.name + "*") if p.is_file())
        if not window.confirm(
            "Move your chats?",
            f"Move your chat history ({format_bytes(size)}) from {old.parent} to {target}?",
            "Hearth copies it, checks the copy, and only then deletes the old file.",
            "Move",
        ):
            return
        self._copy_chats(target, attempts=self.MOVE_ATTEMPTS)

    # A reply or an edit during the copy is saved in the old file after the copy's
    # snapshot: then the copy is made again, this many times at most.
    MOVE_ATTEMPTS = 3

    def _copy_chats(self, target: Path, *, attempts: int) -> None:
        """Copy the chats to ``target`` on a thread of its own (a connection of its own:
        the store's is this thread's), then switch to the copy here if nothing was saved
        meanwhile; the old file is deleted only then."""
        store = self.store
        old, new = store.path, target / store.path.name
        commits = store.commits

        def copy(_report: Report, _cancel: threading.Event) -> None:
            with ChatStore.second(old, read_only=True) as source:
                source.copy_to(new)

        def done(_: None) -> None:
            changed = self.replies.busy or store.commits != commits or store.path != old
            if changed:
                for suffix in ("", "-wal", "-shm"):  # the copy is stale: ours to delete
                    Path(f"{new}{suffix}").unlink(missing_ok=True)
                if attempts > 1 and not self.replies.busy and store.path == old:
                    self._copy_chats(target, attempts=attempts - 1)
                    return
                self._moving = None
                self.notifier.clear_info()
                self.notifier.error(
                    "Your chats changed while they were being copied, so nothing was moved. "
                    "Move them again when no reply is being written."
                )
                return
            self._moving = None
            try:
                key_file = chat_lock.carry_key_file(old, new)  # an encrypted history's
                store.switch_to(new)
            except KnownError as exc:
                self.notifier.known(exc)
                return
            if key_file:
                chat_lock.drop_key_file(old)
            log.info("moved the chats from %s to %s", old.parent, target)
            self.folders.set_chats_dir(target)  # saved; the Settings window follows
            self.notifier.info(f"Your chats are now in {target}.", 8000)

        def failed(sentence: str) -> None:
            self._moving = None
            self.notifier.clear_info()
            self.notifier.error(sentence)

        self.notifier.info(f"Moving your chats to {target}…", 0)
        self._moving = run_in_background(copy, done, failed, what=f"Moving the chats to {target}")

    @Slot(str)
    def _on_open_folder(self, which: str) -> None:
        folder = self.folders.folder(Folder(which))
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
