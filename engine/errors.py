"""Errors a person can act on, kept apart from bugs.

A ``KnownError`` carries a sentence for the person: what happened and what to
do. Anything else that escapes the engine is a bug and is shown with a
traceback in the log.
"""

from __future__ import annotations


class KnownError(Exception):
    """An error caused by the environment (bad file, full disk, no memory)."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class ModelLoadError(KnownError):
    """The model file could not be loaded."""


class GenerationError(KnownError):
    """Generation failed part-way (the partial reply is kept)."""


class ContextFullError(KnownError):
    """The conversation no longer fits into the model's context window."""


class StoreError(KnownError):
    """The chat database could not be read or written."""


class CatalogError(KnownError):
    """The model catalog shipped with Hearth is missing or damaged."""


class ModelInstallError(KnownError):
    """A model file could not be installed (missing source, bad checksum, full disk)."""


class DownloadError(KnownError):
    """A model download failed (no network, refused, not found, disk full, damaged in transit)."""


class EndpointError(KnownError):
    """A remote OpenAI-compatible server could not be reached, or refused the request.

    ``retry_after``: seconds the server asked to wait (429, 503), when it said."""

    def __init__(self, message: str, *, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after
