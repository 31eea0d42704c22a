"""The context meter's numbers and dropping the oldest turns (engine.inference.context)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

from engine.errors import ContextFullError
from engine.inference.context import drop_oldest_turns, reply_budget
from engine.types import ContextUsage, Message, SamplingParams

if TYPE_CHECKING:
    # Annotations only: importing the session loads llama.cpp, and this module's
    # pure-Python tests belong to the fast tier (tests/tiers.py).
    from engine.inference.session import ChatSession

SYSTEM = Message("system", "You are terse.")


def chat(turns: int) -> list[Message]:
    messages = [SYSTEM]
    for i in range(turns):
        messages += [Message("user", f"question {i} " * 5), Message("assistant", f"answer {i}")]
    return [*messages, Message("user", "last question")]


class TestUsage:
    def test_numbers(self) -> None:
        usage = ContextUsage(prompt_tokens=600, reply_budget=300, n_ctx=1000)
        assert (usage.needed, usage.fraction, usage.fits, usage.prompt_fits) == (
            900,
            0.6,
            True,
            True,
        )
        assert not usage.warn
        full = ContextUsage(prompt_tokens=850, reply_budget=300, n_ctx=1000)
        assert full.warn and not full.fits and full.prompt_fits
        assert not ContextUsage(1000, 1, 1000).prompt_fits

    def test_a_large_reply_budget_reserves_at_most_a_quarter(self) -> None:
        small = ContextUsage(prompt_tokens=700, reply_budget=200, n_ctx=1000)
        assert small.reserve == 200 and small.has_room and not small.warn
        # Thinking budgets can exceed the window: the chat still gets 3/4 of it.
        big = ContextUsage(prompt_tokens=700, reply_budget=5000, n_ctx=1000)
        assert big.reserve == 250 and big.has_room and not big.fits
        assert not big.warn  # 70 % used, the next reply has its reserve
        over = ContextUsage(prompt_tokens=751, reply_budget=5000, n_ctx=1000)
        assert not over.has_room and over.warn
        assert not ContextUsage(1300, 100, 1000).has_room  # already over (n_ctx shrank)

    def test_reply_budget_counts_thinking_only_when_thinking(self) -> None:
        params = SamplingParams(max_tokens=100, max_thinking_tokens=400)
        assert reply_budget(params, thinking=False) == 100
        assert reply_budget(params, thinking=True, close_tokens=3) == 503

    @pytest.mark.model
    def test_session_usage_counts_the_real_prompt(self, smol_session: ChatSession) -> None:
        conversation = chat(3)
        params = SamplingParams(max_tokens=64)
        usage = smol_session.context_usage(conversation, params)
        rendered = smol_session.tokenize(smol_session.render_prompt(conversation))
        assert usage == ContextUsage(len(rendered), 64, 2048)

    @pytest.mark.model
    def test_thinking_model_budget(self, qwen35_session: ChatSession) -> None:
        params = SamplingParams(max_tokens=64, max_thinking_tokens=100)
        on = qwen35_session.context_usage(chat(1), params, thinking=True)
        off = qwen35_session.context_usage(chat(1), params, thinking=False)
        assert off.reply_budget == 64
        assert on.reply_budget == 64 + 100 + len(qwen35_session._think_budget_close)


class TestDropOldestTurns:
    @staticmethod
    def fits_under(limit: int, calls: list[int] | None = None) -> object:
        def fits(messages: Sequence[Message]) -> bool:
            if calls is not None:
                calls.append(len(messages))
            return sum(len(m.content) for m in messages) <= limit

        return fits

    def test_nothing_dropped_when_it_fits(self) -> None:
        conversation = chat(3)
        assert drop_oldest_turns(conversation, self.fits_under(10_000)) == (conversation, [])

    def test_drops_the_fewest_oldest_turns_and_keeps_the_system_prompt(self) -> None:
        conversation = chat(6)
        total = sum(len(m.content) for m in conversation)
        turn = len(conversation[1].content) + len(conversation[2].content)
        calls: list[int] = []
        kept, dropped = drop_oldest_turns(conversation, self.fits_under(total - 2 * turn, calls))
        assert kept[0] == SYSTEM
        assert dropped == conversation[1:5]  # exactly two turns, the oldest
        assert kept == [SYSTEM, *conversation[5:]]
        assert len(calls) <= 1 + 4  # a binary search, not one render per turn

    def test_the_last_message_is_never_dropped(self) -> None:
        conversation = chat(2)
        with pytest.raises(ContextFullError, match="last message alone is too long"):
            drop_oldest_turns(conversation, self.fits_under(5))

    def test_a_single_turn_that_does_not_fit(self) -> None:
        with pytest.raises(ContextFullError):
            drop_oldest_turns([SYSTEM, Message("user", "x" * 50)], self.fits_under(10))

    @pytest.mark.model
    def test_with_the_real_model_window(self, smol_session: ChatSession) -> None:
        conversation = [SYSTEM]
        for i in range(40):
            conversation += [
                Message("user", f"Tell me fact number {i} about the sea, in detail."),
                Message("assistant", "The sea is large and deep. " * 6),
            ]
        conversation.append(Message("user", "Summarize."))
        params = SamplingParams(max_tokens=256)

        def fits(messages: Sequence[Message]) -> bool:
            return smol_session.context_usage(messages, params).fits

        assert not fits(conversation)
        kept, dropped = drop_oldest_turns(conversation, fits)
        assert fits(kept) and kept[0] == SYSTEM and kept[-1] == conversation[-1]
        assert not fits([SYSTEM, *dropped[-2:], *kept[1:]])  # one turn fewer would not do
        assert len(kept) + len(dropped) == len(conversation)
