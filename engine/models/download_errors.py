"""What went wrong with a download, as a sentence for the person (engine.models.download).

``explain`` maps huggingface_hub's and the OS's exceptions to a
``DownloadError``, or to ``Transient`` wrapping one when trying again may help
(no network, a 5xx, a stream cut short): ``Download.run`` retries those with
backoff and, when it gives up, raises the sentence inside.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import httpx2
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from engine.errors import DownloadError

__all__ = [
    "AccessDeniedError",
    "ChecksumMismatchError",
    "DiskFullError",
    "NotOnHubError",
    "OfflineError",
    "TamperedFileError",
    "Transient",
    "disk_full",
    "explain",
    "not_on_hub",
]


# Kinds of DownloadError, so a front end can act on them (an "add token" button, an exit
# code) without parsing the sentence. Each is still a DownloadError with its sentence.
class AccessDeniedError(DownloadError):
    """401/403: gated or private; a Hugging Face token (with access) is needed."""


class NotOnHubError(DownloadError):
    """404: the repo, revision or file is not where the catalog says."""


class OfflineError(DownloadError):
    """The Hub could not be reached (after retries), or downloads are switched off."""


class DiskFullError(DownloadError):
    """Not enough free space in the models folder."""


class ChecksumMismatchError(DownloadError):
    """The file arrived, but its sha256 is not the one expected; it was deleted."""


class TamperedFileError(ChecksumMismatchError):
    """The server offered a file other than the one the repository records at the revision
    (its own headers say so): refused before downloading, nothing installed."""


class Transient(Exception):
    def __init__(self, error: DownloadError) -> None:
        super().__init__(error.message)
        self.error = error


def disk_full(filename: str, models_dir: Path, need: int, free: int) -> DownloadError:
    return DiskFullError(
        f"Not enough free disk space to download {filename}: it needs "
        f"{need / 1e9:.1f} GB more and {free / 1e9:.1f} GB is free in {models_dir}. "
        "Free some space or choose another models folder in Settings."
    )


def not_on_hub(name: str, detail: str) -> DownloadError:
    return NotOnHubError(
        f"{name} is no longer on Hugging Face where Hearth's catalog says (404). "
        "Update Hearth or pick another model.",
        detail=detail,
    )


def _gone(name: str, exc: BaseException) -> DownloadError:
    return not_on_hub(name, str(exc))


def explain(
    exc: BaseException, *, filename: str, repo: str, models_dir: Path, token_given: bool, need: int
) -> Exception:
    """A DownloadError with a sentence, a Transient wrapping one, or ``exc`` itself (a bug)."""
    if isinstance(exc, DownloadError | Transient):
        return exc
    if isinstance(exc, GatedRepoError):
        return AccessDeniedError(
            f"{repo} is gated on Hugging Face: accept its terms on huggingface.co, then add "
            "your Hugging Face token in Settings.",
            detail=str(exc),
        )
    if isinstance(exc, RepositoryNotFoundError):
        hint = (
            "check your Hugging Face token in Settings"
            if token_given
            else "if it needs an account, add your Hugging Face token in Settings"
        )
        return AccessDeniedError(
            f"Hugging Face did not let Hearth see {repo}: {hint}.", detail=str(exc)
        )
    if isinstance(exc, RevisionNotFoundError | EntryNotFoundError) and not isinstance(
        exc, LocalEntryNotFoundError
    ):
        return _gone(filename, exc)
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return AccessDeniedError(
                f"Hugging Face refused to send {filename} ({status}): add your Hugging Face "
                f"token in Settings, or check it has access to {repo}.",
                detail=str(exc),
            )
        if status == 404:
            return _gone(filename, exc)
        if status in (408, 429) or status >= 500:
            return Transient(
                DownloadError(
                    f"Hugging Face is not answering properly right now (error {status}). "
                    "The part downloaded so far is kept: try again later.",
                    detail=str(exc),
                )
            )
    if isinstance(exc, OfflineModeIsEnabled):
        return OfflineError(
            "Downloads are switched off on this computer (HF_HUB_OFFLINE is set).",
            detail=str(exc),
        )
    # http_get raises a plain OSError when a stream ends short of the expected size.
    short = isinstance(exc, OSError) and "Consistency check failed" in str(exc)
    if short or isinstance(exc, httpx2.TransportError | LocalEntryNotFoundError | ConnectionError):
        return Transient(
            OfflineError(
                "Hearth could not reach Hugging Face: check your internet connection and try "
                "again. The part downloaded so far is kept; the download resumes from there.",
                detail=repr(exc),
            )
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return disk_full(filename, models_dir, need, shutil.disk_usage(models_dir).free)
    if isinstance(exc, OSError):
        return DownloadError(
            f"Hearth could not write to {models_dir} ({exc.strerror or exc}). Check the "
            "folder's permissions or choose another models folder in Settings.",
            detail=repr(exc),
        )
    return exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
