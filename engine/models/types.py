"""Download progress as the window and the CLI see it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DownloadState(StrEnum):
    """Where a model download is (engine.models.catalog.download.Download reports it)."""

    CONNECTING = "connecting"  # asking the Hub for the file's size, hash and location
    CHECKING = "checking"  # re-reading the part downloaded earlier before resuming
    DOWNLOADING = "downloading"
    RETRYING = "retrying"  # a transient failure; waiting, then resuming where it stopped
    VERIFYING = "verifying"  # checking the sha256 before the file counts as installed
    DONE = "done"


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadProgress:
    """One throttled progress report of a download (bytes; speed in bytes per second)."""

    entry_id: str
    state: DownloadState
    done: int
    total: int | None
    speed: float = 0.0  # smoothed; 0 until measured
    eta_s: float | None = None
    attempt: int = 1
    note: str = ""  # why it is retrying, in a sentence


class DownloadOutcome(StrEnum):
    """How a download ended (a signal's payload; not stored)."""

    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
