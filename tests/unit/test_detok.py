"""Incremental detokenizer: whole characters only, O(1) per token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from engine.inference.detok import Detokenizer, piece_function

if TYPE_CHECKING:
    # Annotations only: importing the session loads llama.cpp, and this module's
    # pure-Python tests belong to the fast tier (tests/tiers.py).
    from engine.inference.session import ChatSession

MULTIBYTE = "Grüße, 日本語 and 🙂🎉"


def pieces_of(*chunks: bytes) -> tuple[Detokenizer, list[int]]:
    """A detokenizer over a fake vocabulary where token i is chunks[i]."""
    calls: list[int] = []

    def piece(token: int) -> bytes:
        calls.append(token)
        return chunks[token]

    return Detokenizer(piece), calls


def feed_all(detok: Detokenizer, tokens: list[int]) -> list[str]:
    return [detok.feed(t) for t in tokens]


class TestFakeVocabulary:
    def test_character_split_over_tokens_comes_out_whole(self) -> None:
        smile = "🙂".encode()
        detok, _ = pieces_of(b"a", smile[:1], smile[1:3], smile[3:], b"b")
        assert feed_all(detok, [0, 1, 2, 3, 4]) == ["a", "", "", "🙂", "b"]

    def test_one_piece_call_per_token(self) -> None:
        detok, calls = pieces_of(b"x", b"y")
        feed_all(detok, [0, 1, 0, 1])
        assert calls == [0, 1, 0, 1]

    def test_flush_returns_held_back_bytes_as_replacement(self) -> None:
        detok, _ = pieces_of("日".encode()[:2])
        assert detok.feed(0) == ""
        assert detok.flush() == "\ufffd"

    def test_flush_after_complete_text_is_empty(self) -> None:
        detok, _ = pieces_of(b"ok")
        assert detok.feed(0) == "ok"
        assert detok.flush() == ""

    def test_leading_space_stripped_from_first_nonempty_piece_only(self) -> None:
        chunks = (b"", b" Hello", b" world")
        detok = Detokenizer(lambda t: chunks[t], strip_leading_space=True)
        assert feed_all(detok, [0, 1, 2, 1]) == ["", "Hello", " world", " Hello"]

    def test_leading_space_kept_without_space_prefix(self) -> None:
        detok, _ = pieces_of(b" Hello")
        assert detok.feed(0) == " Hello"

    def test_reset_starts_a_new_reply(self) -> None:
        chunks = (b" Hi", "é".encode()[:1])
        detok = Detokenizer(lambda t: chunks[t], strip_leading_space=True)
        assert detok.feed(1) == ""
        detok.reset()
        assert detok.feed(0) == "Hi"


@pytest.mark.model
class TestRealTokenizer:
    def test_smollm2_splits_characters_and_detok_rejoins_them(
        self, smol_session: ChatSession
    ) -> None:
        vocab = smol_session._vocab
        tokens = smol_session.tokenize(MULTIBYTE)
        piece = piece_function(vocab)
        raw = [piece(t) for t in tokens]
        assert b"".join(raw).decode() == MULTIBYTE

        # The split really happens: some single tokens are not valid UTF-8 alone.
        def is_whole(chunk: bytes) -> bool:
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                return False
            return True

        assert sum(not is_whole(chunk) for chunk in raw) >= 3

        detok = Detokenizer(piece)
        out = [*feed_all(detok, tokens), detok.flush()]
        assert "\ufffd" not in "".join(out)
        assert "".join(out) == MULTIBYTE

    def test_gemma_byte_fallback_rejoins(self, gemma_session: ChatSession) -> None:
        tokens = gemma_session.tokenize(MULTIBYTE)[1:]  # without <bos>
        detok = Detokenizer(piece_function(gemma_session._vocab))
        out = "".join(feed_all(detok, tokens)) + detok.flush()
        assert out == MULTIBYTE

    def test_control_tokens_render_as_nothing(self, smol_session: ChatSession) -> None:
        piece = piece_function(smol_session._vocab)
        (im_end,) = smol_session.tokenize("<|im_end|>")
        assert piece(im_end) == b""
        assert piece_function(smol_session._vocab, special=True)(im_end) == b"<|im_end|>"

    def test_buffer_grows_for_long_pieces(self, smol_session: ChatSession) -> None:
        text = "internationalization    \n\n    responsibilities"
        tokens = smol_session.tokenize(text)
        tiny, roomy = (
            piece_function(smol_session._vocab, buffer_size=1),
            piece_function(smol_session._vocab),
        )
        assert [tiny(t) for t in tokens] == [roomy(t) for t in tokens]
        assert b"".join(tiny(t) for t in tokens).decode() == text
