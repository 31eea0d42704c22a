"""Resumable, verified model downloads from the Hugging Face Hub (or a mirror).

``Download(entry, models_dir).run()`` blocks; call it on a worker thread and
``cancel()`` from any other. It goes through huggingface_hub: the metadata
HEAD (``get_hf_file_metadata``: commit, size, the LFS sha256, the CDN
location), the streamed GET with Range resume and in-call reconnects
(``file_download.http_get``), its error classes, and ``tqdm_class`` for
progress, whose ``update`` raises ``DownloadCancelled`` when asked to stop.

What the bytes must hash to is the repository's word, not the response's: the
revision is resolved to a commit (the catalog's pin, else the HEAD's
``X-Repo-Commit``, else the API), and the file's LFS sha256 and size at that
commit are read from the Hub API (``paths-info``); they must equal the
catalog's pin where it has one. The HEAD's ETag and size only have to agree
with that record: a server (a mirror, a proxy) whose response describes other
bytes, however consistently, is refused before a byte is fetched
(``TamperedFileError``), and bytes that do not hash to the record are deleted.
The commit is kept in the file's verified record (``revision``).

Why not ``hf_hub_download``: since huggingface_hub 1.x (PR #4228) it writes
to a per-process ``<etag>.<random>.incomplete`` file and deletes it on any
failure, so nothing survives a cancel, a dropped connection it cannot recover
from, or a restart. Hearth keeps its own partial file instead:
``<models>/.downloads/<file>.<sha256[:16]>.incomplete``, keyed by the content
hash so a re-uploaded file never resumes onto old bytes. The hash is computed
while writing (after re-reading the kept part on resume); the file is moved to
``<models>/<file>`` only once it matches, with a ``.sha256`` record next to it
(``engine.models.catalog.remember_verified``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlsplit

import filelock
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.file_download import http_get

# Documented as public, but not re-exported in a way mypy sees.
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from engine.errors import DownloadError
from engine.models.catalog import CatalogEntry, installed_path, remember_verified
from engine.models.download_errors import ChecksumMismatchError, Transient, disk_full, explain
from engine.models.download_verify import Repository
from engine.models.types import DownloadProgress, DownloadState

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["Download", "DownloadCancelled", "RetryPolicy", "partial_path"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
# http_get hands on the body in DOWNLOAD_CHUNK_SIZE pieces (10 MiB): a cancel can only act
# between pieces (20 s at 500 kB/s), and httpx re-chunks what it receives into pieces of
# that size through a BytesIO, copying every byte three times (a third of the time of a
# loopback download: bench/download.py). None, which httpx's iter_bytes documents, passes
# each piece on as received (64 KiB reads). There is no parameter for it; the module
# constant is read per call, so Hearth (the only huggingface_hub user in its process)
# sets it once, here. (Read in one place only: file_download.http_get.)
setattr(constants, "DOWNLOAD_CHUNK_SIZE", None)  # noqa: B010 (typed int, None is meant)
_DISK_MARGIN = 64 << 20  # keep a little space so the system does not run out as we finish


class DownloadCancelled(Exception):
    """The person cancelled. The part downloaded so far is kept for the next attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Transient failures (no network, 5xx, a dropped stream) are retried with backoff."""

    attempts: int = 5
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1)))


def partial_path(models_dir: Path, filename: str, sha256: str) -> Path:
    """Where the unfinished download of ``filename`` with content ``sha256`` is kept."""
    return models_dir / ".downloads" / f"{filename}.{sha256[:16]}.incomplete"


class Download:
    """One model file from the catalog into ``models_dir``, resumable and verified."""

    def __init__(
        self,
        entry: CatalogEntry,
        models_dir: Path,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        on_progress: Callable[[DownloadProgress], None] | None = None,
        progress_interval_s: float = 0.25,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if entry.repo is None:
            raise DownloadError(f"{entry.name} ({entry.quantization}) cannot be downloaded.")
        self.entry = entry
        self.models_dir = models_dir
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self._token = token  # never logged
        self._on_progress = on_progress
        self._interval = progress_interval_s
        self._retry = retry or RetryPolicy()
        self._timeout = timeout_s
        self._cancel = threading.Event()
        self._attempt = 1
        self._done = 0
        self._total: int | None = None
        self._speed = 0.0
        self._last_emit = 0.0
        self._last_done = 0
        self._commit: str | None = None

    @property
    def revision(self) -> str | None:
        """The commit the file was verified against, once known (None before)."""
        return self._commit

    # -- control -----------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop as soon as possible (from any thread); ``run`` raises DownloadCancelled."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise DownloadCancelled

    # -- progress ----------------------------------------------------------------------

    def _emit(self, state: DownloadState, *, force: bool = True, note: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._last_emit < self._interval:
            return
        elapsed = now - self._last_emit
        if state is DownloadState.DOWNLOADING and self._last_emit and elapsed > 0:
            rate = (self._done - self._last_done) / elapsed
            self._speed = rate if not self._speed else 0.7 * self._speed + 0.3 * rate
        self._last_emit, self._last_done = now, self._done
        eta = None
        if self._total is not None and self._speed > 0:
            eta = max(self._total - self._done, 0) / self._speed
        if self._on_progress is not None:
            self._on_progress(
                DownloadProgress(
                    entry_id=self.entry.id,
                    state=state,
                    done=self._done,
                    total=self._total,
                    speed=self._speed,
                    eta_s=eta,
                    attempt=self._attempt,
                    note=note,
                )
            )

    def _progress_class(self) -> type:
        download = self

        class Progress:
            """What http_get calls ``tqdm_class``: counts bytes, reports, and stops on cancel."""

            def __init__(self, *, total: int | None = None, initial: int = 0, **_: Any) -> None:
                download._done = initial
                download._total = total if total is not None else download._total

            def __enter__(self) -> Progress:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def update(self, n: int) -> None:
                download._done += n
                download._check_cancel()  # raised through http_get: it only catches network errors
                done = download._total is not None and download._done >= download._total
                download._emit(DownloadState.DOWNLOADING, force=done)

            def close(self) -> None:
                return None

        return Progress

    # -- the download --------------------------------------------------------------------

    def run(self) -> Path:
        """Download, verify and install the file; its final path. Blocks.

        Raises DownloadCancelled (keeping the part downloaded) or DownloadError
        with a sentence for the person.
        """
        done = installed_path(self.entry, self.models_dir)
        if done is not None:
            self._done = self._total = done.stat().st_size
            self._emit(DownloadState.DONE)
            return done
        while True:
            self._check_cancel()
            try:
                return self._run_once()
            except Transient as transient:
                if self._attempt >= self._retry.attempts:
                    raise transient.error from transient.__cause__
                delay = self._retry.delay(self._attempt)
                log.warning(
                    "download of %s failed (attempt %d), retrying in %.1f s: %s",
                    self.entry.filename,
                    self._attempt,
                    delay,
                    transient.__cause__,
                )
                self._emit(DownloadState.RETRYING, note=transient.error.message)
                if self._cancel.wait(delay):
                    raise DownloadCancelled from None
                self._attempt += 1

    def _run_once(self) -> Path:
        self._emit(DownloadState.CONNECTING)
        url = hf_hub_url(
            cast(str, self.entry.repo), self.entry.remote_name,
            revision=self.entry.revision or "main", endpoint=self.endpoint,
        )  # fmt: skip
        repository = Repository(self.endpoint, self._token, self._timeout)
        try:
            meta = get_hf_file_metadata(url, token=self._token or False, timeout=self._timeout)
            commit = repository.resolve_commit(self.entry, meta)
            record = repository.file(self.entry, commit)
        except DownloadError:
            raise
        except Exception as exc:
            raise self._explain(exc) from exc
        size, sha256 = repository.expected(self.entry, record, meta)
        self._total = size
        self._commit = commit
        partial = partial_path(self.models_dir, self.entry.filename, sha256)
        try:
            partial.parent.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(str(partial) + ".lock", timeout=0)
            lock.acquire()
        except filelock.Timeout:
            raise DownloadError(
                f"{self.entry.filename} is already being downloaded by another Hearth window."
            ) from None
        except OSError as exc:
            raise self._explain(exc) from exc
        try:
            return self._fetch(meta.location, partial, size, sha256, commit)
        finally:
            lock.release()
            if not partial.exists():  # installed or deleted: nothing left for it to guard
                Path(lock.lock_file).unlink(missing_ok=True)

    def _fetch(self, location: str, partial: Path, size: int, sha256: str, commit: str) -> Path:
        have = partial.stat().st_size if partial.exists() else 0
        if have > size:  # not ours to trust: start again
            partial.unlink()
            have = 0
        free = shutil.disk_usage(partial.parent).free
        if free < size - have + _DISK_MARGIN:
            raise self._disk_full(size - have, free)
        headers = build_hf_headers(token=self._token or False)
        if _origin(location) != _origin(self.endpoint):
            # A CDN's signed URL needs no token, and the token must not leave the Hub.
            headers.pop("authorization", None)
        self._done = have
        if have:
            self._emit(DownloadState.CHECKING)
        try:
            with _HashingFile(partial, have, self._check_cancel) as out:
                # Speed is measured from here, not from before re-reading the kept part.
                self._last_emit, self._last_done = time.monotonic(), have
                http_get(
                    location,
                    cast(BinaryIO, out),
                    resume_size=have,
                    headers=headers,
                    expected_size=size,
                    displayed_filename=self.entry.filename,
                    tqdm_class=cast(Any, self._progress_class()),
                )
                self._emit(DownloadState.VERIFYING)
                actual = out.hexdigest()
        except (DownloadCancelled, DownloadError):
            raise
        except Exception as exc:
            raise self._explain(exc) from exc
        if actual != sha256:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{self.entry.filename} arrived damaged (its checksum does not match) and was "
                "deleted. Download it again.",
                detail=f"sha256 {actual}, expected {sha256}",
            )
        target = self.models_dir / self.entry.filename
        try:
            os.replace(partial, target)
            remember_verified(target, sha256, revision=commit)
        except OSError as exc:
            raise self._explain(exc) from exc
        for stale in partial.parent.glob(f"{self.entry.filename}.*.incomplete"):
            stale.unlink(missing_ok=True)  # parts of older uploads of this file
        log.info("downloaded %s (commit %s, sha256 %s)", target, commit, sha256)
        self._emit(DownloadState.DONE)
        return target

    def _explain(self, exc: BaseException) -> Exception:
        return explain(
            exc,
            filename=self.entry.filename,
            repo=str(self.entry.repo),
            models_dir=self.models_dir,
            token_given=bool(self._token),
            need=self._total or 0,
        )

    def _disk_full(self, need: int, free: int) -> DownloadError:
        return disk_full(self.entry.filename, self.models_dir, need, free)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class _BackgroundSha256:
    """sha256 on its own thread, fed in order: hashing overlaps receiving and writing.

    hashlib releases the GIL while it hashes a block, so on two cores a download is
    no longer receive + hash in turn (on loopback hashing was a third of the time:
    bench/download.py). Blocks go over in batches of about 1 MiB; at most 8 batches
    wait, so a slow hash slows the download instead of filling memory.
    """

    def __init__(self, digest: _Hash) -> None:
        self._digest = digest
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=8)
        self._batch: list[bytes] = []
        self._batched = 0
        self._done = False
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def update(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= _CHUNK:
            self._queue.put(self._batch)
            self._batch, self._batched = [], 0

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            # One update per batch: hashlib lets go of the GIL while it hashes, and taking
            # it back once per MiB instead of once per 64 KiB piece keeps the two threads
            # from queueing for it (the copy costs less than the hand-overs it saves).
            self._digest.update(batch[0] if len(batch) == 1 else b"".join(batch))

    def finish(self) -> _Hash:
        """The digest of everything fed so far; the thread ends. Idempotent."""
        if not self._done:
            self._done = True
            if self._batch:
                self._queue.put(self._batch)
                self._batch = []
            self._queue.put(None)
            self._thread.join()
        return self._digest


class _HashingFile:
    """The partial file, hashed as it is written (http_get only writes, seeks and truncates)."""

    def __init__(self, path: Path, have: int, check_cancel: Callable[[], None]) -> None:
        self._f = path.open("r+b" if path.exists() else "w+b")
        digest = hashlib.sha256()
        self._check_cancel = check_cancel
        try:
            while self._f.tell() < have and (
                block := self._f.read(min(_CHUNK, have - self._f.tell()))
            ):
                digest.update(block)
                check_cancel()
            self._f.seek(have)
            self._f.truncate()
        except BaseException:
            self._f.close()
            raise
        self._hashed = have
        self._hasher = _BackgroundSha256(digest)

    def __enter__(self) -> _HashingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._hasher.finish()
            self._f.flush()
            os.fsync(self._f.fileno())  # on disk before the name says "installed"
        finally:
            self._f.close()

    def write(self, data: bytes) -> int:
        data = bytes(data)  # the hasher keeps it: never a buffer the caller reuses
        n = self._f.write(data)
        if self._hashed == self._f.tell() - n:
            self._hasher.update(data)
            self._hashed += n
        return n

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        where = self._f.seek(pos, whence)
        if where == 0:  # the server ignored Range: http_get starts the file again
            self._hasher.finish()
            self._hasher, self._hashed = _BackgroundSha256(hashlib.sha256()), 0
        return where

    def truncate(self, size: int | None = None) -> int:
        return self._f.truncate(size)

    def flush(self) -> None:
        self._f.flush()

    def hexdigest(self) -> str:
        digest = self._hasher.finish()
        self._f.flush()
        end = self._f.seek(0, os.SEEK_END)
        if self._hashed != end:  # something wrote out of order: hash the file itself
            self._f.seek(0)
            digest = hashlib.sha256()
            while block := self._f.read(_CHUNK):
                digest.update(block)
                self._check_cancel()
        return digest.hexdigest()
