"""How many tokens a text costs, before a model is there to count them.

The chip in the composer and the whole-or-retrieve decision need a number before the
model's tokenizer is at hand (none is loaded, or it lives on the engine thread). The
real count comes later: the context meter measures the rendered turn with the model's
own tokenizer. The estimate errs on the high side for Latin text, so a document judged
to fit does.

Measured (2026-12, SmolLM2-135M and Gemma 3 270M tokenizers, CPython's pydoc topics
and Hearth's own source): English prose 4.1 bytes a token, source code 3.4-3.5; CJK
text 1 to 3.8 characters a token depending on the vocabulary. So: 3.3 ASCII characters
a token (over-counts prose by ~25%, code by ~5%), one token per other character.
"""

from __future__ import annotations

import math

__all__ = ["ASCII_CHARS_PER_TOKEN", "estimate_tokens"]

ASCII_CHARS_PER_TOKEN = 3.3


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    if text.isascii():  # the common case, counted without a pass in Python
        return math.ceil(len(text) / ASCII_CHARS_PER_TOKEN)
    other = len(text) - len(text.encode("ascii", "ignore"))
    return math.ceil((len(text) - other) / ASCII_CHARS_PER_TOKEN) + other
