"""The tool loop: a reply that calls tools, runs them, and goes on.

One reply is several rounds of generation. A round's text is parsed for calls
(``engine.tools.parser``; a server's own ``tool_calls`` arrive as
``ToolCallEvent``s already); when the round ends with calls, each is run
through the runner (permission first: ``engine.tools.gate``), its result is
yielded and added to the reply, and the next round reads the conversation with
the reply so far — the same prompt plus the results, so a backend that reuses
its evaluated prefix reads only the results. At most ``max_rounds`` rounds.

Each finished round goes back as an assistant message of its own, with its own
thinking: Qwen3.5's template renders every assistant message after the last
question as ``<think>{its reasoning_content}</think>`` + its text and calls, so
round two's thinking belongs to round two (rendered once, on the first round, it
would not be what the model wrote, and the prefix the backend evaluated would not
match).

The backend is a callable (``turn -> events``): this domain knows no other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from itertools import count
from typing import Protocol

from engine.tools.parser import Item, MalformedCall, ToolCallParser
from engine.types import (
    Event,
    FinishReason,
    GenerationStats,
    Message,
    Part,
    ReplyDone,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallEvent,
    ToolCallPart,
    ToolResultEvent,
    ToolResultPart,
    Turn,
)

__all__ = ["DEFAULT_MAX_ROUNDS", "UNREADABLE", "ToolLoop", "ToolRunner"]

# The argument a backend names a call's arguments it could not read (inference's
# remote_tools.py writes it; the string is the contract).
UNREADABLE = "_unreadable_arguments"

DEFAULT_MAX_ROUNDS = 8


class ToolRunner(Protocol):
    def schemas(self) -> Mapping[str, Mapping[str, object]]: ...
    def server_of(self, name: str) -> str: ...
    def run(self, call: ToolCallPart, stop: threading.Event) -> ToolResultPart: ...


class ToolLoop:
    """``stream(turn)`` with tools: all rounds' events, then one ``ReplyDone``.

    ``rounds`` keeps each round's own stats (how much of its prompt it reused),
    for tests and benchmarks. ``overhead_s`` is Hearth's own time between rounds
    (parsing, permission lookup, dispatch, re-entry), tools' run time excluded.
    """

    def __init__(
        self,
        stream: Callable[[Turn], Iterator[Event]],
        runner: ToolRunner,
        *,
        stop: threading.Event,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
    ) -> None:
        self._stream, self._runner, self._stop = stream, runner, stop
        self._max_rounds = max(1, max_rounds)
        self.rounds: list[GenerationStats] = []
        self.overhead_s = 0.0

    def run(self, turn: Turn) -> Iterator[Event]:
        t0 = time.perf_counter()
        ids = count(1)
        base = turn.messages
        parts: list[Part] = []  # this round's text, calls and results
        thinking = ""  # this round's thinking
        finished: list[Message] = []  # the rounds before it, each with its own thinking
        if turn.continue_reply and base and base[-1].role == "assistant":
            *rest, partial = base
            base, parts, thinking = tuple(rest), list(partial.parts), partial.thinking
        current = turn
        done: ReplyDone | None = None
        for n_round in range(1, self._max_rounds + 1):
            parser = ToolCallParser(
                schemas=self._runner.schemas(), next_id=lambda: f"call_{next(ids)}"
            )
            calls: list[ToolCallPart | MalformedCall] = []
            text: list[str] = []
            round_thinking: list[str] = []
            for event in self._stream(current):
                if isinstance(event, TextDelta):
                    items: list[Item] = parser.feed(event.text) if current.tools else [event.text]
                    yield from self._items(items, text, calls)
                elif isinstance(event, ThinkingDelta):
                    round_thinking.append(event.text)
                    yield event
                elif isinstance(event, ToolCallEvent):
                    named = self._with_server(event.call)
                    if UNREADABLE in named.arguments:  # a server's call whose JSON broke
                        calls.append(
                            MalformedCall(named.id, "", "Its arguments are not JSON.", named.name)
                        )
                    else:
                        calls.append(named)
                    yield ToolCallEvent(named)
                elif isinstance(event, ReplyDone):
                    if current.tools:
                        yield from self._items(parser.flush(), text, calls)
                    done = event
                    self.rounds.append(event.stats)
            t_round = time.perf_counter()
            thinking += "".join(round_thinking)
            self._append_text(parts, "".join(text))
            if done is None or not calls or done.reason is not FinishReason.STOP:
                break
            parts.extend(
                ToolCallPart(c.id, c.name or "?", {}) if isinstance(c, MalformedCall) else c
                for c in calls
            )
            last = n_round == self._max_rounds
            tool_s = 0.0
            for call in calls:
                result: ToolResultPart
                if isinstance(call, MalformedCall):
                    result = _unreadable(call)
                elif last:
                    result = ToolResultPart(
                        call.id,
                        call.name,
                        f"Not run: a reply may call tools in at most {self._max_rounds} rounds.",
                        ok=False,
                        server=call.server,
                    )
                else:
                    t_tool = time.perf_counter()
                    result = self._runner.run(call, self._stop)
                    tool_s += time.perf_counter() - t_tool
                parts.append(result)
                yield ToolResultEvent(result)
            if last or self._stop.is_set():
                if self._stop.is_set():
                    done = replace(done, reason=FinishReason.CANCELLED)
                break
            finished.append(Message("assistant", tuple(parts), thinking=thinking))
            parts, thinking = [], ""
            current = replace(turn, messages=(*base, *finished), continue_reply=False)
            self.overhead_s += time.perf_counter() - t_round - tool_s
        yield self._final(done, t0)

    def _items(
        self,
        items: list[Item],
        text: list[str],
        calls: list[ToolCallPart | MalformedCall],
    ) -> Iterator[Event]:
        for item in items:
            if isinstance(item, str):
                text.append(item)
                yield TextDelta(item)
            elif isinstance(item, ToolCallPart):
                call = self._with_server(item)
                calls.append(call)
                yield ToolCallEvent(call)
            else:
                calls.append(item)
                yield ToolCallEvent(ToolCallPart(item.id, item.name or "?", {}))

    def _with_server(self, call: ToolCallPart) -> ToolCallPart:
        server = call.server or self._runner.server_of(call.name)
        return call if server == call.server else replace(call, server=server)

    @staticmethod
    def _append_text(parts: list[Part], text: str) -> None:
        if not text:
            return
        if parts and isinstance(parts[-1], TextPart):
            parts[-1] = TextPart(parts[-1].text + text)
        else:
            parts.append(TextPart(text))

    def _final(self, done: ReplyDone | None, t0: float) -> ReplyDone:
        elapsed = time.perf_counter() - t0
        if done is None:  # a backend that ended without ReplyDone (a bug): say cancelled
            stats = GenerationStats(
                prompt_tokens=0,
                completion_tokens=0,
                ttft_s=0.0,
                tokens_per_s=0.0,
                elapsed_s=elapsed,
            )
            return ReplyDone(FinishReason.CANCELLED, stats)
        if len(self.rounds) <= 1:
            return done
        first, last = self.rounds[0], self.rounds[-1]
        stats = replace(
            last,
            completion_tokens=sum(r.completion_tokens for r in self.rounds),
            thinking_tokens=sum(r.thinking_tokens for r in self.rounds),
            ttft_s=first.ttft_s,
            elapsed_s=elapsed,
            evaluated_tokens=sum(r.evaluated_tokens for r in self.rounds),
        )
        return ReplyDone(done.reason, stats)


def _unreadable(call: MalformedCall) -> ToolResultPart:
    return ToolResultPart(
        call.id, call.name or "?", f"Hearth could not read this call: {call.reason}", ok=False
    )
