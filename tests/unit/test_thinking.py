"""The thinking/answer split, on real tokenizers and on every way a tag can be cut."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest

from engine.inference.chat_template import ChatTemplate, choose_template, render
from engine.inference.detok import Detokenizer
from engine.inference.thinking import ThinkingSplitter, prompt_opens_thinking, thinking_support
from engine.types import Message
from tests.fixtures.qwen35 import TEMPLATE_PATH

if TYPE_CHECKING:
    # Annotations only: importing the session loads llama.cpp, and this module's
    # pure-Python tests belong to the fast tier (tests/tiers.py).
    from engine.inference.session import ChatSession

REPLY = "Let me see: 2 + 2 = 4, I think.\n</think>\n\nIt is 4."
THOUGHT, ANSWER = "Let me see: 2 + 2 = 4, I think.", "It is 4."


def run(splitter: ThinkingSplitter, pieces: list[tuple[int, str]]) -> tuple[str, str]:
    thinking: list[str] = []
    answer: list[str] = []
    for token, text in pieces:
        t, a = splitter.feed(token, text)
        thinking.append(t)
        answer.append(a)
    t, a = splitter.flush()
    return "".join([*thinking, t]), "".join([*answer, a])


def stream_tokens(session: ChatSession, text: str, *, start_in_thinking: bool) -> tuple[str, str]:
    """``text`` tokenized by the model's own tokenizer, detokenized one token at a
    time and split, exactly as the session's token loop does."""
    tokens = session._tokenize(text, add_bos=False)
    detok = Detokenizer(session._piece)
    splitter = ThinkingSplitter(
        start_in_thinking=start_in_thinking,
        open_id=session._think_open,
        close_id=session._think_close,
    )
    pieces = [(t, detok.feed(t)) for t in tokens]
    pieces.append((-1, detok.flush()))
    return run(splitter, pieces)


class TestOnRealTokenizers:
    def test_qwen35_vocab_has_the_tags_as_tokens(self, qwen35_session: ChatSession) -> None:
        assert qwen35_session._think_open is not None
        assert qwen35_session._think_close is not None
        assert qwen35_session._tokenize("</think>", add_bos=False) == [qwen35_session._think_close]

    def test_prompt_opened_thinking_split_by_token_id(self, qwen35_session: ChatSession) -> None:
        assert stream_tokens(qwen35_session, REPLY, start_in_thinking=True) == (THOUGHT, ANSWER)

    def test_model_opened_thinking_split_by_token_id(self, qwen35_session: ChatSession) -> None:
        reply = "<think>\n" + REPLY
        assert stream_tokens(qwen35_session, reply, start_in_thinking=False) == (THOUGHT, ANSWER)

    def test_tags_split_across_tokens_matched_as_text(self, smol_session: ChatSession) -> None:
        # SmolLM2 has no think tokens: "<think>" is several ordinary tokens.
        assert smol_session._think_open is None and smol_session._think_close is None
        assert len(smol_session._tokenize("</think>", add_bos=False)) > 1
        reply = "<think>\n" + REPLY
        assert stream_tokens(smol_session, reply, start_in_thinking=False) == (THOUGHT, ANSWER)
        assert stream_tokens(smol_session, REPLY, start_in_thinking=True) == (THOUGHT, ANSWER)

    def test_no_think_block_passes_text_through_exactly(self, smol_session: ChatSession) -> None:
        text = "  Hello <think> is a tag.\n</think> too."
        assert stream_tokens(smol_session, text, start_in_thinking=False) == ("", text)


class TestEverySplitPoint:
    """Whatever way the text is cut into tokens, the split is the same."""

    @pytest.mark.parametrize("start_in_thinking", [True, False])
    def test_two_and_three_piece_cuts(self, start_in_thinking: bool) -> None:
        text = REPLY if start_in_thinking else "\n<think>\n" + REPLY
        n = len(text)
        for cuts in itertools.chain(
            ((i,) for i in range(1, n)), itertools.combinations(range(1, n, 3), 2)
        ):
            bounds = [0, *cuts, n]
            pieces = [(-1, text[a:b]) for a, b in itertools.pairwise(bounds)]
            got = run(ThinkingSplitter(start_in_thinking=start_in_thinking), pieces)
            assert got == (THOUGHT, ANSWER), cuts

    def test_one_character_per_token(self) -> None:
        pieces = [(-1, c) for c in "<think>a < b </thinking> c</think>d"]
        assert run(ThinkingSplitter(start_in_thinking=False), pieces) == (
            "a < b </thinking> c",
            "d",
        )


class TestShapes:
    def test_reply_that_never_closes_is_all_thinking(self) -> None:
        got = run(ThinkingSplitter(start_in_thinking=True), [(-1, "hmm "), (-1, "and </th")])
        assert got == ("hmm and </th", "")

    def test_open_tag_only_counts_at_the_start(self) -> None:
        splitter = ThinkingSplitter(start_in_thinking=False, open_id=7, close_id=8)
        assert splitter.feed(1, "Sure") == ("", "Sure")
        assert splitter.done
        assert splitter.feed(7, "<think>") == ("", "<think>")

    def test_close_thinking_for_the_budget(self) -> None:
        splitter = ThinkingSplitter(start_in_thinking=True)
        assert splitter.feed(-1, "step one\n\n") == ("step one", "")
        assert splitter.thinking
        assert splitter.close_thinking() == ""
        assert not splitter.thinking
        assert splitter.feed(-1, "\n\nAnswer") == ("", "Answer")
        assert splitter.close_thinking() == ""

    def test_empty_think_block(self) -> None:
        pieces = [(1, "<think>"), (2, "\n\n"), (3, "</think>"), (4, "\n\n"), (5, "Hi")]
        assert run(ThinkingSplitter(start_in_thinking=False, open_id=1, close_id=3), pieces) == (
            "",
            "Hi",
        )

    def test_prompt_opens_thinking(self) -> None:
        assert prompt_opens_thinking("<|im_start|>assistant\n<think>\n")
        assert not prompt_opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert not prompt_opens_thinking("<|im_start|>assistant\n")


class TestTemplateSupport:
    @staticmethod
    def support(text: str) -> tuple[bool, bool]:
        template = ChatTemplate("gguf", text)
        return thinking_support(
            text, lambda extra: render(template, [Message("user", "Hi")], extra=extra)
        )

    def test_qwen35_template_thinks_by_default(self) -> None:
        assert self.support(TEMPLATE_PATH.read_text(encoding="utf-8")) == (True, True)

    def test_a_template_that_defaults_to_off(self) -> None:
        text = "{{ messages[0].content }}{% if enable_thinking is true %}<think>{% endif %}"
        assert self.support(text) == (True, False)

    def test_no_switch(self) -> None:
        assert self.support(choose_template(None, "qwen2").text) == (False, False)

    def test_a_switch_that_changes_nothing_is_no_switch(self) -> None:
        assert self.support("{# enable_thinking #}{{ messages[0].content }}") == (False, False)

    def test_a_broken_template_is_no_switch(self) -> None:
        assert self.support("{{ enable_thinking }}{{ raise_exception('no') }}") == (False, False)
