"""One remote reply as it streams: OpenAI chat-completion chunks read into events.

``RemoteBackend`` (engine.inference.remote) does the HTTP and hands each chunk
to ``RemoteReply.read``, which splits thinking from the answer (a
``reasoning_content``/``reasoning`` delta, else ``<think>`` tags through the
``ThinkingSplitter``), gathers tool-call deltas, counts the reply budget, keeps
the server's usage, and at the end builds the ``ReplyDone`` statistics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from engine.errors import GenerationError
from engine.inference.remote_errors import malformed
from engine.inference.remote_tools import ToolCallDeltas
from engine.inference.thinking import ThinkingSplitter
from engine.types import (
    Event,
    FinishReason,
    GenerationStats,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
    Turn,
)

__all__ = ["RemoteReply"]

# Past this many characters per token of budget a reply is not text but a flood.
_MAX_CHARS_PER_TOKEN = 64


class RemoteReply:
    """What one reply has streamed so far: thinking and answer split, budget counted."""

    def __init__(self, turn: Turn, params: SamplingParams, *, where: str) -> None:
        self._started = time.perf_counter()
        self._where = where
        self._params = params
        self._resumed = turn.continue_reply
        self._splitter: ThinkingSplitter | None = None
        self._reasoning_seen = False
        self.answer_pieces = 0
        self.thinking_pieces = 0
        self._chars = 0
        self._max_chars = _MAX_CHARS_PER_TOKEN * (params.max_tokens + params.max_thinking_tokens)
        self.first_at: float | None = None
        self.thinking_ended_at: float | None = None
        self.finish: FinishReason | None = None
        self.usage_prompt = 0
        self.usage_completion = 0
        self.usage_thinking = 0
        self.usage_cached = 0
        self._tool_calls = ToolCallDeltas()

    @property
    def started(self) -> bool:
        return self.first_at is not None

    @property
    def over_budget(self) -> bool:
        """The reply used its budget (answer, or answer and thinking together) and the
        server has not ended it: it is cut here, as a local model's would be."""
        params = self._params
        return self.finish is None and (
            self.answer_pieces >= params.max_tokens
            or self.answer_pieces + self.thinking_pieces
            >= params.max_tokens + params.max_thinking_tokens
            or self._chars > self._max_chars
        )

    def read(self, chunk: dict[str, Any]) -> Iterator[Event]:
        started = self._started
        if "error" in chunk and not chunk.get("choices"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise GenerationError(
                f'The server at {self._where} stopped the reply with an error: "{message}". '
                "What was written so far is kept; send again to retry.",
                detail=json.dumps(chunk)[:2000],
            )
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._read_usage(usage)
        choices = chunk.get("choices")
        if not choices:
            return
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise malformed(self._where, "choices is not a list of objects")
        choice = choices[0]
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise malformed(self._where, "delta is not an object")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        content = delta.get("content")
        if reasoning is not None and not isinstance(reasoning, str):
            raise malformed(self._where, "reasoning is not text")
        if content is not None and not isinstance(content, str):
            raise malformed(self._where, "content is not text")
        if reasoning:
            self._reasoning_seen = True
            self._mark(started, len(reasoning))
            self.thinking_pieces += 1
            yield ThinkingDelta(reasoning)
        if content:
            self._mark(started, len(content))
            yield from self._content(content, started)
        self._tool_calls.read(delta.get("tool_calls"))
        reason = choice.get("finish_reason")
        if reason:
            self.finish = FinishReason.LENGTH if reason == "length" else FinishReason.STOP
            yield from self._tool_calls.events()

    def _mark(self, started: float, chars: int) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter() - started
        self._chars += chars

    def _content(self, text: str, started: float) -> Iterator[Event]:
        if self._reasoning_seen or self._resumed:
            # The server splits thinking from the answer: the content is all answer.
            if self.thinking_ended_at is None and self.thinking_pieces:
                self.thinking_ended_at = time.perf_counter() - started
            self.answer_pieces += 1
            yield TextDelta(text)
            return
        if self._splitter is None:
            self._splitter = ThinkingSplitter(start_in_thinking=False)
        thought, answer = self._splitter.feed(-1, text)
        # One chunk is one token on the servers that matter (llama.cpp, vLLM, Ollama).
        if answer or not (thought or self._splitter.thinking):
            self.answer_pieces += 1
        else:
            self.thinking_pieces += 1
        if thought:
            yield ThinkingDelta(thought)
        if answer:
            if self.thinking_pieces and self.thinking_ended_at is None:
                self.thinking_ended_at = time.perf_counter() - started
            yield TextDelta(answer)

    def flush(self) -> Iterator[Event]:
        if self._splitter is None:
            return
        thought, answer = self._splitter.flush()
        if thought:
            yield ThinkingDelta(thought)
        if answer:
            yield TextDelta(answer)

    def _read_usage(self, usage: Mapping[str, Any]) -> None:
        def number(value: object) -> int:
            return value if isinstance(value, int) and value >= 0 else 0

        self.usage_prompt = number(usage.get("prompt_tokens"))
        self.usage_completion = number(usage.get("completion_tokens"))
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict):
            self.usage_thinking = number(details.get("reasoning_tokens"))
        cached = usage.get("prompt_tokens_details")
        if isinstance(cached, dict):
            self.usage_cached = number(cached.get("cached_tokens"))

    def done(self, reason: FinishReason, started: float, estimated_prompt: int) -> ReplyDone:
        elapsed = time.perf_counter() - started
        ttft = self.first_at if self.first_at is not None else elapsed
        completion = self.usage_completion or self.answer_pieces + self.thinking_pieces
        thinking = self.usage_thinking or self.thinking_pieces
        prompt = self.usage_prompt or estimated_prompt
        generating = elapsed - ttft
        thought_s = 0.0
        if self.thinking_pieces:
            thought_s = (self.thinking_ended_at or elapsed) - ttft
        stats = GenerationStats(
            prompt_tokens=prompt,
            completion_tokens=completion,
            ttft_s=ttft,
            tokens_per_s=(completion - 1) / generating
            if completion > 1 and generating > 0
            else 0.0,
            elapsed_s=elapsed,
            reused_tokens=self.usage_cached,
            evaluated_tokens=max(prompt - self.usage_cached, 0),
            thinking_tokens=thinking,
            thinking_s=max(thought_s, 0.0),
            context_tokens=prompt + completion,
        )
        return ReplyDone(reason, stats)
