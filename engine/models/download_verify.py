"""What a download must hash to: the repository's record at a commit (engine.models.download).

The response that delivers a file also describes it (``ETag``/``X-Linked-Etag``,
``X-Linked-Size``), but a mirror or a proxy that alters a file can alter that
description with it. So the sha256 a download is checked against comes from
the repository's metadata instead, at a fixed commit:

``Repository(endpoint, token, timeout)`` asks, for one catalog entry:

1. ``resolve_commit``: the revision becomes a commit: the catalog's pin, else the
   HEAD's ``X-Repo-Commit``, else the API (``model_info``) for mirrors that leave
   the header out;
2. ``file``: the file's LFS sha256 and size at that commit (the Hub
   API's ``paths-info``, what ``HfApi.get_paths_info`` asks, with a timeout);
3. ``expected``: that record must equal the catalog's pin where there is one,
   and the response must describe the same file; else the download is refused
   with a sentence before a byte is fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from huggingface_hub import HfApi
from huggingface_hub.file_download import HfFileMetadata

# Documented as public, but not re-exported in a way mypy sees.
from huggingface_hub.utils import (  # type: ignore[attr-defined]
    build_hf_headers,
    get_session,
    hf_raise_for_status,
)

from engine.errors import DownloadError
from engine.models.catalog import CatalogEntry
from engine.models.download_errors import TamperedFileError, not_on_hub

__all__ = ["Repository", "RepositoryFile", "is_commit"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, slots=True)
class RepositoryFile:
    """A file as its repository records it at one commit."""

    commit: str
    sha256: str | None  # the LFS oid; None: not an LFS file (nothing to check against)
    size: int


def is_commit(revision: str | None) -> bool:
    return revision is not None and _COMMIT.match(revision.lower()) is not None


@dataclass(frozen=True, slots=True)
class Repository:
    """The Hub (or a mirror) at ``endpoint``, asked about what a repository records."""

    endpoint: str
    token: str | None
    timeout: float

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc or self.endpoint

    def what_to_do(self) -> str:
        if self.host == "huggingface.co":
            return (
                "Something between this computer and Hugging Face may be altering files: "
                "try again on another network."
            )
        return (
            "The server may be altering files: download from huggingface.co instead "
            "(remove the HF_ENDPOINT setting) and try again."
        )

    def resolve_commit(self, entry: CatalogEntry, meta: HfFileMetadata) -> str:
        """The commit to verify against: the catalog's pin, else the one the Hub names."""
        said = (meta.commit_hash or "").lower() or None
        if entry.revision and is_commit(entry.revision):
            pinned = entry.revision.lower()
            if said is not None and said != pinned:
                raise TamperedFileError(
                    f"{self.host} answered for another revision of {entry.repo} than the one "
                    f"Hearth asked for, so {entry.filename} was not downloaded and nothing was "
                    f"installed. {self.what_to_do()}",
                    detail=f"asked for {pinned}, X-Repo-Commit {said}",
                )
            return pinned
        if is_commit(said):
            return str(said)
        # Some mirrors leave X-Repo-Commit out: ask the API which commit the branch is at.
        info = HfApi(endpoint=self.endpoint, token=self.token or False).model_info(
            str(entry.repo), revision=entry.revision or "main", timeout=self.timeout
        )
        if is_commit(info.sha):
            return str(info.sha).lower()
        raise DownloadError(
            f"Hearth cannot verify {entry.filename}: {self.host} did not say which revision of "
            f"{entry.repo} it would send, so nothing was downloaded. Try again later.",
            detail=f"X-Repo-Commit {meta.commit_hash!r}, API sha {info.sha!r}",
        )

    def file(self, entry: CatalogEntry, commit: str) -> RepositoryFile:
        """``entry``'s file as the repository records it at ``commit`` (the API's paths-info).

        ``HfApi.get_paths_info`` makes the same request, but without a timeout: a download
        must not hang on a server that stops answering.
        """
        response = get_session().post(
            f"{self.endpoint}/api/models/{entry.repo}/paths-info/{commit}",
            data={"paths": [entry.remote_name], "expand": False},
            headers=build_hf_headers(token=self.token or False),
            timeout=self.timeout,
        )
        hf_raise_for_status(response)
        try:
            items: list[dict[str, Any]] = response.json()
            for item in items:
                if item.get("type") == "file" and item.get("path") == entry.remote_name:
                    lfs = item.get("lfs")
                    if not isinstance(lfs, dict):
                        return RepositoryFile(commit, None, int(item["size"]))
                    return RepositoryFile(commit, str(lfs["oid"]).lower(), int(lfs["size"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DownloadError(
                f"Hearth cannot verify {entry.filename}: {self.host} sent an answer about it "
                "that Hearth cannot read, so nothing was downloaded. Try again later.",
                detail=repr(exc),
            ) from exc
        raise not_on_hub(entry.filename, f"not in paths-info of {entry.repo}@{commit}")

    def expected(
        self, entry: CatalogEntry, record: RepositoryFile, meta: HfFileMetadata
    ) -> tuple[int, str]:
        """Size and sha256 the bytes must have: the repository's record, which must be the
        catalog's where it has one, and which the response (``meta``) must describe."""
        sha, short = record.sha256, record.commit[:12]
        if sha is None or not _SHA256.match(sha):
            raise DownloadError(
                f"Hearth cannot verify {entry.filename}: {entry.repo} records no sha256 for it "
                f"at revision {short}, so it was not downloaded.",
                detail=f"paths-info sha256 {sha!r}",
            )
        if entry.sha256 and sha != entry.sha256:
            if is_commit(entry.revision):
                # A commit cannot change: whoever answered is not telling the truth about it.
                raise DownloadError(
                    f"{self.host} records {entry.filename} at the revision Hearth's catalog "
                    "pins with another checksum than the catalog, so it was not downloaded and "
                    f"nothing was installed. {self.what_to_do()} If that does not help, "
                    "update Hearth.",
                    detail=f"{entry.repo}@{record.commit} sha256 {sha}, catalog {entry.sha256}",
                )
            raise DownloadError(
                f"{entry.filename} on Hugging Face is not the file Hearth's catalog lists "
                "(it was replaced upstream). Update Hearth to get the new catalog.",
                detail=f"hub sha256 {sha} at {record.commit}, catalog {entry.sha256}",
            )
        if not entry.size_estimated and record.size != entry.size:
            raise DownloadError(
                f"{entry.filename} on Hugging Face has a different size than Hearth's catalog "
                "lists. Update Hearth to get the new catalog.",
                detail=f"hub {record.size} bytes at {record.commit}, catalog {entry.size}",
            )
        etag = (meta.etag or "").lower()
        offered = etag if _SHA256.match(etag) else None  # else (a git blob id, none): no claim
        if (offered is not None and offered != sha) or (
            meta.size is not None and meta.size != record.size
        ):
            raise TamperedFileError(
                f"{self.host} offered a {entry.filename} that is not the file {entry.repo} "
                f"records at revision {short} (its checksum differs), so Hearth refused it and "
                f"nothing was installed. {self.what_to_do()}",
                detail=f"offered sha256 {offered} ({meta.size} bytes), repository {sha} "
                f"({record.size} bytes) at {record.commit}",
            )
        return record.size, sha
