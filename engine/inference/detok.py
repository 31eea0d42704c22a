"""Turn generated tokens into text one token at a time, UTF-8 safe.

Byte-level tokenizers (GPT-2 BPE, SentencePiece byte fallback) split one
character across several tokens: "🙂" can arrive as three tokens of one, one and
two bytes. Decoding each piece on its own gives U+FFFD; re-decoding the whole
reply per token (what ``Llama.create_completion(stream=True)`` does) costs time
that grows with the reply. An incremental UTF-8 decoder fixes both: it holds back
at most three bytes of an unfinished character and costs O(1) per token.
"""

from __future__ import annotations

import codecs
import ctypes
from collections.abc import Callable
from typing import Any

__all__ = ["Detokenizer", "PieceFunction", "piece_function"]

PieceFunction = Callable[[int], bytes]

# Longest piece seen in practice is a few dozen bytes (runs of spaces in code
# vocabularies); the buffer grows on demand if a vocabulary has longer ones.
_INITIAL_PIECE_BUFFER = 256


def piece_function(
    vocab: Any, *, special: bool = False, buffer_size: int = _INITIAL_PIECE_BUFFER
) -> PieceFunction:
    """Bytes of one token's piece, via ``llama_token_to_piece`` with a reused buffer.

    ``vocab`` is a ``llama_vocab`` pointer (``Llama._model.vocab``). We do not use
    ``LlamaModel.token_to_piece``: in llama-cpp-python 0.3.36 it returns the whole
    32-byte buffer, NUL padding included, and allocates a new buffer per call.
    ``special=False`` renders control tokens (``<|im_end|>``) as nothing.
    """
    import llama_cpp  # imported here so engine.inference.detok stays importable without it

    to_piece = llama_cpp.llama_token_to_piece
    size = max(1, buffer_size)
    buf = ctypes.create_string_buffer(size)

    def piece(token: int) -> bytes:
        nonlocal buf, size
        n = int(to_piece(vocab, token, buf, size, 0, special))
        if n < 0:  # the piece is longer than the buffer: -n bytes are needed
            size = -n
            buf = ctypes.create_string_buffer(size)
            n = int(to_piece(vocab, token, buf, size, 0, special))
        return buf.raw[:n]

    return piece


class Detokenizer:
    """Incremental detokenizer for one reply.

    ``strip_leading_space`` removes the space that SentencePiece tokenizers with
    ``add_space_prefix`` put in front of the first word; it applies to the first
    non-empty piece only.
    """

    __slots__ = ("_at_start", "_decode", "_decoder", "_piece", "_strip")

    def __init__(self, piece: PieceFunction, *, strip_leading_space: bool = False) -> None:
        self._piece = piece
        self._strip = strip_leading_space
        # errors="replace": a model can emit an invalid byte sequence; the person
        # should see U+FFFD there rather than lose the reply to an exception.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decode = self._decoder.decode
        self._at_start = True

    def feed(self, token: int) -> str:
        """Complete characters made available by ``token`` (often "", never partial)."""
        data = self._piece(token)
        if self._at_start and data:
            self._at_start = False
            if self._strip and data[:1] == b" ":
                data = data[1:]
        return self._decode(data)

    def flush(self) -> str:
        """Whatever is still held back at the end of the reply (U+FFFD if truncated)."""
        return self._decode(b"", True)

    def reset(self) -> None:
        """Start a new reply."""
        self._decoder.reset()
        self._at_start = True
