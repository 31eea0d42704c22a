"""Which model Hearth runs: the person's choice, downloads, switching.

GUI thread. The engine decides what fits and where a file is (``engine.models.service``)
and how it is fetched (``engine.models.download``); this module turns the person's
choice ("Auto", a quantization of a family, a file of their own) into a file, downloads
it first when needed, and reloads the engine on it; the open conversation continues on
the new file, or on the one it had (with a sentence) if the new one fails to load. A
switch never interrupts a reply by surprise. The person's files are ``self.files``
(app.model_files); the Model page uses only the public methods and signals here.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from app.backends import RemoteTarget
from app.chat.context import ContextController
from app.chat.replies import ReplyController
from app.connections import Connections, RemoteChoice, connection_of
from app.engine_client import EngineClient
from app.folders import Folders
from app.model_downloads import Downloads
from app.model_files import ModelFiles
from app.model_jobs import LOCAL_FILES
from app.notifier import Notifier
from engine.errors import KnownError
from engine.gguf.header import GGUFError
from engine.gguf.validate import validate_gguf
from engine.models.catalog import CatalogEntry, load_catalog
from engine.models.choice import AUTO, Target
from engine.models.memory import AUTO_CONTEXT, FitBadge
from engine.models.service import ModelService, label
from engine.settings import Model, Performance, Settings, engine_options, model_choice
from engine.types import EngineOptions, ModelInfo
from ui.main_window import MainWindow

if TYPE_CHECKING:  # huggingface_hub and keyring load when a download or token needs them,
    # not on the way to the first window (~0.2 s)
    from engine.models.hf_token import TokenStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Switch:
    name: str  # "Qwen3.5 9B Q4_K_M", or a file's name
    path: Path
    family: str  # LOCAL_FILES for a file of the person's own
    choice: str
    previous_path: str  # "" = the starter model
    previous_name: str
    falling_back: bool = False
    failure: str = ""
    remote: RemoteTarget | None = None  # a model on a server instead of ``path``
    previous_remote: RemoteTarget | None = None


class ModelManager(QObject):
    switch_finished = Signal(bool)  # True: now on the chosen file; False: went back
    download_ended = Signal(str)  # DownloadOutcome
    said = Signal(str)  # a sentence about the models (also in the status bar)
    progressed = Signal(object, str)  # fraction (None: not known yet), sentence: a job runs
    progress_ended = Signal(str)  # the job (download, import, move) ended: a sentence
    changed = Signal()  # what the Model page lists changed (a load, a download, a file)
    imported = Signal(object)  # InstalledModel: a file of one's own was imported

    def __init__(
        self,
        settings: Settings,
        folders: Folders,
        engine: EngineClient,
        *,
        notifier: Notifier,
        replies: ReplyController,
        context: ContextController,
        window: MainWindow,
        catalog: list[CatalogEntry] | None = None,
        endpoint: str | None = None,
        tokens: TokenStore | None = None,
        launch_options: EngineOptions | None = None,
        connections: Connections | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.folders = folders
        self.engine = engine  # the one owner of the loaded model, its path and options
        self.notifier = notifier
        self._replies = replies
        self._context = context
        self._window = window  # its notice strip and its questions
        self.service = ModelService(
            catalog if catalog is not None else load_catalog(), lambda: folders.models_dir
        )
        self.service.load_machine(folders.paths.data_dir)  # a GPU and RAM speed found before
        self.endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
        self._tokens = tokens
        self.connections = connections  # servers whose models can be chosen (issue 15)
        self.remote = RemoteChoice(settings, connections)
        self._tokens_lock = threading.Lock()
        # Options given at launch (tests): their context length stands in for "Automatic".
        self._launch_options = launch_options
        self.files = ModelFiles(self, self)  # import, delete, move the folder
        self.files.imported.connect(self.imported)
        self.files.deleted.connect(self.changed)
        self._switch: _Switch | None = None
        self.downloads = Downloads(self, self)  # the strip, one download, the first-run offer
        self.bar = self.downloads.bar
        window.add_notice_bar(self.bar)
        self.bar.cancel_clicked.connect(self.cancel_download)
        self.downloads.ended.connect(self.download_ended)
        self.downloads.progress_cleared.connect(lambda: self.progress_ended.emit(""))
        # engine.model_changed reaches on_model_changed from app/gui.py, connected after
        # the controllers: the window has taken the load in before this answers it.
        replies.reply_ended.connect(self._on_reply_done)
        folders.models_dir_changed.connect(self._on_models_dir_changed)
        self.notice = ""  # a sentence about the start's model choice, for the window
        self._fallen_back = False  # the start's model failed and the starter was loaded
        self._fallback_note = ""

    # --- what is there ----------------------------------------------------------------
    @property
    def tokens(self) -> TokenStore:
        """The Hugging Face token's store, made on first use. Making it and its methods
        may wait on the system keyring (D-Bus): use it off the GUI thread
        (``run_in_background``); it is thread-safe."""
        with self._tokens_lock:
            if self._tokens is None:
                from engine.models.hf_token import TokenStore

                self._tokens = TokenStore()
            return self._tokens

    @property
    def models_dir(self) -> Path:
        return self.folders.models_dir

    @property
    def loaded(self) -> ModelInfo | None:
        """The model in use, if one is loaded."""
        return self.engine.model_info

    @property
    def downloading(self) -> CatalogEntry | None:
        return self.downloads.downloading

    @property
    def catalog(self) -> tuple[CatalogEntry, ...]:
        return self.service.catalog

    @property
    def busy(self) -> bool:
        """A download, an import or a move of the models folder is under way."""
        return self.downloads.downloading is not None or self.files.busy

    @property
    def files_busy(self) -> bool:
        return self.files.busy

    def families(self) -> list[tuple[str, str]]:
        """(family id, name), biggest model first, then the person's own files."""
        local = [*self.service.families(), (LOCAL_FILES, "Your own model files")]
        return local + self.remote.families()

    def current_choice(self) -> tuple[str, str]:
        """(family, choice); a server's model is (its connection's family, its id)."""
        return self.remote.family_choice() or (
            self.settings[Model.FAMILY],
            self.settings[Model.QUANT] or AUTO,
        )

    def startup_remote(self) -> RemoteTarget | None:
        """The server model chosen for chats, if its connection is still there."""
        target, notice = self.remote.at_start()
        if notice:  # never over startup_path's own sentence (a chosen file that is gone)
            self.notice = f"{self.notice} {notice}".strip()
        return target

    # --- memory -------------------------------------------------------------------------
    def context_wanted(self) -> int:
        """The context the person set, or what "Automatic" aims for."""
        return self.settings[Performance.N_CTX] or AUTO_CONTEXT

    def estimate_options(self, n_ctx: int | None = None) -> EngineOptions:
        return replace(self.engine.options, n_ctx=n_ctx or self.context_wanted())

    def reclaimable(self) -> int:
        """What unloading the current model gives back (loading another frees it first)."""
        info = self.loaded
        return self.service.reclaimable(Path(info.path) if info else None, self.engine.options)

    def options_for(self, path: Path | None) -> EngineOptions:
        """Engine options to load ``path`` with: the settings', and the context that fits."""
        options = engine_options(self.settings)
        automatic = self.settings[Performance.N_CTX] is None
        if automatic and self._launch_options is not None:
            return replace(options, n_ctx=self._launch_options.n_ctx)
        return self.service.load_options(
            options, path, automatic_context=automatic, reclaimable=self.reclaimable()
        )

    def estimate_text(self, n_ctx: int | None) -> str:
        """For the Performance page: the loaded model's memory at ``n_ctx``."""
        info = self.loaded
        loaded = Path(info.path) if info is not None else None
        wanted = n_ctx or (info.n_ctx if info is not None else AUTO_CONTEXT)
        return self.service.estimate_text(loaded, wanted, self.engine.options)

    # --- choosing -----------------------------------------------------------------------
    def resolve(self, family: str, choice: str) -> Target:
        return self.service.resolve(
            family, choice, self.estimate_options(), reclaimable=self.reclaimable()
        )

    def startup_path(self) -> str:
        """The file to load at start ("" = the starter model). A file of the person's
        own that is gone is said (``notice``) and the catalog's choice used instead."""
        own = self.settings[Model.PATH]
        if own and not Path(own).is_file():
            self.notice = (
                f"The model file {own} is not there any more (moved, deleted, or on a disk "
                "that is not connected). Hearth uses the model chosen in Settings → Model."
            )
        return self.service.startup_file(
            model_choice(self.settings), self.estimate_options(), own_file=not self.notice
        )

    def select(self, family: str, choice: str) -> None:
        """The person picked ``choice`` ("auto" or a quantization) of ``family``, or
        (family LOCAL_FILES) the path of one of their own files."""
        if family == LOCAL_FILES:
            self._select_file(Path(choice))
            return
        if connection_of(family) is not None:
            self._select_remote(family, choice)
            return
        target = self.resolve(family, choice)
        if target.entry is None:
            self.say(f"Hearth's catalog has no {choice} file for this model.")
            return
        entry, fit = target.entry, target.fit
        loaded = self.loaded
        if target.path is not None and loaded is not None and Path(loaded.path) == target.path:
            self._remember(family, choice)  # e.g. "Auto" that resolves to the file in use
            self.changed.emit()
            return
        warning = fit.fit.warning if fit is not None and fit.fit.badge is not FitBadge.FITS else ""
        action = "Download and load anyway" if target.path is None else "Load anyway"
        if warning and not self.ask("Load anyway?", warning, action):
            return
        if target.path is None:
            self.start_download(entry, switch_to=(family, choice))
            return
        if self._may_stop_reply_for(label(entry)):
            self.switch_to(label(entry), target.path, family, choice)

    def _select_file(self, path: Path) -> None:
        loaded = self.loaded
        if loaded is not None and Path(loaded.path) == path:
            self._remember(LOCAL_FILES, str(path))
            return
        try:
            validate_gguf(path)  # a bad file gets a sentence and never reaches llama.cpp
            fit = self.service.fit(path, self.estimate_options(), reclaimable=self.reclaimable())
            warning = fit.warning if fit.badge is not FitBadge.FITS else ""
        except KnownError as exc:
            self.say(exc.message)
            return
        except (GGUFError, OSError, ValueError, KeyError):
            warning = ""  # parameters Hearth cannot estimate from: load it and see
        if warning and not self.ask("Load anyway?", warning, "Load anyway"):
            return
        if self._may_stop_reply_for(path.name):
            self.switch_to(path.name, path, LOCAL_FILES, str(path))

    def _select_remote(self, family: str, model: str) -> None:
        target = self.remote.target(family, model)
        if isinstance(target, str):
            self.say(target)
        elif self.loaded is not None and self.loaded.path == target.path:
            self._remember(family, model)
            self.changed.emit()
        elif self._may_stop_reply_for(shown := f"{model} on {target.connection}"):
            self.switch_to(shown, Path(), family, model, remote=target)

    @property
    def replying(self) -> bool:
        return self._replies.busy

    def _may_stop_reply_for(self, name: str) -> bool:
        """No reply streams, or the person agreed to stop it to switch to ``name``."""
        return not self.replying or self.ask(
            "Switch the model?",
            f"A reply is being written. Stop it and switch to {name}? "
            "What was written so far is kept.",
            "Stop and switch",
        )

    def switch_to(
        self, name: str, path: Path, family: str, choice: str, *, remote: RemoteTarget | None = None
    ) -> None:
        info = self.loaded
        previous = f"{info.name} {info.quantization}".strip() if info else "the previous model"
        engine = self.engine
        self._switch = _Switch(
            name, path, family, choice, engine.model_path, previous, remote=remote,
            previous_remote=engine.remote,
        )  # fmt: skip
        log.info("switching to %s", remote.path if remote else path)
        if remote is not None:
            self.say(f"Connecting to {name}… your conversation stays open.")
            engine.load_remote(remote)  # a reply is stopped first
            return
        self.say(f"Loading {name}… your conversation stays open.")
        engine.load(str(path), self.options_for(path))  # a reply is stopped first

    def _remember(self, family: str, choice: str) -> None:
        if self.remote.remember(family, choice):  # a server's: the file chosen stays
            return
        if family == LOCAL_FILES:  # a file of the person's own: the catalog choice stays
            self.settings.set(Model.PATH, choice)
            return
        self.settings.set(Model.FAMILY, family)
        self.settings.set(Model.QUANT, choice)
        self.settings.set(Model.PATH, "")

    # --- downloads (app.model_downloads) -------------------------------------------------
    def start_download(self, entry: CatalogEntry, *, switch_to: tuple[str, str] | None) -> None:
        self.downloads.start(entry, switch_to=switch_to)

    @Slot()
    def cancel_download(self) -> None:
        """Cancel the download, the import or the move of the models folder in progress."""
        self.downloads.cancel()
        self.files.cancel()

    def may_close(self) -> bool:
        """Whether Hearth may quit now: asks while the models folder is being moved (a
        move is finished or undone, never left half-way)."""
        if not self.files.moving:
            return True
        return self.ask(
            "Stop moving the models?",
            "The models folder is being moved. Stop the move and quit? Hearth first puts "
            "back what it already moved; this can take a minute.",
            "Stop and quit",
        )

    def shutdown(self) -> None:
        """Stop a download (its part is kept for next time) and an import or a move (what
        was moved is moved back), and wait for them: called on quit, window hidden."""
        self.cancel_download()
        self.downloads.join()
        self.files.join()

    def show_progress(self, fraction: float | None, text: str) -> None:
        self.bar.show_progress(fraction, text)
        self.progressed.emit(fraction, text)

    def end_progress(self, text: str, *, retry: str = "") -> None:
        self.bar.show_message(text, retry=retry)
        self.progress_ended.emit(text)
        self.changed.emit()

    @Slot(object)
    def _on_models_dir_changed(self, new: Path) -> None:
        """The files moved: the model in use and a file of one's own are there now."""

        def moved(path: str) -> str:
            p = Path(path)
            return str(new / p.name) if path and p.resolve().parent != new.resolve() else path

        # The engine client followed already (EngineClient.relocate, connected first);
        # a path it did not recognise as in the old folder (a link, say) follows here.
        old_path = self.engine.model_path
        if old_path and not Path(old_path).exists():
            self.engine.set_path(moved(old_path))
        own = self.settings[Model.PATH]
        if own and not Path(own).exists() and (new / Path(own).name).exists():
            self.settings.set(Model.PATH, moved(own))  # a file of one's own moved with them
        self.changed.emit()

    # --- engine events ---------------------------------------------------------------------
    @Slot(object, str)
    def on_model_changed(self, info: ModelInfo | None, error: str) -> None:
        """A load ended: ``info`` of the model now loaded, or None and a sentence. Called
        after the window has taken it in (its state, the model's name)."""
        if info is None:
            self._on_load_failed(error)
        else:
            self._on_loaded(info)

    def _on_loaded(self, info: ModelInfo) -> None:
        note, self._fallback_note = self._fallback_note, ""
        # Where the GPU asked for could not be used (fewer layers, the CPU): said once.
        device_note = info.extra.get("device_note", "")
        if note or device_note:
            self.notifier.error(f"{note} {device_note}".strip())
        switch, self._switch = self._switch, None
        if switch is None:
            self.changed.emit()
            self.downloads.offer()
            return
        if switch.falling_back:
            self.notifier.error(switch.failure)
            self.say(switch.failure)  # the Settings window may be in front
            self.switch_finished.emit(False)
        else:
            self._remember(switch.family, switch.choice)
            if not device_note:
                self.notifier.clear_error()  # e.g. an earlier switch that went back
            self.say(f"Now using {switch.name}. The conversation continues. {device_note}".strip())
            self.switch_finished.emit(True)
            if switch.remote is None:  # a server reads the history with the next message
                self._context.warm_current(switch.name)  # its history, read now with progress
            else:
                self.downloads.withdraw_offer()
        self.changed.emit()

    def _on_load_failed(self, message: str) -> None:
        switch = self._switch
        remote = self.engine.remote
        if switch is None and remote is not None and not self._fallen_back:
            # The server chosen for chats cannot be reached at start: a model on this
            # computer, so the person can still chat; the choice stays for next time.
            self._fallen_back = True
            log.warning("%s failed to connect; loading the local model instead", remote.path)
            self._fallback_note = (
                f"{message} Hearth uses the model on this computer for now; choose "
                f"{remote.model} on {remote.connection} again in Settings → Model to retry."
            )
            path = self.engine.model_path
            self.engine.load(path, self.options_for(Path(path) if path else None))
            return
        if switch is None:
            failed = self.engine.model_path
            if failed and not self._fallen_back:  # a chosen file that will not load: the
                self._fallen_back = True  # starter model, so the person can still chat
                log.warning("%s failed to load; loading the starter model instead", failed)
                self._fallback_note = (
                    f"{message} Hearth loaded the starter model instead; choose another "
                    "model in Settings → Model."
                )
                self.engine.load("", self.options_for(None))
            return
        if switch.falling_back:  # even the previous one failed: the controller has said so
            self._switch = None
            self.switch_finished.emit(False)
            return
        switch.falling_back = True
        switch.failure = (
            f"Hearth could not load {switch.name}: {message} It went back to "
            f"{switch.previous_name}; your conversation is unchanged."
        )
        log.warning("switch to %s failed; going back to %r", switch.path, switch.previous_path)
        if switch.previous_remote is not None:
            self.engine.load_remote(switch.previous_remote)
            return
        prev = Path(switch.previous_path) if switch.previous_path else None
        self.engine.load(switch.previous_path, self.options_for(prev))

    @Slot(int, int, object)
    def _on_reply_done(self, _conv_id: int, _msg_id: int, _status: object) -> None:
        self.downloads.switch_to_ready()

    # --- talking to the person -------------------------------------------------------------
    def say(self, text: str) -> None:
        self.notifier.info(text, 8000)
        self.said.emit(text)

    def ask(self, title: str, text: str, action: str) -> bool:
        return self._window.confirm(title, text, "", action)
