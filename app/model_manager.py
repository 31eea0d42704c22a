"""Which model Hearth runs; the Model page; downloads; switching quantizations.

GUI thread. The engine decides what fits (``engine.models.memory``), where a file is
(``engine.models.catalog``) and how it is fetched (``engine.models.download``); this module
turns the person's choice ("Auto", or a quantization of a family) into a file,
downloads it first when needed (on a download thread, progress throttled by
the engine), and reloads the engine on it. The open conversation simply
continues on the new file. If the new file fails to load, Hearth goes back to
the one it had, with a sentence.

A switch never interrupts a reply by surprise: choosing a quantization while
a reply streams asks first; a download that finishes during a reply waits for
the reply to end.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from app.controller import ChatController
from app.model_jobs import LOCAL_FILES, DownloadJob, duration, gb, label, progress_text
from app.model_page import ModelPage
from app.paths import AppPaths
from engine.errors import KnownError
from engine.gguf.arch import ModelArch
from engine.gguf.header import GGUFError, read_gguf_arch
from engine.gguf.validate import validate_gguf
from engine.models.catalog import CatalogEntry, load_catalog
from engine.models.choice import Target, arch_of, installed, load_options, resolve, startup_file
from engine.models.hardware import probe
from engine.models.hf_cache import find_in_hf_cache
from engine.models.library import partial_download_bytes
from engine.models.memory import (
    AUTO_CONTEXT,
    FitBadge,
    HardwareInfo,
    check_fit,
    estimate_for_options,
)
from engine.models.types import DownloadProgress
from engine.settings import Settings, engine_options, model_choice
from engine.types import EngineOptions, ModelInfo
from ui.model_bar import ModelBar
from ui.settings_dialog import AUTO_QUANT
from ui.state import ResponseState

if TYPE_CHECKING:  # huggingface_hub and keyring load when a download or token needs them,
    # not on the way to the first window (~0.2 s)
    from engine.models.hf_token import TokenStore

log = logging.getLogger(__name__)

# "About N minutes" before a download has started is said at this speed, and the
# sentence says so (50 Mbit/s: a common home connection).
ASSUMED_BYTES_PER_S = 50e6 / 8
ASSUMED_SPEED_TEXT = "50 Mbit/s"
# The context Hearth aims for when the person leaves it on "Automatic" (less if
# memory is short; never llama-cpp-python's 512, never a model's full 262k).
_HW_TTL_S = 5.0


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
    switch_finished = Signal(bool)  # True: now on the chosen file; False: went back (tests)
    download_ended = Signal(str)  # "done", "cancelled" or "failed" (tests)

    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        chat: ChatController,
        *,
        catalog: list[CatalogEntry] | None = None,
        endpoint: str | None = None,
        tokens: TokenStore | None = None,
        launch_options: EngineOptions | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.chat = chat
        self.paths = paths
        self.catalog = catalog if catalog is not None else load_catalog()
        self.endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
        self._tokens = tokens
        # Options given at launch (tests): their context length stands in for "Automatic".
        self._launch_options = launch_options
        self._hw: HardwareInfo | None = None
        self._hw_at = 0.0
        self._job: DownloadJob | None = None
        self._job_choice: tuple[str, str] | None = None  # (family, choice) to switch to after
        self._ready: tuple[CatalogEntry, Path, str, str] | None = None  # downloaded, waiting
        self._switch: _Switch | None = None
        self.page = ModelPage(self)
        self.bar = ModelBar()
        chat.window.add_notice_bar(self.bar)
        self.bar.download_clicked.connect(self._on_bar_download)
        self.bar.dismissed.connect(self._on_bar_dismissed)
        self.bar.cancel_clicked.connect(self.cancel_download)
        chat.engine.worker.model_loaded.connect(self._on_model_loaded)
        chat.engine.worker.model_load_failed.connect(self._on_model_load_failed)
        chat.reply_done.connect(self._on_reply_done)
        self._offered = False
        self.notice = ""  # a sentence about the start's model choice, for the window
        self._fallen_back = False  # the start's model failed and the starter was loaded
        self._fallback_note = ""
        # What "Download" / "Resume" / "Try again" in the strip fetches, and what it then
        # switches to (None: just download).
        self._retry: tuple[CatalogEntry, tuple[str, str] | None] | None = None

    # --- what is in the catalog -------------------------------------------------------
    @property
    def tokens(self) -> TokenStore:
        if self._tokens is None:  # the keyring is asked only when a token is needed
            from engine.models.hf_token import TokenStore

            self._tokens = TokenStore()
        return self._tokens

    @property
    def models_dir(self) -> Path:
        return self.paths.models_dir

    def families(self) -> list[tuple[str, str]]:
        """(family id, name), biggest model first."""
        seen: dict[str, CatalogEntry] = {}
        for entry in self.catalog:
            seen.setdefault(entry.family, entry)
        ordered = sorted(seen.values(), key=lambda e: -e.family_rank)
        return [(e.family, e.name) for e in ordered] + [(LOCAL_FILES, "Your own model files")]

    def entries(self, family: str) -> list[CatalogEntry]:
        return [e for e in self.catalog if e.family == family]

    def entry_for_path(self, path: str | Path) -> CatalogEntry | None:
        name = Path(path).name
        return next((e for e in self.catalog if e.filename == name), None)

    def installed(self, entry: CatalogEntry) -> Path | None:
        return installed(entry, self.models_dir)

    def hardware(self) -> HardwareInfo:
        now = time.monotonic()
        if self._hw is None or now - self._hw_at > _HW_TTL_S:
            # The fit does not depend on the GPU question, which would load llama.cpp on
            # the GUI thread before the window shows (0.2 s).
            self._hw, self._hw_at = probe(self.models_dir, check_gpu=False), now
        return self._hw

    def current_choice(self) -> tuple[str, str]:
        return str(self.settings["model.family"]), str(self.settings["model.quant"] or AUTO_QUANT)

    # --- memory -------------------------------------------------------------------------
    def _context_wanted(self) -> int:
        n_ctx = self.settings["performance.n_ctx"]
        return int(n_ctx) if isinstance(n_ctx, int) else AUTO_CONTEXT

    def estimate_options(self, n_ctx: int | None = None) -> EngineOptions:
        return replace(self.chat.options, n_ctx=n_ctx or self._context_wanted())

    def _loaded_arch(self) -> ModelArch | None:
        info = self.chat.model_info
        if info is None:
            return None
        entry = self.entry_for_path(info.path)
        if entry is not None and entry.arch is not None:
            return entry.arch
        try:
            return read_gguf_arch(Path(info.path))
        except (GGUFError, OSError):
            return None

    def _reclaimable(self) -> int:
        """What unloading the current model gives back (loading another frees it first)."""
        arch = self._loaded_arch()
        return estimate_for_options(arch, self.chat.options).total if arch else 0

    def options_for(self, path: Path | None) -> EngineOptions:
        """Engine options to load ``path`` with: the settings', and the context that fits."""
        options = engine_options(self.settings)
        automatic = not isinstance(self.settings["performance.n_ctx"], int)
        if automatic and self._launch_options is not None:
            return replace(options, n_ctx=self._launch_options.n_ctx)
        return load_options(
            options,
            automatic_context=automatic,
            arch=arch_of(path, self.catalog),
            hw=self.hardware(),
            reclaimable=self._reclaimable(),
        )

    def estimate_text(self, n_ctx: int | None) -> str:
        """For the Performance page: the loaded model's memory at ``n_ctx``."""
        arch = self._loaded_arch()
        if arch is None:
            return "Load a model to see its memory estimate."
        info = self.chat.model_info
        wanted = n_ctx or (info.n_ctx if info is not None else AUTO_CONTEXT)
        options = self.estimate_options(wanted)
        est = estimate_for_options(arch, options)
        shown = min(wanted, arch.n_ctx_train)
        note = f" (this model reads at most {arch.n_ctx_train:,} tokens)" if shown < wanted else ""
        return f"About {gb(est.total)} of memory at {shown:,} tokens{note}."

    # --- choosing -----------------------------------------------------------------------
    def resolve(self, family: str, choice: str) -> Target:
        return resolve(
            self.entries(family),
            choice,
            self.models_dir,
            self.hardware(),
            self.estimate_options(),
            reclaimable=self._reclaimable(),
        )

    def startup_path(self) -> str:
        """The file to load at start ("" = the starter model). A file of the person's
        own that is gone is said (``notice``) and the catalog's choice used instead."""
        own = str(self.settings["model.path"] or "")
        if own and not Path(own).is_file():
            self.notice = (
                f"The model file {own} is not there any more (moved, deleted, or on a disk "
                "that is not connected). Hearth uses the model chosen in Settings → Model."
            )
        return startup_file(
            model_choice(self.settings),
            self.catalog,
            self.models_dir,
            self.hardware(),
            self.estimate_options(),
            own_file=not self.notice,
        )

    def select(self, family: str, choice: str) -> None:
        """The person picked ``choice`` ("auto" or a quantization) of ``family``, or
        (family LOCAL_FILES) the path of one of their own files."""
        if family == LOCAL_FILES:
            self._select_file(Path(choice))
            return
        target = self.resolve(family, choice)
        if target.entry is None:
            self._say(f"Hearth's catalog has no {choice} file for this model.")
            return
        entry, fit = target.entry, target.fit
        loaded = self.chat.model_info
        if target.path is not None and loaded is not None and Path(loaded.path) == target.path:
            self._remember(family, choice)  # e.g. "Auto" that resolves to the file in use
            self.page.refresh()
            return
        warning = (
            fit.fit.warning if fit is not None and fit.fit.badge is not FitBadge.FITS else None
        )
        action = "Download and load anyway" if target.path is None else "Load anyway"
        if warning and not self._ask("Load anyway?", warning, action):
            return
        if target.path is None:
            self.start_download(entry, switch_to=(family, choice))
            return
        if not self._may_stop_reply_for(label(entry)):
            return
        self.switch_to(label(entry), target.path, family, choice)

    def _select_file(self, path: Path) -> None:
        loaded = self.chat.model_info
        if loaded is not None and Path(loaded.path) == path:
            self._remember(LOCAL_FILES, str(path))
            return
        try:
            validate_gguf(path)  # a bad file gets a sentence and never reaches llama.cpp
            fit = check_fit(
                estimate_for_options(read_gguf_arch(path), self.estimate_options()),
                self.hardware(),
                reclaimable=self._reclaimable(),
            )
        except KnownError as exc:
            self._say(exc.message)
            return
        except (GGUFError, OSError, ValueError, KeyError):
            fit = None  # parameters Hearth cannot estimate from: load it and see
        warning = fit.warning if fit is not None and fit.badge is not FitBadge.FITS else None
        if warning and not self._ask("Load anyway?", warning, "Load anyway"):
            return
        if not self._may_stop_reply_for(path.name):
            return
        self.switch_to(path.name, path, LOCAL_FILES, str(path))

    def _may_stop_reply_for(self, name: str) -> bool:
        """No reply streams, or the person agreed to stop it to switch to ``name``."""
        busy = self.chat.window.state in (ResponseState.GENERATING, ResponseState.STOPPING)
        return not busy or self._ask(
            "Switch the model?",
            f"A reply is being written. Stop it and switch to {name}? "
            "What was written so far is kept.",
            "Stop and switch",
        )

    def switch_to(self, name: str, path: Path, family: str, choice: str) -> None:
        info = self.chat.model_info
        self._switch = _Switch(
            name=name,
            path=path,
            family=family,
            choice=choice,
            previous_path=self.chat.model_path,
            previous_name=info.name + " " + info.quantization if info else "the previous model",
        )
        log.info("switching to %s", path)
        self._say(f"Loading {name}… your conversation stays open.")
        self.chat.reload(self.options_for(path), str(path))

    def _remember(self, family: str, choice: str) -> None:
        if family == LOCAL_FILES:  # a file of the person's own: the catalog choice stays
            self.settings.set("model.path", choice)
            return
        for key, value in (("model.family", family), ("model.quant", choice), ("model.path", "")):
            self.settings.set(key, value)

    # --- downloads ----------------------------------------------------------------------
    def start_download(self, entry: CatalogEntry, *, switch_to: tuple[str, str] | None) -> None:
        if self._job is not None:
            if self._job.entry.id == entry.id:
                self._job_choice = switch_to or self._job_choice
                return
            self._say(
                f"{label(self._job.entry)} is still downloading. Cancel it first to download "
                f"{label(entry)}."
            )
            return
        cached = find_in_hf_cache(entry)  # already downloaded by another app: no download
        try:
            token = None if cached else self.tokens.get()
            job = DownloadJob(entry, self.models_dir, self.endpoint, token, cached)
        except KnownError as exc:
            self._say(exc.message)
            return
        job.progress.connect(self._on_download_progress)
        job.finished.connect(self._on_download_finished)
        job.failed.connect(self._on_download_failed)
        job.cancelled.connect(self._on_download_cancelled)
        self._job, self._job_choice = job, switch_to
        if cached:
            self._show_progress(None, f"Copying {label(entry)} from your Hugging Face cache…")
            log.info("installing %s from the Hugging Face cache: %s", entry.filename, cached.path)
        else:
            self._show_progress(None, f"Downloading {label(entry)}: connecting…")
            log.info("download of %s started", entry.filename)
        job.start()

    @Slot()
    def cancel_download(self) -> None:
        """Cancel the download (or the move of the models folder) in progress."""
        if self._job is not None:
            self._job.cancel()
        self.page.cancel()

    def shutdown(self) -> None:
        """Stop a download (its part is kept for next time) or a move; called on quit."""
        if self._job is not None:
            self._job.cancel()
            self._job.join(5.0)
        self.page.shutdown()

    def _show_progress(self, fraction: float | None, text: str) -> None:
        self.bar.show_progress(fraction, text)
        if self.page.dialog is not None:
            self.page.dialog.show_download(fraction if fraction is not None else 0.0, text)

    def _end_download(self, text: str, *, retry: str = "") -> None:
        self.bar.show_message(text, retry=retry)
        if self.page.dialog is not None:
            self.page.dialog.show_download(None, text)
        self.page.refresh()

    @Slot(object)
    def _on_download_progress(self, progress: DownloadProgress) -> None:
        job = self._job
        if job is None:
            return
        if job.cached is not None and progress.total:
            done, total = gb(progress.done), gb(progress.total)
            text = f"Copying {label(job.entry)} from your Hugging Face cache: {done} of {total}"
            self._show_progress(progress.done / progress.total, text)
            return
        self._show_progress(*progress_text(job.entry, progress))

    @Slot(str)
    def _on_download_finished(self, path: str) -> None:
        job, choice = self._job, self._job_choice
        self._job = self._job_choice = None
        if job is None:
            return
        job.join(1.0)
        log.info("download of %s finished", job.entry.filename)
        self.download_ended.emit("done")
        if choice is None:
            self._end_download(f"{label(job.entry)} is downloaded and checked.")
            return
        self._ready = (job.entry, Path(path), *choice)
        if self.chat.window.state in (ResponseState.GENERATING, ResponseState.STOPPING):
            self._end_download(
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
        if self.page.dialog is not None:
            self.page.dialog.show_download(None, "")
        self.switch_to(label(entry), path, family, choice)

    @Slot(str)
    def _on_download_failed(self, message: str) -> None:
        job = self._end_job()
        self.download_ended.emit("failed")
        name = f"{label(job.entry)}: " if job is not None else ""
        self._end_download(f"{name}{message}", retry="Try again")

    @Slot()
    def _on_download_cancelled(self) -> None:
        job = self._end_job()
        self.download_ended.emit("cancelled")
        kept = partial_download_bytes(self.models_dir, job.entry.filename) if job else 0
        self._end_download(
            f"Download paused ({gb(kept)} kept). Choose Resume (or the quantization again) to "
            "carry on from there.",
            retry="Resume",
        )

    def _end_job(self) -> DownloadJob | None:
        """The job that ended; its entry and choice are kept for "Resume" / "Try again"."""
        job, choice = self._job, self._job_choice
        self._job = self._job_choice = None
        if job is not None:
            job.join(1.0)
            self._retry = (job.entry, choice)
        return job

    # --- the first-run offer -------------------------------------------------------------
    def offer(self) -> None:
        """Once a model is loaded: if the chosen family is not installed, offer it."""
        if self._offered or self._job is not None or self.settings["model.path"]:
            return
        family, choice = self.current_choice()
        if str(self.settings["model.offer_dismissed"] or "") == family:
            return
        target = self.resolve(family, choice)
        if target.entry is None or target.path is not None:
            return
        info = self.chat.model_info
        if info is not None and self.entry_for_path(info.path) in self.entries(family):
            return  # already on this family (a smaller quant that fits better, say)
        self._offered = True
        entry = target.entry
        minutes = duration(entry.size / ASSUMED_BYTES_PER_S)
        size = ("about " if entry.size_estimated else "") + gb(entry.size)
        self._retry = (entry, (family, choice))
        kept = partial_download_bytes(self.models_dir, entry.filename)
        resumed = f" ({gb(kept)} of it is already here)" if kept else ""
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
            self.settings.set("model.offer_dismissed", self.current_choice()[0])

    # --- engine events ---------------------------------------------------------------------
    @Slot(object)
    def _on_model_loaded(self, info: ModelInfo) -> None:
        note, self._fallback_note = self._fallback_note, ""
        if note:
            self.chat.window.show_error(note)
        entry = self.entry_for_path(info.path)
        current = self.chat.model_info
        if (
            entry is not None
            and current is not None
            and current.path == info.path != ""
            and (current.name != entry.name)
        ):
            # GGUF names are build tags ("Smollm2 135M 8k Lc100K Mix1 Ep2"); ours are for people.
            self.chat.model_info = info = replace(current, name=entry.name)
            self.chat.window.set_model_info(info)
        switch = self._switch
        if switch is None:
            self.page.refresh()
            self.offer()
            return
        self._switch = None
        if switch.falling_back:
            self.chat.window.show_error(switch.failure)
            self._say(switch.failure)  # the Settings window may be in front
            self.switch_finished.emit(False)
        else:
            self._remember(switch.family, switch.choice)
            self.chat.window.clear_error()  # e.g. an earlier switch that went back
            self._say(f"Now using {switch.name}. The conversation continues.")
            self.switch_finished.emit(True)
            self.chat.warm_current(switch.name)  # its history, read now with progress
        self.page.refresh()

    @Slot(str)
    def _on_model_load_failed(self, message: str) -> None:
        switch = self._switch
        if switch is None:
            failed = self.chat.model_path
            if failed and not self._fallen_back:  # a chosen file that will not load: the
                self._fallen_back = True  # starter model, so the person can still chat
                log.warning("%s failed to load; loading the starter model instead", failed)
                self._fallback_note = (
                    f"{message} Hearth loaded the starter model instead; choose another "
                    "model in Settings → Model."
                )
                self.chat.reload(self.options_for(None), "")
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
        self.chat.reload(self.options_for(prev), switch.previous_path)

    @Slot()
    def _on_reply_done(self) -> None:
        if self._ready is not None:
            self._switch_to_ready()

    # --- talking to the person -------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.chat.window.statusBar().showMessage(text, 8000)
        if self.page.dialog is not None:
            self.page.dialog.download_label.setText(text)

    def _ask(self, title: str, text: str, action: str) -> bool:
        return self.chat.window.confirm(title, text, "", action)
