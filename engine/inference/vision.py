"""A model's eyes: its vision projector (``mmproj``) on libmtmd's low-level API.

Not ``MTMDChatHandler``: that resets the context and re-encodes every image on
every call. Here an image costs what it must, once:

- ``prepare`` turns an attached image into what the prompt holds: the text tokens
  the projector wraps it in (Qwen's ``<|vision_start|>``...) and a *run* of stand-in
  token ids, one per position the image occupies (``n_pos``; fewer than its
  ``n_tokens`` embeddings on an M-RoPE model such as Qwen3.5). The ids are negative
  (never a real token) and derived from the image's hash and the token budget, so
  ``engine.inference.checkpoints`` compares, reuses and checkpoints prompts with
  images exactly as text: the next turn finds the image in the evaluated prefix.
- the vision encoder runs once per image (``embeddings``); its output is kept by
  content hash in a byte-bounded LRU, so a re-shown image, a regenerated reply or a
  chat that comes back after its state was dropped decodes without encoding.
- encoding runs on a thread of its own, so Stop returns at once; the encoding
  finishes in the background and is kept for the next try.

Images are decoded by Pillow (``engine.images``), scaled down to the token budget's
pixels before libmtmd sees them, and passed as RGB bitmaps: libmtmd's own decoder
never reads a file.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd

from engine.errors import GenerationError, ModelLoadError
from engine.images import ImageError, rgb_pixels
from engine.inference.chat_template import IMAGE_MARKER
from engine.inference.checkpoints import Media
from engine.inference.loader import log_callback, recent_problems
from engine.types import ImagePart, Message

__all__ = ["IMAGE_MARKER", "PreparedImage", "Projector", "ProjectorError"]

_log = logging.getLogger(__name__)

# Pixels per image token the budget allows before libmtmd's own resize: Qwen's 2x2
# merge of 16-pixel patches is 1024 pixels a token; twice that leaves its smart
# resize room to keep the aspect ratio.
_PIXELS_PER_TOKEN = 2048
_PREPARED_KEPT = 64
_CHUNK_TEXT = 0  # MTMD_INPUT_CHUNK_TYPE_TEXT


class ProjectorError(ModelLoadError):
    """The model's vision file would not load; the model itself would."""


@dataclass(eq=False, slots=True)
class PreparedImage:
    """One image as this projector puts it into a prompt."""

    key: bytes  # its content hash and the token budget
    pre: tuple[int, ...]  # text tokens before the image (the projector's wrapping)
    post: tuple[int, ...]
    run: array[int]  # stand-in ids, one per position
    n_tokens: int  # embeddings (KV cells) it takes
    chunk: Any  # libmtmd's image chunk, owned here

    @property
    def n_pos(self) -> int:
        return len(self.run)


