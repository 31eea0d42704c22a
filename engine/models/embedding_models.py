"""Embedding models for document retrieval: the catalog's ``embedding`` list, and which
of them is installed in the models folder.

Optional: without one, documents are searched by their words (BM25); with one, by
meaning too (vectors fused with BM25), which finds a passage that answers a question
in other words ("car" for "vehicle"). Downloaded like a chat model (same verified,
resumable path), listed apart: they cannot chat.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import CatalogError
from engine.models.catalog import CatalogEntry, _entry, installed_path, resources_dir

__all__ = [
    "WHAT_EMBEDDINGS_ADD",
    "embedding_entries",
    "installed_embedding",
    "query_prefix",
]

# What goes before a question (never before a passage) for the model to embed it as a
# search query, as each model's card says: BGE v1.5's instruction for short queries
# that look for passages; Qwen3-Embedding's "Instruct: …\nQuery:" form (its card: 1–5 %
# worse retrieval without). Not measured here (neither GGUF can be had offline).
_QUERY_PREFIX = {
    "bge-small-en-v1.5": "Represent this sentence for searching relevant passages: ",
    "qwen3-embedding-0.6b": (
        "Instruct: Given a question, retrieve passages of a document that answer it\nQuery:"
    ),
}

# What the app says where no embedding model is installed.
WHAT_EMBEDDINGS_ADD = (
    "Documents are searched by their words. An embedding model (BGE small, about 21 MB) "
    "would also find passages that say the same thing in other words: Get it downloads "
    "it and uses it at once (Settings → Model lists it)."
)


def embedding_entries(path: Path | None = None) -> list[CatalogEntry]:
    """The embedding models in the catalog, the recommended one first."""
    path = path or resources_dir() / "catalog.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        raw = data.get("embedding", [])
        if not isinstance(raw, list):
            raise ValueError("embedding is not a list")
        families, presets = data.get("families", {}), data.get("sampling", {})
        entries = [_entry(r, f"embedding[{i}]", families, presets) for i, r in enumerate(raw)]
    except (OSError, ValueError, TypeError) as e:
        raise CatalogError(
            f"Hearth's model catalog at {path} is missing or damaged ({e}). Reinstall Hearth.",
            detail=repr(e),
        ) from e
    return sorted(entries, key=lambda e: e.quality.rank if e.quality else 0)


def installed_embedding(models_dir: Path, path: Path | None = None) -> Path | None:
    """The file of the first catalog embedding model found in ``models_dir``, if any."""
    for entry in embedding_entries(path):
        found = installed_path(entry, models_dir)
        if found is not None:
            return found
    return None


def query_prefix(path: Path, catalog: Path | None = None) -> str:
    """What the embedding model at ``path`` wants before a query ("" if none known)."""
    for entry in embedding_entries(catalog):
        if entry.filename == path.name:
            return _QUERY_PREFIX.get(entry.family, "")
    return ""
