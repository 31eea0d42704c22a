"""Model downloads, moves and imports on threads of their own, and how they are worded.

Each job is a QObject living on the GUI thread whose work runs on a Python
thread; results come back as queued signals. The engine does the work
(engine.models.download, engine.models.library, engine.models.folder); this module only
carries it off the GUI thread and puts it in sentences.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.errors import KnownError
from engine.models.catalog import CatalogEntry
from engine.models.folder import MoveCancelled
from engine.models.hf_cache import CachedFile
from engine.models.library import ImportCancelled, adopt_from_cache
from engine.models.memory import FitBadge
from engine.models.types import DownloadProgress, DownloadState

log = logging.getLogger(__name__)

LOCAL_FILES = "files"  # the Model page's "family" of model files the person imported
BADGE_TEXT = {FitBadge.FITS: "fits", FitBadge.TIGHT: "tight", FitBadge.TOO_LARGE: "too large"}


def gb(n: float) -> str:
    """Bytes for people: "850 MB", "5.9 GB"."""
    return f"{n / 1e6:.0f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def label(entry: CatalogEntry) -> str:
    """How a model file is named to people: 'Qwen3.5 9B Q4_K_M'."""
    return f"{entry.name} {entry.quantization}"


def progress_text(entry: CatalogEntry, p: DownloadProgress) -> tuple[float | None, str]:
    """(fraction or None, sentence) for one progress report."""
    name = label(entry)
    fraction = p.done / p.total if p.total else None
    if p.state is DownloadState.CONNECTING:
        return fraction, f"Downloading {name}: connecting…"
    if p.state is DownloadState.CHECKING:
        return fraction, f"Downloading {name}: checking the part downloaded earlier…"
    if p.state is DownloadState.RETRYING:
        return fraction, f"Downloading {name}: {p.note} Trying again…"
    if p.state is DownloadState.VERIFYING:
        return fraction, f"Checking {name} (sha256)…"
    if p.state is DownloadState.DONE:
        return 1.0, f"{name} is downloaded and checked."
    parts = [f"Downloading {name}: {gb(p.done)}"]
    if p.total:
        parts[0] += f" of {gb(p.total)}"
    if p.speed > 0:
        parts.append(f"{p.speed / 1e6:.1f} MB/s")
    if p.eta_s is not None:
        parts.append(f"about {duration(p.eta_s)} left")
    return fraction, " · ".join(parts)


class DownloadJob(QObject):
    """One ``engine.models.download.Download`` on its own thread; results come back as
    queued signals (this object lives on the GUI thread)."""

    progress = Signal(object)  # DownloadProgress
    finished = Signal(str)  # installed path
    failed = Signal(str)  # sentence
    cancelled = Signal()

    def __init__(
        self,
        entry: CatalogEntry,
        models_dir: Path,
        endpoint: str | None,
        token: str | None,
        cached: CachedFile | None = None,
    ) -> None:
        super().__init__()
        self.entry = entry
        self.models_dir = models_dir
        self.cached = cached  # a copy in the Hugging Face cache: installed from there instead
        self._cancel = threading.Event()
        from engine.models.download import Download

        self.download = Download(
            entry, models_dir, endpoint=endpoint, token=token, on_progress=self.progress.emit
        )
        self._thread = threading.Thread(target=self._run, name="download", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()
        self.download.cancel()

    def _copy_progress(self, done: int, total: int) -> None:
        state = DownloadState.DOWNLOADING if done < total else DownloadState.VERIFYING
        self.progress.emit(
            DownloadProgress(entry_id=self.entry.id, state=state, done=done, total=total)
        )

    def _fetch(self) -> Path:
        if self.cached is not None:
            return adopt_from_cache(
                self.entry,
                self.models_dir,
                cached=self.cached,
                cancel=self._cancel,
                on_progress=self._copy_progress,
            )
        return self.download.run()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        from engine.models.download import DownloadCancelled

        try:
            path = self._fetch()
        except (DownloadCancelled, ImportCancelled):
            self.cancelled.emit()
        except KnownError as exc:
            log.warning("download of %s failed: %s", self.entry.filename, exc)
            self.failed.emit(exc.message)
        except Exception:
            log.exception("download of %s crashed", self.entry.filename)
            self.failed.emit(
                f"The download of {label(self.entry)} stopped because of an internal error. "
                "What was downloaded is kept; the details are in the log file."
            )
        else:
            self.finished.emit(str(path))


class MoveJob(QObject):
    """Moving or importing model files on a thread of its own: ``work(progress, cancel)``
    (engine.models.folder, engine.models.library) with results as queued signals."""

    progress = Signal(object, object)  # done bytes, total bytes (may exceed 2**31)
    finished = Signal(object)  # what ``work`` returned
    failed = Signal(str)  # sentence

    def __init__(
        self,
        work: Callable[[Callable[[int, int], None], threading.Event], object],
        what: str,
    ) -> None:
        super().__init__()
        self.what = what  # "Moving the models to …", "Importing x.gguf"
        self.cancel = threading.Event()
        self._work = work
        self._thread = threading.Thread(target=self._run, name="model-files", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            result = self._work(self.progress.emit, self.cancel)
        except (MoveCancelled, ImportCancelled):
            self.failed.emit(f"{self.what} was cancelled; nothing changed.")
        except KnownError as exc:
            self.failed.emit(exc.message)
        except Exception:
            log.exception("%s crashed", self.what)
            self.failed.emit(
                f"{self.what} stopped because of an internal error; the details are in the "
                "log file. Check the models folder before trying again."
            )
        else:
            self.finished.emit(result)