class Projector:
    """A loaded ``mmproj`` file for one loaded text model. Not thread-safe: the
    session's thread calls it; the encoder thread is its own business."""

    def __init__(
        self,
        path: Path,
        model: Any,
        *,
        n_embd: int,
        n_threads: int,
        max_tokens: int,
        use_gpu: bool,
        cache_bytes: int = 256 << 20,
    ) -> None:
        """``model``: the text model's ``llama_model`` pointer; ``n_embd`` its width.
        Raises ``ModelLoadError`` with a sentence when the file will not load (a
        projector made for another model, a damaged file)."""
        mtmd.mtmd_helper_log_set(log_callback(), ctypes.c_void_p(0))
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        # The default warm-up encodes a 1472-pixel image at load: seconds on a CPU,
        # for nothing; the first real image sizes the buffers instead.
        params.warmup = False
        params.image_max_tokens = max_tokens
        self.path = path
        self.max_tokens = max_tokens
        self.n_embd = n_embd
        self._ctx = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
        if not self._ctx:
            raise ProjectorError(
                f"The vision file {path.name} would not load with this model, so it cannot "
                "see images. It may belong to another model (its size must match) or be "
                "damaged: download the model's own projector again, or switch vision off "
                "for this model in the Model page.",
                detail=" | ".join(recent_problems()),
            )
        if not mtmd.mtmd_support_vision(self._ctx):
            mtmd.mtmd_free(self._ctx)
            self._ctx = None
            raise ProjectorError(
                f"{path.name} is not a vision projector (it reads no images).",
            )
        self.mrope = bool(mtmd.mtmd_decode_use_mrope(self._ctx))
        self._prepared: OrderedDict[bytes, PreparedImage] = OrderedDict()
        self._embd: OrderedDict[bytes, Any] = OrderedDict()
        self._embd_bytes = 0
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()  # the LRU of embeddings: the encoder thread writes
        self._encoder: threading.Thread | None = None
        self.encodes = 0  # how many times the vision encoder ran (tests, bench)

    # -- prompt --------------------------------------------------------------

    def key_of(self, image: ImagePart) -> bytes:
        return f"{image.sha256}/{self.max_tokens}".encode()

    def prepare(self, image: ImagePart) -> PreparedImage:
        """The image as the prompt holds it (cached by content). Raises ``KnownError``
        (``ImageError``) for an image that cannot be read."""
        key = self.key_of(image)
        found = self._prepared.get(key)
        if found is not None:
            self._prepared.move_to_end(key)
            return found
        if not image.data:
            raise GenerationError(
                f"The image {image.name or '(pasted)'} is no longer in this chat's "
                "history, so the model cannot see it. Attach it again."
            )
        self._wait_encoder()
        width, height, rgb = rgb_pixels(image.data, self.max_tokens * _PIXELS_PER_TOKEN, image.name)
        prepared = self._tokenize(key, width, height, rgb, image.name)
        self._prepared[key] = prepared
        while len(self._prepared) > _PREPARED_KEPT:
            _, old = self._prepared.popitem(last=False)
            mtmd.mtmd_input_chunk_free(old.chunk)
        return prepared

    def _tokenize(
        self, key: bytes, width: int, height: int, rgb: bytes, name: str
    ) -> PreparedImage:
        pixels = (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb)
        bitmap = mtmd.mtmd_bitmap_init(width, height, pixels)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            marker = mtmd.mtmd_default_marker()
            text = mtmd.mtmd_input_text()
            text.text, text.text_len = marker, len(marker)
            text.add_special, text.parse_special = False, True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            rc = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), bitmaps, 1)
            if rc != 0:
                raise ImageError(
                    f"The model's vision could not read {name or 'the pasted image'} "
                    f"({width}×{height}). Try a screenshot or a PNG copy of it.",
                    detail=f"mtmd_tokenize returned {rc}",
                )
            pre: list[int] = []
            post: list[int] = []
            image_chunk: Any = None
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == _CHUNK_TEXT:
                    n = ctypes.c_size_t()
                    ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    (post if image_chunk is not None else pre).extend(
                        int(ids[k]) for k in range(n.value)
                    )
                elif image_chunk is None:
                    image_chunk = mtmd.mtmd_input_chunk_copy(chunk)
            if image_chunk is None:
                raise ImageError(f"The model's vision made nothing of {name or 'the image'}.")
            n_pos = int(mtmd.mtmd_input_chunk_get_n_pos(image_chunk))
            n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(image_chunk))
            return PreparedImage(
                key=key,
                pre=tuple(pre),
                post=tuple(post),
                run=_stand_in_ids(key, n_pos),
                n_tokens=n_tokens,
                chunk=image_chunk,
            )
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    # -- encoding and decoding -----------------------------------------------

    def has_embeddings(self, image: PreparedImage) -> bool:
        with self._lock:
            return image.key in self._embd

    def embeddings(self, image: PreparedImage, stop: threading.Event) -> Any:
        """The encoder's output for ``image`` (cached); None if ``stop`` was set
        first (the encoding goes on in the background and is kept)."""
        with self._lock:
            found = self._embd.get(image.key)
            if found is not None:
                self._embd.move_to_end(image.key)
                return found
        self._wait_encoder()
        with self._lock:  # a stopped encoding of this very image may have finished
            found = self._embd.get(image.key)
            if found is not None:
                return found
        done = threading.Event()
        failed: list[int] = []

        def encode() -> None:
            try:
                rc = int(mtmd.mtmd_encode_chunk(self._ctx, image.chunk))
                if rc != 0:
                    failed.append(rc)
                    return
                n = image.n_tokens * self.n_embd
                out = (ctypes.c_float * n)()
                ctypes.memmove(out, mtmd.mtmd_get_output_embd(self._ctx), ctypes.sizeof(out))
                self._keep(image.key, out)
            finally:
                done.set()

        self.encodes += 1
        self._encoder = threading.Thread(target=encode, name="hearth-image-encoder", daemon=True)
        self._encoder.start()
        while not done.wait(0.05):  # Stop answers within 50 ms, not after the encoder
            if stop.is_set():
                return None
        self._encoder.join()
        self._encoder = None
        if failed:
            raise GenerationError(
                "The model's vision failed on this image. Try again, or attach a smaller image.",
                detail=f"mtmd_encode_chunk returned {failed[0]}; " + " | ".join(recent_problems()),
            )
        with self._lock:
            return self._embd[image.key]

    def _keep(self, key: bytes, embd: Any) -> None:
        with self._lock:
            self._embd[key] = embd
            self._embd_bytes += ctypes.sizeof(embd)
            while self._embd_bytes > self.cache_bytes and len(self._embd) > 1:
                _, old = self._embd.popitem(last=False)
                self._embd_bytes -= ctypes.sizeof(old)

    def decode(
        self, lctx: Any, image: PreparedImage, pos: int, n_batch: int, stop: threading.Event
    ) -> int | None:
        """Put ``image`` into the context at position ``pos``: encoded (or from the
        cache), then decoded. None if stopped before anything was decoded;
        otherwise llama_decode's result (0: done, ``pos + n_pos`` is next)."""
        embd = self.embeddings(image, stop)
        if embd is None or stop.is_set():
            return None
        new_pos = llama_cpp.llama_pos(0)
        rc = int(
            mtmd.mtmd_helper_decode_image_chunk(
                self._ctx, lctx, image.chunk, embd, pos, 0, n_batch,
                ctypes.byref(new_pos), mtmd.mtmd_helper_post_decode_callback(0), None,
            )
        )  # fmt: skip
        if rc == 0 and new_pos.value != pos + image.n_pos:
            raise GenerationError(
                "The model's vision put the image somewhere unexpected in the context. "
                "Start a new chat, or report this with the model's name.",
                detail=f"image at {pos}: next position {new_pos.value}, "
                f"expected {pos + image.n_pos}",
            )
        return rc

    # -- lifetime ------------------------------------------------------------

    def _wait_encoder(self) -> None:
        if self._encoder is not None:
            self._encoder.join()
            self._encoder = None

    def close(self) -> None:
        if self._ctx is None:
            return
        self._wait_encoder()
        for prepared in self._prepared.values():
            mtmd.mtmd_input_chunk_free(prepared.chunk)
        self._prepared.clear()
        with self._lock:
            self._embd.clear()
            self._embd_bytes = 0
        mtmd.mtmd_free(self._ctx)
        self._ctx = None


