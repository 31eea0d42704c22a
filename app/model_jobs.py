"""A model download on a thread of its own, and how downloads are worded.

The job is a QObject living on the GUI thread whose work runs on a Python thread;
results come back as queued signals. The engine does the work (engine.models.download,
engine.models.library); this module only carries it off the GUI thread, with what
may be slow before it (asking the keyring for a token, scanning the Hugging Face
cache), and puts it in sentences. Imports and folder moves run through
``app.background.run_in_background``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.background import Throttle
from engine.errors import KnownError
from engine.models.catalog import CatalogEntry
from engine.models.hf_cache import CachedFile, find_in_hf_cache
from engine.models.library import ImportCancelled, adopt_from_cache
from engine.models.memory import FitBadge
from engine.models.service import label
from engine.models.types import DownloadProgress, DownloadState
from engine.units import format_bytes, format_duration

if TYPE_CHECKING:
    from engine.models.download import Download

log = logging.getLogger(__name__)

LOCAL_FILES = "files"  # the Model page's "family" of model files the person imported
BADGE_TEXT = {FitBadge.FITS: "fits", FitBadge.TIGHT: "tight", FitBadge.TOO_LARGE: "too large"}


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
    parts = [f"Downloading {name}: {format_bytes(p.done)}"]
    if p.total:
        parts[0] += f" of {format_bytes(p.total)}"
    if p.speed > 0:
        parts.append(f"{p.speed / 1e6:.1f} MB/s")
    if p.eta_s is not None:
        parts.append(f"about {format_duration(p.eta_s)} left")
    return fraction, " · ".join(parts)


class DownloadJob(QObject):
    """One catalog file fetched on its own thread: from the Hugging Face cache when a copy
    is there, else downloaded (with the token ``token()`` gives, asked on that thread:
    the keyring may take seconds). Results come back as queued signals; this object
    lives on the GUI thread. Connect, then ``start()``."""

    source_found = Signal(object)  # CachedFile (copied from there) or None (downloaded)
    progress = Signal(object)  # DownloadProgress
    finished = Signal(str)  # installed path
    failed = Signal(str)  # sentence
    cancelled = Signal()

    def __init__(
        self,
        entry: CatalogEntry,
        models_dir: Path,
        endpoint: str | None,
        token: Callable[[], str | None],
        *,
        hf_cache: bool = True,
    ) -> None:
        super().__init__()
        self.entry = entry
        self.models_dir = models_dir
        self.cached: CachedFile | None = None  # set on the job's thread before source_found
        self._endpoint = endpoint
        self._token = token
        self._hf_cache = hf_cache
        self._cancel = threading.Event()
        self._download: Download | None = None
        self._thread = threading.Thread(target=self._run, name="download", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()
        download = self._download  # None until the job's thread made it: it looks again
        if download is not None:
            download.cancel()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _copy_progress(self, done: int, total: int) -> None:
        state = DownloadState.DOWNLOADING if done < total else DownloadState.VERIFYING
        self.progress.emit(
            DownloadProgress(entry_id=self.entry.id, state=state, done=done, total=total)
        )

    def _fetch(self) -> Path:

        # Already downloaded by another app: copied (and checked), no download.
        self.cached = find_in_hf_cache(self.entry) if self._hf_cache else None
        self.source_found.emit(self.cached)
        if self.cached is not None:
            path = adopt_from_cache(
                self.entry,
                self.models_dir,
                cached=self.cached,
                cancel=self._cancel,
                on_progress=Throttle(self._copy_progress),  # (a report every MiB)
            )
        else:
            path = self._run_download(self.entry, self.progress.emit)
        projector = self.entry.projector
        if projector is not None:  # its vision file, counted in the same progress
            before = self.entry.size

            def progress(p: DownloadProgress) -> None:
                total = before + (p.total or projector.size)
                self.progress.emit(replace(p, entry_id=self.entry.id, done=before + p.done,
                                           total=total))  # fmt: skip

            self._run_download(projector, progress)
        return path

    def _run_download(
        self, entry: CatalogEntry, on_progress: Callable[[DownloadProgress], None]
    ) -> Path:
        from engine.models.download import Download

        download = Download(
            entry,
            self.models_dir,
            endpoint=self._endpoint,
            token=self._token(),
            on_progress=on_progress,
        )
        self._download = download
        if self._cancel.is_set():  # cancelled while the download was being made
            download.cancel()
        return download.run()

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
