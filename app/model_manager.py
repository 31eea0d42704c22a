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

from app.chat.context import ContextController
from app.chat.replies import ReplyController
from app.engine_client import EngineClient
from app.folders import Folders
from app.model_files import ModelFiles
from app.model_jobs import LOCAL_FILES, DownloadJob, progress_text
from app.notifier import Notifier
from engine.errors import KnownError
from engine.gguf.header import GGUFError
from engine.gguf.validate import validate_gguf
from engine.models.catalog import CatalogEntry, load_catalog
from engine.models.choice import AUTO, Target
from engine.models.hf_cache import CachedFile
from engine.models.library import partial_download_bytes
from engine.models.memory import AUTO_CONTEXT, FitBadge
from engine.models.service import ModelService, label
from engine.models.types import DownloadOutcome, DownloadProgress
from engine.settings import Model, Performance, Settings, engine_options, model_choice
from engine.types import EngineOptions, ModelInfo
from engine.units import format_bytes, format_duration
from ui.main_window import MainWindow
from ui.model_bar import ModelBar

if TYPE_CHECKING:  # huggingface_hub and keyring load when a download or token needs them,
    # not on the way to the first window (~0.2 s)
    from engine.models.hf_token import TokenStore

log = logging.getLogger(__name__)

# "About N minutes" before a download has started is said at this speed, and the
# sentence says so (50 Mbit/s: a common home connection).
ASSUMED_BYTES_PER_S = 50e6 / 8
ASSUMED_SPEED_TEXT = "50 Mbit/s"


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
        self._tokens_lock = threading.Lock()
        # Options given at launch (tests): their context length stands in for "Automatic".
        self._launch_options = launch_options
        self._job: DownloadJob | None = None
        self._job_choice: tuple[str, str] | None = None  # (family, choice) to switch to after
        self._ready: tuple[CatalogEntry, Path, str, str] | None = None  # downloaded, waiting
        self.files = ModelFiles(self, self)  # import, delete, move the folder
        self.files.imported.connect(self.imported)
        self.files.deleted.connect(self.changed)
        self._switch: _Switch | None = None
        self.bar = ModelBar()
        window.add_notice_bar(self.bar)
        self.bar.download_clicked.connect(self._on_bar_download)
        self.bar.dismissed.connect(self._on_bar_dismissed)
        self.bar.cancel_clicked.connect(self.cancel_download)
        # engine.model_changed reaches on_model_changed from app/gui.py, connected after
        # the controllers: the window has taken the load in before this answers it.
        replies.reply_ended.connect(self._on_reply_done)
        folders.models_dir_changed.connect(self._on_models_dir_changed)
        self._offered = False
        self.notice = ""  # a sentence about the start's model choice, for the window
        self._fallen_back = False  # the start's model failed and the starter was loaded
        self._fallback_note = ""
        # What "Download" / "Resume" / "Try again" in the strip fetches, and what it then
        # switches to (None: just download).
        self._retry: tuple[CatalogEntry, tuple[str, str] | None] | None = None

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
        return self._job.entry if self._job is not None else None

    @property
    def catalog(self) -> tuple[CatalogEntry, ...]:
        return self.service.catalog

    @property
    def busy(self) -> bool:
        """A download, an import or a move of the models folder is under way."""
        return self._job is not None or self.files.busy

    def families(self) -> list[tuple[str, str]]:
        """(family id, name), biggest model first, then the person's own files."""
        return [*self.service.families(), (LOCAL_FILES, "Your own model files")]

    def current_choice(self) -> tuple[str, str]:
        return self.settings[Model.FAMILY], self.settings[Model.QUANT] or AUTO

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

    def _replying(self) -> bool:
        return self._replies.busy

    def _may_stop_reply_for(self, name: str) -> bool:
        """No reply streams, or the person agreed to stop it to switch to ``name``."""
        return not self._replying() or self.ask(
            "Switch the model?",
            f"A reply is being written. Stop it and switch to {name}? "
            "What was written so far is kept.",
            "Stop and switch",
        )

    def switch_to(self, name: str, path: Path, family: str, choice: str) -> None:
        info = self.loaded
        previous = info.name + " " + info.quantization if info else "the previous model"
        self._switch = _Switch(name, path, family, choice, self.engine.model_path, previous)
        log.info("switching to %s", path)
        self.say(f"Loading {name}… your conversation stays open.")
        self.engine.load(str(path), self.options_for(path))  # a reply is stopped first

    def _remember(self, family: str, choice: str) -> None:
        if family == LOCAL_FILES:  # a file of the person's own: the catalog choice stays
            self.settings.set(Model.PATH, choice)
            return
        self.settings.set(Model.FAMILY, family)
        self.settings.set(Model.QUANT, choice)
        self.settings.set(Model.PATH, "")

    # --- downloads ----------------------------------------------------------------------
    def start_download(self, entry: CatalogEntry, *, switch_to: tuple[str, str] | None) -> None:
        if self._job is not None:
            if self._job.entry.id == entry.id:
                self._job_choice = switch_to or self._job_choice
                return
            self.say(
                f"{label(self._job.entry)} is still downloading. Cancel it first to download "
                f"{label(entry)}."
            )
            return
        if self.files.busy:
            self.say("Wait for the import or move in progress to finish, then download.")
            return
        # The keyring is asked on the download's thread (it may take seconds).
        job = DownloadJob(entry, self.models_dir, self.endpoint, lambda: self.tokens.get())
        job.source_found.connect(self._on_download_source)
        job.progress.connect(self._on_download_progress)
        job.finished.connect(self._on_download_finished)
        job.failed.connect(self._on_download_failed)
        job.cancelled.connect(self._on_download_cancelled)
        self._job, self._job_choice = job, switch_to
        self.show_progress(None, f"Downloading {label(entry)}: connecting…")
        log.info("download of %s started", entry.filename)
        job.start()

    @Slot()
    def cancel_download(self) -> None:
        """Cancel the download, the import or the move of the models folder in progress."""
        if self._job is not None:
            self._job.cancel()
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
        if self._job is not None:
            self._job.join()
        self.files.join()

    def show_progress(self, fraction: float | None, text: str) -> None:
        self.bar.show_progress(fraction, text)
        self.progressed.emit(fraction, text)

    def end_progress(self, text: str, *, retry: str = "") -> None:
        self.bar.show_message(text, retry=retry)
        self.progress_ended.emit(text)
        self.changed.emit()

    @Slot(object)
    def _on_download_source(self, cached: CachedFile | None) -> None:
        job = self._job
        if job is not None and cached is not None:
            self.show_progress(None, f"Copying {label(job.entry)} from your Hugging Face cache…")
            log.info("installing %s from the Hugging Face cache: %s", job.entry.filename, cached)

    @Slot(object)
    def _on_download_progress(self, progress: DownloadProgress) -> None:
        job = self._job
        if job is None:
            return
        if job.cached is not None and progress.total:
            done, total = format_bytes(progress.done), format_bytes(progress.total)
            text = f"Copying {label(job.entry)} from your Hugging Face cache: {done} of {total}"
            self.show_progress(progress.done / progress.total, text)
            return
        self.show_progress(*progress_text(job.entry, progress))

    @Slot(str)
    def _on_download_finished(self, path: str) -> None:
        job, choice = self._job, self._job_choice
        self._job = self._job_choice = None
        if job is None:
            return
        job.join()
        log.info("download of %s finished", job.entry.filename)
        self.download_ended.emit(DownloadOutcome.DONE)
        if choice is None:
            self.end_progress(f"{label(job.entry)} is downloaded and checked.")
            return
        self._ready = (job.entry, Path(path), *choice)
        if self._replying():
            self.end_progress(
                f"{label(job.entry)} is downloaded. Hearth switches to it when this reply ends."
            )
            return
        self._switch_to_ready()

    def _switch_to_ready(self) -> None:
        if self._ready is None:
            return
        entry, path, family, choice = self._ready
        self._ready = None
        self.bar.hide()
        self.progress_ended.emit("")
        self.switch_to(label(entry), path, family, choice)

    @Slot(str)
    def _on_download_failed(self, message: str) -> None:
        job = self._end_job()
        self.download_ended.emit(DownloadOutcome.FAILED)
        name = f"{label(job.entry)}: " if job is not None else ""
        self.end_progress(f"{name}{message}", retry="Try again")

    @Slot()
    def _on_download_cancelled(self) -> None:
        job = self._end_job()
        self.download_ended.emit(DownloadOutcome.CANCELLED)
        kept = partial_download_bytes(self.models_dir, job.entry.filename) if job else 0
        self.end_progress(
            f"Download paused ({format_bytes(kept)} kept). Choose Resume (or the quantization "
            "again) to carry on from there.",
            retry="Resume",
        )

    def _end_job(self) -> DownloadJob | None:
        """The job that ended; its entry and choice are kept for "Resume" / "Try again"."""
        job, choice = self._job, self._job_choice
        self._job = self._job_choice = None
        if job is not None:
            job.join()
            self._retry = (job.entry, choice)
        return job

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

    # --- the first-run offer -------------------------------------------------------------
    def offer(self) -> None:
        """Once a model is loaded: if the chosen family is not installed, offer it."""
        if self._offered or self._job is not None or self.settings[Model.PATH]:
            return
        family, choice = self.current_choice()
        if self.settings[Model.OFFER_DISMISSED] == family:
            return
        target = self.resolve(family, choice)
        if target.entry is None or target.path is not None:
            return
        info = self.loaded
        if info is not None and self.service.entry_for_path(info.path) in self.service.entries(
            family
        ):
            return  # already on this family (a smaller quant that fits better, say)
        self._offered = True
        entry = target.entry
        minutes = format_duration(entry.download_size / ASSUMED_BYTES_PER_S)
        size = ("about " if entry.size_estimated else "") + format_bytes(entry.download_size)
        self._retry = (entry, (family, choice))
        kept = partial_download_bytes(self.models_dir, entry.filename)
        resumed = f" ({format_bytes(kept)} of it is already here)" if kept else ""
        self.bar.show_offer(
            f"This computer can run {label(entry)} well: a download of {size}{resumed}, about "
            f"{minutes} on a {ASSUMED_SPEED_TEXT} connection. You can keep chatting with the "
            "starter model while it downloads."
        )

    @Slot()
    def _on_bar_download(self) -> None:
        if self._retry is None:
            return
        entry, choice = self._retry
        self.start_download(entry, switch_to=choice)

    @Slot()
    def _on_bar_dismissed(self) -> None:
        self.bar.hide()
        if self._offered:
            self.settings.set(Model.OFFER_DISMISSED, self.current_choice()[0])

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
            self.offer()
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
            self._context.warm_current(switch.name)  # its history, read now with progress
        self.changed.emit()

    def _on_load_failed(self, message: str) -> None:
        switch = self._switch
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
        prev = Path(switch.previous_path) if switch.previous_path else None
        self.engine.load(switch.previous_path, self.options_for(prev))

    @Slot(int, int, object)
    def _on_reply_done(self, _conv_id: int, _msg_id: int, _status: object) -> None:
        if self._ready is not None:
            self._switch_to_ready()

    # --- talking to the person -------------------------------------------------------------
    def say(self, text: str) -> None:
        self.notifier.info(text, 8000)
        self.said.emit(text)

    def ask(self, title: str, text: str, action: str) -> bool:
        return self._window.confirm(title, text, "", action)