def _stand_in_ids(key: bytes, n: int) -> array[int]:
    """``n`` negative ids that only this image (at this budget) has."""
    seed = int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")
    return array("i", (-1 - ((seed + i) & 0x3FFFFFFF) for i in range(n)))


def prompt_tokens(
    text: str,
    conversation: Sequence[Message],
    projector: Projector | None,
    tokenize_first: Callable[[str], list[int]],
    tokenize_rest: Callable[[str], list[int]],
) -> tuple[list[int], dict[int, PreparedImage]]:
    """A prompt rendered from ``conversation`` (``IMAGE_MARKER`` where its images go,
    in order) as tokens, and each image by the position its run starts at. Each
    stretch of text is tokenized on its own, as ``mtmd_tokenize`` does."""
    if projector is None or IMAGE_MARKER not in text:
        return tokenize_first(text), {}
    images = [image for m in conversation for image in m.images]
    pieces = text.split(IMAGE_MARKER)
    if len(pieces) - 1 != len(images):
        raise GenerationError(
            "This model's chat template left out some of the images, so Hearth cannot "
            "show them to it. Start a new chat, or ask without the earlier images.",
            detail=f"{len(images)} images, {len(pieces) - 1} places for them",
        )
    tokens = tokenize_first(pieces[0])
    media: dict[int, PreparedImage] = {}
    for image, piece in zip(images, pieces[1:], strict=True):
        prepared = projector.prepare(image)
        tokens.extend(prepared.pre)
        media[len(tokens)] = prepared
        tokens.extend(prepared.run)
        tokens.extend(prepared.post)
        if piece:
            tokens.extend(tokenize_rest(piece))
    return tokens, media


def load_projector(path: Path, llm: Any, *, max_tokens: int, use_gpu: bool) -> Projector:
    """The projector at ``path`` for the loaded ``llama_cpp.Llama`` ``llm``."""
    if not path.is_file():
        raise ProjectorError(
            f"The vision file {path.name} is missing (it was next to the model at "
            f"{path.parent}); the model was loaded without vision. Download it again "
            "from the Model page, or switch vision off for this model.",
        )
    model = llm._model.model
    return Projector(
        path,
        model,
        n_embd=int(llama_cpp.llama_model_n_embd(model)),
        n_threads=int(llm.n_threads),
        max_tokens=max_tokens,
        use_gpu=use_gpu,
    )


def media_runs(
    projector: Projector | None, lctx: Any, images: Mapping[int, PreparedImage], n_batch: int
) -> dict[int, Media]:
    """``images`` (by start position) as runs ``EvaluatedHistory.evaluate`` decodes."""
    if projector is None:
        return {}

    def run(image: PreparedImage) -> Media:
        def decode(pos: int, stop: threading.Event) -> int | None:
            return projector.decode(lctx, image, pos, n_batch, stop)

        return Media(image.n_pos, decode)

    return {pos: run(image) for pos, image in images.items()}


def refuse_images(name: str) -> GenerationError:
    return GenerationError(
        f"{name} cannot see images. Switch to a model that can (one with vision, such "
        "as Qwen3.5), or send the message without them."
    )


def cells(n_tokens: int, images: Mapping[int, PreparedImage]) -> int:
    """Context cells a prompt of ``n_tokens`` positions takes: an image on an
    M-RoPE model has more embeddings than positions."""
    return n_tokens + sum(i.n_tokens - i.n_pos for i in images.values())
