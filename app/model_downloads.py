"""Model downloads for the model manager: the strip above the composer, one download
at a time, the first-run offer of a model that suits this computer, and the switch to
a downloaded model once the reply in progress has ended.

GUI thread. Part of the model manager (``app.model_manager`` builds it and is its
``host``): it asks and speaks through the host; the work runs in ``DownloadJob``
(app.model_jobs) on a thread of its own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QObject, Signal, Slot

from app.engine_client import EngineClient
from app.model_jobs import DownloadJob, progress_text
from engine.models.catalog import CatalogEntry
from engine.models.choice import Target
from engine.models.hf_cache import CachedFile
from engine.models.library import partial_download_bytes
from engine.models.service import ModelService, label
from engine.models.types import DownloadOutcome, DownloadProgress
from engine.settings import Model, Settings
from engine.units import format_bytes, format_duration
from ui.model_bar import ModelBar

if TYPE_CHECKING:
    from engine.models.hf_token import TokenStore

log = logging.getLogger(__name__)

# "About N minutes" before a download has started is said at this speed, and the
# sentence says so (50 Mbit/s: a common home connection).
ASSUMED_BYTES_PER_S = 50e6 / 8
ASSUMED_SPEED_TEXT = "50 Mbit/s"


class DownloadsHost(Protocol):
    """What downloads need of the model manager."""

    settings: Settings
    engine: EngineClient
    service: ModelService
    endpoint: str | None

    @property
    def models_dir(self) -> Path: ...
    @property
    def tokens(self) -> TokenStore: ...
    @property
    def files_busy(self) -> bool: ...
    @property
    def replying(self) -> bool: ...
    def current_choice(self) -> tuple[str, str]: ...
    def resolve(self, family: str, choice: str) -> Target: ...
    def say(self, text: str) -> None: ...
    def show_progress(self, fraction: float | None, text: str) -> None: ...
    def end_progress(self, text: str, *, retry: str = "") -> None: ...
    def switch_to(self, name: str, path: Path, family: str, choice: str) -> None: ...


class Downloads(QObject):
    ended = Signal(str)  # DownloadOutcome
    progress_cleared = Signal()  # the strip went away to make room for a switch

    def __init__(self, host: DownloadsHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._job: DownloadJob | None = None
        self._job_choice: tuple[str, str] | None = None  # (family, choice) to switch to after
        self._ready: tuple[CatalogEntry, Path, str, str] | None = None  # downloaded, waiting
        self._offered = False
        # What "Download" / "Resume" / "Try again" in the strip fetches, and what it then
        # switches to (None: just download).
        self._retry: tuple[CatalogEntry, tuple[str, str] | None] | None = None
        self.bar = ModelBar()
        self.bar.download_clicked.connect(self._on_bar_download)
        self.bar.dismissed.connect(self._on_bar_dismissed)

    @property
    def downloading(self) -> CatalogEntry | None:
        return self._job.entry if self._job is not None else None

    def start(self, entry: CatalogEntry, *, switch_to: tuple[str, str] | None) -> None:
        host = self._host
        if self._job is not None:
            if self._job.entry.id == entry.id:
                self._job_choice = switch_to or self._job_choice
                return
            host.say(
                f"{label(self._job.entry)} is still downloading. Cancel it first to download "
                f"{label(entry)}."
            )
            return
        if host.files_busy:
            host.say("Wait for the import or move in progress to finish, then download.")
            return
        # The keyring is asked on the download's thread (it may take seconds).
        job = DownloadJob(entry, host.models_dir, host.endpoint, lambda: host.tokens.get())
        job.source_found.connect(self._on_download_source)
        job.progress.connect(self._on_download_progress)
        job.finished.connect(self._on_download_finished)
        job.failed.connect(self._on_download_failed)
        job.cancelled.connect(self._on_download_cancelled)
        self._job, self._job_choice = job, switch_to
        host.show_progress(None, f"Downloading {label(entry)}: connecting…")
        log.info("download of %s started", entry.filename)
        job.start()

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def join(self) -> None:
        if self._job is not None:
            self._job.join()

    @Slot(object)
    def _on_download_source(self, cached: CachedFile | None) -> None:
        job = self._job
        if job is not None and cached is not None:
            self._host.show_progress(
                None, f"Copying {label(job.entry)} from your Hugging Face cache…"
            )
            log.info("installing %s from the Hugging Face cache: %s", job.entry.filename, cached)

    @Slot(object)
    def _on_download_progress(self, progress: DownloadProgress) -> None:
        job = self._job
        if job is None:
            return
        if job.cached is not None and progress.total:
            done, total = format_bytes(progress.done), format_bytes(progress.total)
            text = f"Copying {label(job.entry)} from your Hugging Face cache: {done} of {total}"
            self._host.show_progress(progress.done / progress.total, text)
            return
        self._host.show_progress(*progress_text(job.entry, progress))

    @Slot(str)
    def _on_download_finished(self, path: str) -> None:
        job, choice = self._job, self._job_choice
        self._job = self._job_choice = None
        if job is None:
            return
        job.join()
        log.info("download of %s finished", job.entry.filename)
        self.ended.emit(DownloadOutcome.DONE)
        if choice is None:
            self._host.end_progress(f"{label(job.entry)} is downloaded and checked.")
            return
        self._ready = (job.entry, Path(path), *choice)
        if self._host.replying:
            self._host.end_progress(
                f"{label(job.entry)} is downloaded. Hearth switches to it when this reply ends."
            )
            return
        self.switch_to_ready()

    def switch_to_ready(self) -> None:
        """Switch to a model downloaded while a reply was written (if there is one)."""
        if self._ready is None:
            return
        entry, path, family, choice = self._ready
        self._ready = None
        self.bar.hide()
        self.progress_cleared.emit()
        self._host.switch_to(label(entry), path, family, choice)

    @Slot(str)
    def _on_download_failed(self, message: str) -> None:
        job = self._end_job()
        self.ended.emit(DownloadOutcome.FAILED)
        name = f"{label(job.entry)}: " if job is not None else ""
        self._host.end_progress(f"{name}{message}", retry="Try again")

    @Slot()
    def _on_download_cancelled(self) -> None:
        job = self._end_job()
        self.ended.emit(DownloadOutcome.CANCELLED)
        kept = partial_download_bytes(self._host.models_dir, job.entry.filename) if job else 0
        self._host.end_progress(
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

    # --- the first-run offer -------------------------------------------------------------
    def offer(self) -> None:
        """Once a model is loaded: if the chosen family is not installed, offer it."""
        host = self._host
        if self._offered or self._job is not None or host.settings[Model.PATH]:
            return
        if host.engine.remote is not None:  # chatting through a server: no download offer
            return
        family, choice = host.current_choice()
        if host.settings[Model.OFFER_DISMISSED] == family:
            return
        target = host.resolve(family, choice)
        if target.entry is None or target.path is not None:
            return
        info = host.engine.model_info
        service = host.service
        if info is not None and service.entry_for_path(info.path) in service.entries(family):
            return  # already on this family (a smaller quant that fits better, say)
        self._offered = True
        entry = target.entry
        minutes = format_duration(entry.download_size / ASSUMED_BYTES_PER_S)
        size = ("about " if entry.size_estimated else "") + format_bytes(entry.download_size)
        self._retry = (entry, (family, choice))
        kept = partial_download_bytes(host.models_dir, entry.filename)
        resumed = f" ({format_bytes(kept)} of it is already here)" if kept else ""
        self.bar.show_offer(
            f"This computer can run {label(entry)} well: a download of {size}{resumed}, about "
            f"{minutes} on a {ASSUMED_SPEED_TEXT} connection. You can keep chatting with the "
            "starter model while it downloads."
        )

    def withdraw_offer(self) -> None:
        """A server's model is in use: an offer for this computer is beside the point."""
        if self._offered and self._job is None:
            self.bar.hide()

    @Slot()
    def _on_bar_download(self) -> None:
        if self._retry is None:
            return
        entry, choice = self._retry
        self.start(entry, switch_to=choice)

    @Slot()
    def _on_bar_dismissed(self) -> None:
        self.bar.hide()
        if self._offered:
            self._host.settings.set(Model.OFFER_DISMISSED, self._host.current_choice()[0])
