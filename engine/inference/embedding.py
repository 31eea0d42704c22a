"""An embedding model on a llama.cpp context of its own, for document retrieval.

Its own ``Llama`` (``embedding=True``), never the chat's: ``embed()`` clears a
context's memory, and a chat model's context in embedding mode extracts embeddings at
every decode (research/llama-cpp-python-0.3.36.md §4). So indexing a document on a
background thread and chatting on the engine thread never wait for each other.

Pooling: an embedding GGUF names its own (``<arch>.pooling_type``: CLS for BGE, LAST
for Qwen3-Embedding); a chat model has none and gets MEAN, which is what the tests use
with the starter model (a chat model's vectors are weak for retrieval, fine for wiring).
"""

from __future__ import annotations

import array
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import ModelLoadError
from engine.gguf.header import read_gguf_header

__all__ = ["Embedder", "EmbedderClosed"]


class EmbedderClosed(Exception):
    """The model was closed (deleted from the Model page) while a text waited for it."""


class Embedder:
    """Vectors for texts: float32, unit length, as bytes (what the store keeps)."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 512,
        n_threads: int | None = None,
        query_prefix: str = "",
    ) -> None:
        import llama_cpp  # here: the fast tier and the window's start never load it

        try:
            fields = read_gguf_header(path).fields
        except (OSError, ValueError) as e:
            raise ModelLoadError(
                f"The embedding model {path.name} could not be read ({e}): download it "
                "again from the Model page.",
                detail=repr(e),
            ) from e
        arch = str(fields.get("general.architecture", ""))
        own = f"{arch}.pooling_type" in fields
        pooling = (
            llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if own else llama_cpp.LLAMA_POOLING_TYPE_MEAN
        )
        kwargs: dict[str, Any] = {}
        if n_threads is not None:
            kwargs["n_threads"] = n_threads
        try:
            self._llm = llama_cpp.Llama(
                str(path),
                embedding=True,
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_ubatch=n_ctx,
                pooling_type=pooling,
                verbose=False,
                **kwargs,
            )
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(
                f"The embedding model {path.name} could not be loaded ({e}): download it "
                "again from the Model page, or remove it to search documents by words only.",
                detail=repr(e),
            ) from e
        self.name = path.name
        # Put before a question (embed_now), never before a passage: what the model's
        # card asks of a search query (engine.models.embedding_models.query_prefix).
        self.query_prefix = query_prefix
        self.dims = int(self._llm.n_embd())
        # One caller at a time: a query's vector (the GUI's turn) and a document's
        # indexing (a background job) may both ask.
        self._lock = threading.Lock()
        self._closed = False

    def embed(self, texts: Sequence[str]) -> list[bytes]:
        """Each text's vector (a text longer than the context is cut to fit)."""
        if not texts:
            return []
        with self._lock:
            if self._closed:
                raise EmbedderClosed(self.name)
            vectors = self._llm.embed(list(texts), normalize=True, truncate=True)
        return [array.array("f", v).tobytes() for v in vectors]

    def embed_now(self, text: str, *, wait_s: float = 0.05) -> bytes | None:
        """A question's vector (after the model's query prefix), unless the model is busy
        (indexing a document on another thread) for longer than ``wait_s``: then None,
        and the caller goes without."""
        if not self._lock.acquire(timeout=wait_s):
            return None
        try:
            if self._closed:
                return None
            query = self.query_prefix + text
            (vector,) = self._llm.embed([query], normalize=True, truncate=True)
        finally:
            self._lock.release()
        return array.array("f", vector).tobytes()

    def close(self) -> None:
        """Free the model once the text being embedded (on another thread) is done;
        later calls raise EmbedderClosed (``embed_now``: None)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._llm.close()
