"""The catalog's embedding models (engine.models.embedding_models): listed apart from
the chat models, each with its licence and size; none installed in an empty folder."""

from __future__ import annotations

from pathlib import Path

from engine.models.catalog import load_catalog
from engine.models.embedding_models import (
    WHAT_EMBEDDINGS_ADD,
    embedding_entries,
    installed_embedding,
)


def test_embedding_models_are_listed_apart_with_licence_and_size() -> None:
    entries = embedding_entries()
    assert next(e.id for e in entries) == "bge-small-en-v1.5-q4_k_m"
    assert {e.license for e in entries} <= {"MIT", "Apache-2.0"}
    assert all(0 < e.size < 1_000_000_000 and e.repo for e in entries)
    chat_ids = {e.id for e in load_catalog()}
    assert not chat_ids & {e.id for e in entries}


def test_none_installed_in_an_empty_folder(tmp_path: Path) -> None:
    assert installed_embedding(tmp_path) is None
    assert "other words" in WHAT_EMBEDDINGS_ADD


def test_query_prefix_is_the_model_cards() -> None:
    from engine.models.embedding_models import embedding_entries, query_prefix

    by_family = {e.family: Path(e.filename) for e in embedding_entries()}
    assert query_prefix(by_family["bge-small-en-v1.5"]).startswith("Represent this sentence")
    assert query_prefix(by_family["qwen3-embedding-0.6b"]).startswith("Instruct: ")
    assert query_prefix(by_family["qwen3-embedding-0.6b"]).endswith("\nQuery:")
    assert query_prefix(Path("someone-elses.gguf")) == ""
