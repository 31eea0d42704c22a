"""The context window: how full a conversation makes it, and making room.

A person should see the window filling up before it is full (``ContextUsage``
feeds a meter) and choose what happens then: ``drop_oldest_turns`` removes whole
turns from the oldest on, never the system prompt and never the last message,
and says what it removed, so nothing disappears silently. Starting a new chat is
the other choice, and the UI's to offer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.errors import ContextFullError
from engine.types import Message, SamplingParams

__all__ = ["drop_oldest_turns", "reply_budget"]


def reply_budget(params: SamplingParams, *, thinking: bool, close_tokens: int = 0) -> int:
    """The most tokens one reply can add: the answer's budget, plus the thinking's
    and the ``</think>`` the engine may insert when the model thinks."""
    if not thinking:
        return params.max_tokens
    return params.max_tokens + params.max_thinking_tokens + close_tokens


def drop_oldest_turns(
    conversation: Sequence[Message], fits: Callable[[Sequence[Message]], bool]
) -> tuple[list[Message], list[Message]]:
    """Drop whole turns, oldest first, until ``fits(kept)``; return (kept, dropped).

    A turn is a user message and the replies after it. Leading system messages
    and the last turn are always kept. Raises ``ContextFullError`` when even that
    does not fit. ``fits`` is called O(log turns) times (it renders and tokenizes).
    """
    messages = list(conversation)
    if fits(messages):
        return messages, []
    n_system = 0
    while n_system < len(messages) and messages[n_system].role == "system":
        n_system += 1
    system, rest = messages[:n_system], messages[n_system:]
    starts = [i for i, m in enumerate(rest) if m.role == "user"]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)  # replies before the first user message form a turn too

    def keep_from(k: int) -> list[Message]:
        return system + rest[starts[k] :]

    # Fitting only gets easier as more turns go: binary-search the fewest to drop.
    lo, hi = 1, len(starts) - 1
    if hi < lo or not fits(keep_from(hi)):
        raise ContextFullError(
            "The last message alone is too long for the model's context window. "
            "Shorten it, or load the model with a larger context."
        )
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(keep_from(mid)):
            hi = mid
        else:
            lo = mid + 1
    return keep_from(lo), rest[: starts[lo]]
