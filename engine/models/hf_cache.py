"""GGUF files another tool already downloaded into the standard Hugging Face cache.

Read-only and local (no hashing, no network): ``scan_hf_cache`` lists the cached
.gguf files, ``find_in_hf_cache`` matches a catalog entry to one by content.
Installing such a copy (hard-linked when possible, always re-verified) is
``engine.models.library.adopt_from_cache``, next to the copying and hashing it shares
with ``import_gguf``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.models.catalog import CatalogEntry

__all__ = ["CachedFile", "find_in_hf_cache", "hf_cache_dir", "scan_hf_cache"]

log = logging.getLogger(__name__)

_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedFile:
    """A file in the Hugging Face cache (a snapshot path; the blob holds the bytes)."""

    repo: str
    filename: str
    path: Path  # snapshots/<commit>/<filename>
    blob: Path  # blobs/<sha256> for LFS files
    size: int

    @property
    def sha256(self) -> str | None:
        """The LFS sha256 the Hub gave when it was downloaded (the blob's name), or None."""
        name = self.blob.name
        return name if len(name) == 64 and set(name) <= _SHA256_HEX else None


def hf_cache_dir() -> Path:
    """The Hugging Face cache folder, as huggingface_hub resolves it, read at each call.

    ``HF_HUB_CACHE``, else ``HF_HOME``/hub, else huggingface_hub's default
    (``~/.cache/huggingface/hub``, which honours ``XDG_CACHE_HOME``).
    """
    if cache := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def scan_hf_cache(cache_dir: Path | None = None) -> list[CachedFile]:
    """Every .gguf file in the Hugging Face cache's model repos (no hashing, no network)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    folder = cache_dir or hf_cache_dir()
    if not folder.is_dir():
        return []
    try:
        info = scan_cache_dir(folder)
    except (CacheNotFound, OSError, ValueError) as exc:
        log.info("cannot scan the Hugging Face cache at %s: %s", folder, exc)
        return []
    for warning in info.warnings:  # a damaged repo folder: skipped, not fatal
        log.info("Hugging Face cache: %s", warning)
    found: list[CachedFile] = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            for f in revision.files:
                if f.file_name.lower().endswith(".gguf"):
                    found.append(
                        CachedFile(
                            repo=repo.repo_id, filename=f.file_name, path=Path(f.file_path),
                            blob=Path(f.blob_path), size=f.size_on_disk,
                        )
                    )  # fmt: skip
    return found


def find_in_hf_cache(
    entry: CatalogEntry, *, cached: Sequence[CachedFile] | None = None
) -> CachedFile | None:
    """A copy of ``entry`` already in the Hugging Face cache, or None.

    Matched by content: the blob's name is the LFS sha256 the Hub gave, so with
    a catalog hash any repo's copy of the same bytes counts. Without one (a
    catalog not refreshed yet), only the same file of the same repo does. The
    size must match when the catalog knows it. Nothing is hashed here;
    ``adopt_from_cache`` verifies the bytes. ``cached``: a ``scan_hf_cache()``
    result, to scan once for many entries.
    """
    from huggingface_hub import try_to_load_from_cache

    size = None if entry.size_estimated else entry.size

    def fits(c: CachedFile) -> bool:
        if size is not None and c.size != size:
            return False
        if entry.sha256 is not None:
            return c.sha256 == entry.sha256
        return c.repo == entry.repo and c.filename == entry.remote_name and c.sha256 is not None

    if cached is None and entry.repo is not None:
        # The pinned revision first: one lookup, no scan.
        hit = try_to_load_from_cache(
            entry.repo, entry.remote_name, cache_dir=hf_cache_dir(), revision=entry.revision
        )
        if isinstance(hit, str):
            p = Path(hit)
            candidate = CachedFile(
                repo=entry.repo, filename=entry.remote_name, path=p, blob=p.resolve(),
                size=p.stat().st_size,
            )  # fmt: skip
            if fits(candidate):
                return candidate
    for c in cached if cached is not None else scan_hf_cache():
        if fits(c):
            return c
    return None
