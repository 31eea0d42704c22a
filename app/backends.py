"""Opening a chat backend for a model file: the window's engine thread and
``hearth chat`` open models the same way (no Qt here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.inference.backend import ChatBackend
from engine.types import EngineOptions

__all__ = ["LoadRequest", "OpenBackend", "open_local"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadRequest:
    """Which model to load, and how."""

    path: str  # "" = the starter model (installed into models_dir first)
    options: EngineOptions
    # The models folder as it is when the request is made (it can be moved).
    models_dir: Path


OpenBackend = Callable[[LoadRequest], ChatBackend]


def open_local(request: LoadRequest) -> ChatBackend:
    """The model file of ``request`` in llama.cpp, with what the catalog knows of
    it (its name for people and its makers' sampling presets). Installs the
    starter model first when ``request.path`` is empty. ``KnownError`` with a
    sentence when it cannot be loaded."""
    # Imported here: llama.cpp loads only when a model does, not with the window.
    from engine.inference.local import LocalBackend
    from engine.models.catalog import catalog_entry_for, install_starter_model

    path = Path(request.path) if request.path else install_starter_model(request.models_dir)
    entry = catalog_entry_for(path)
    if entry is None:
        return LocalBackend(path, request.options)
    # GGUF names are often build tags; the catalog's is for people.
    return LocalBackend(
        path, request.options, name=entry.name, sampling_presets=entry.sampling_presets()
    )
