"""Qwen3.5's architecture end to end, on the tiny random-weight ``qwen35`` fixture.

The fixture talks gibberish: these tests check prompts, token counts, which
tokens llama.cpp really evaluated, and that a restored checkpoint leaves the
model in exactly the state a full re-read of the chat would (greedy replies
equal), never the prose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import llama_cpp
import pytest

from engine.inference.checkpoints import common_prefix
from engine.inference.loader import gguf_context_length
from engine.inference.session import ChatSession
from engine.types import (
    EngineOptions,
    Event,
    FinishReason,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
)

pytestmark = pytest.mark.model

GREEDY = SamplingParams(max_tokens=16, max_thinking_tokens=10, temperature=0.0)
CHAT = [
    Message("system", "You are a helpful assistant."),
    Message("user", "Why is the sky blue? Tell me about light and the sea."),
]


@dataclass
class Reply:
    thinking: str
    answer: str
    done: ReplyDone
    order: str  # "T" per thinking delta, "A" per answer delta

    def message(self) -> Message:
        return Message("assistant", self.answer, thinking=self.thinking)


def reply(session: ChatSession, chat: list[Message], **kwargs: object) -> Reply:
    items = list(session.stream(chat, kwargs.pop("params", GREEDY), **kwargs))  # type: ignore[arg-type]
    *deltas, done = items
    assert isinstance(done, ReplyDone)
    assert all(isinstance(d, ThinkingDelta | TextDelta) for d in deltas)
    return Reply(
        "".join(d.text for d in deltas if isinstance(d, ThinkingDelta)),
        "".join(d.text for d in deltas if isinstance(d, TextDelta)),
        done,
        "".join("T" if isinstance(d, ThinkingDelta) else "A" for d in deltas),
    )


def decoded(session: ChatSession) -> int:
    """llama.cpp's own count of every token it decoded (prompt and generation)."""
    perf = llama_cpp.llama_perf_context(session._ctx)
    return int(perf.n_p_eval) + int(perf.n_eval)


def prompt_tokens(session: ChatSession, chat: list[Message], thinking: bool = True) -> list[int]:
    return session.tokenize(session.render_prompt(chat, thinking=thinking))


def prefix(a: list[int], b: list[int]) -> int:
    from array import array

    return common_prefix(array("i", a), array("i", b), min(len(a), len(b)))


@pytest.fixture
def fresh(qwen35_model_path: Path) -> Iterator[ChatSession]:
    """A session of its own: these tests depend on what was evaluated before."""
    session = ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096))
    reply(session, [Message("user", "warm up")])  # llama.cpp's counters start at 1, not 0
    yield session
    session.close()


def next_turn(chat: list[Message], r: Reply, n: int) -> list[Message]:
    return [*chat, r.message(), Message("user", f"And what about question number {n}?")]


class TestLoad:
    def test_it_is_a_hybrid_qwen35(self, qwen35_session: ChatSession) -> None:
        info = qwen35_session.info
        assert (info.architecture, info.quantization) == ("qwen35", "F16")
        assert info.extra["memory"] == "hybrid/recurrent"
        assert qwen35_session.checkpoints is not None
        assert (info.supports_thinking, info.thinking_default) == (True, True)
        assert (info.n_ctx, info.n_ctx_train) == (4096, 262_144)

    def test_default_context_is_not_the_training_context(self, qwen35_model_path: Path) -> None:
        assert gguf_context_length(qwen35_model_path) == 262_144
        with ChatSession(qwen35_model_path) as session:
            assert session.info.n_ctx == EngineOptions().n_ctx == 8192

    def test_a_size_of_a_few_mb(self, qwen35_model_path: Path) -> None:
        assert 1 << 20 < qwen35_model_path.stat().st_size < 8 << 20


class TestPrompts:
    """The real Qwen3.5 template, with enable_thinking always passed explicitly."""

    def test_first_turn(self, qwen35_session: ChatSession) -> None:
        on = qwen35_session.render_prompt(CHAT, thinking=True)
        off = qwen35_session.render_prompt(CHAT, thinking=False)
        assert on.endswith("<|im_start|>assistant\n<think>\n")
        assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert qwen35_session.render_prompt(CHAT) == on  # the model's default: thinking
        assert qwen35_session.render_prompt(CHAT, extra={"enable_thinking": False}) == off

    def test_earlier_thinking_is_not_in_the_next_prompt(self, qwen35_session: ChatSession) -> None:
        chat = [
            *CHAT,
            Message("assistant", "Scattering.", thinking="SECRET-THOUGHT"),
            Message("user", "And at sunset?"),
        ]
        for thinking in (True, False):
            prompt = qwen35_session.render_prompt(chat, thinking=thinking)
            assert "SECRET-THOUGHT" not in prompt
            assert "<|im_start|>assistant\nScattering.<|im_end|>\n" in prompt

    def test_thinking_after_the_last_question_reaches_the_template(
        self, qwen35_session: ChatSession
    ) -> None:
        # The template keeps reasoning_content only after the last user message.
        chat = [*CHAT, Message("assistant", "Partial answer.", thinking="kept thought")]
        prompt = qwen35_session.render_prompt(chat)
        assert "<think>\nkept thought\n</think>\n\nPartial answer.<|im_end|>" in prompt


class TestThinkingStream:
    def test_thinking_then_budget_then_answer(self, qwen35_session: ChatSession) -> None:
        r = reply(qwen35_session, CHAT, thinking=True)
        stats = r.done.stats
        assert r.thinking, "the fixture should think before it is cut off"
        assert stats.thinking_tokens == GREEDY.max_thinking_tokens  # the budget closed it
        assert r.order == "".join(sorted(r.order, reverse=True))  # all T before any A
        assert stats.completion_tokens == stats.thinking_tokens + (
            stats.completion_tokens - stats.thinking_tokens
        )
        assert stats.thinking_s > 0
        # The inserted "</think>" is in what the model has evaluated, right after the
        # thinking: the answer really was written after a closed think block.
        history = list(qwen35_session._history.tokens[: stats.context_tokens])
        close = qwen35_session._think_close
        start = stats.prompt_tokens + GREEDY.max_thinking_tokens
        assert close in history[start : start + 3]

    def test_no_thinking_when_off(self, qwen35_session: ChatSession) -> None:
        r = reply(qwen35_session, CHAT, thinking=False)
        assert r.thinking == "" and r.done.stats.thinking_tokens == 0
        assert r.answer
        assert r.done.reason is FinishReason.LENGTH
        assert r.done.stats.completion_tokens == GREEDY.max_tokens

    def test_zero_budget_answers_at_once(self, qwen35_session: ChatSession) -> None:
        params = SamplingParams(max_tokens=8, max_thinking_tokens=0, temperature=0.0)
        r = reply(qwen35_session, CHAT, thinking=True, params=params)
        assert r.thinking == "" and r.done.stats.thinking_tokens == 0
        assert r.answer


class TestPrefixReuse:
    def test_each_turn_evaluates_only_what_is_new(self, fresh: ChatSession) -> None:
        chat = list(CHAT)
        store = fresh.checkpoints
        assert store is not None
        previous: list[int] = []
        for turn in range(5):
            prompt = prompt_tokens(fresh, chat)
            restores, before = store.restores, decoded(fresh)
            r = reply(fresh, chat)
            stats = r.done.stats
            assert r.answer, "the fixture should answer after thinking"
            # The template drops this reply's thinking next turn, so the shared
            # prefix ends where the reply began; everything before is reused.
            expected = prefix(previous, prompt) if turn else 0
            assert stats.reused_tokens == expected
            assert stats.evaluated_tokens == stats.prompt_tokens - expected
            if turn:
                assert expected >= len(previous) - 3  # only "<think>\n" differs
                assert store.restores == restores + 1
            # llama.cpp itself decoded the new prompt tokens and the reply, nothing more.
            grown = stats.context_tokens - stats.prompt_tokens
            assert decoded(fresh) - before == stats.evaluated_tokens + grown
            previous = prompt
            chat = next_turn(chat, r, turn)

    def test_warm_reads_the_history_so_the_next_turn_reads_only_the_question(
        self, qwen35_model_path: Path
    ) -> None:
        """After a model switch the app reads the open chat in ahead (with progress);
        its next turn then evaluates only the new question, on the hybrid model too."""
        with ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096)) as first:
            r = reply(first, CHAT)
        chat = next_turn(CHAT, r, 1)
        history = chat[:-1]  # what is on screen when the new file has loaded
        with ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096)) as switched:
            seen: list[tuple[int, int]] = []
            reused, read = switched.warm(
                history, cache_key=7, on_progress=lambda d, t: seen.append((d, t))
            )
            assert reused == 0 and read > 0
            assert seen[-1] == (read, read) and all(d <= t for d, t in seen)
            before = decoded(switched)
            stats = reply(switched, chat, cache_key=7).done.stats
            question = len(prompt_tokens(switched, chat)) - prefix(
                prompt_tokens(switched, chat),
                prompt_tokens(switched, [*history, Message("user", "?")]),
            )
            assert stats.reused_tokens >= read - 1  # the state the warm-up left
            assert stats.evaluated_tokens <= question + 1
            # llama.cpp itself decoded no more than the question and the reply.
            grown = stats.context_tokens - stats.prompt_tokens
            assert decoded(switched) - before <= stats.evaluated_tokens + grown

    def test_without_checkpoints_it_would_reread_everything(self, qwen35_model_path: Path) -> None:
        with ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096, checkpoint_mib=0)) as s:
            assert s.checkpoints is None
            r = reply(s, CHAT)
            second = reply(s, next_turn(CHAT, r, 0)).done.stats
            assert second.reused_tokens == 0
            assert second.evaluated_tokens == second.prompt_tokens

    def test_reused_state_is_the_state_of_a_full_reread(
        self, fresh: ChatSession, qwen35_model_path: Path
    ) -> None:
        chat = list(CHAT)
        with ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096, checkpoint_mib=0)) as full:
            for turn in range(3):
                mine, theirs = reply(fresh, chat), reply(full, chat)
                assert theirs.done.stats.reused_tokens == 0
                assert (mine.thinking, mine.answer) == (theirs.thinking, theirs.answer)
                chat = next_turn(chat, mine, turn)

    def test_regenerate_restores_a_checkpoint(self, fresh: ChatSession) -> None:
        chat = next_turn(CHAT, reply(fresh, CHAT), 0)
        first = reply(fresh, chat)
        store = fresh.checkpoints
        assert store is not None
        restores, before = store.restores, decoded(fresh)
        again = reply(fresh, chat)  # same history, new reply
        stats = again.done.stats
        assert store.restores == restores + 1
        assert stats.evaluated_tokens <= 3  # "<think>\n" after "assistant\n"
        assert decoded(fresh) - before == stats.evaluated_tokens + (
            stats.context_tokens - stats.prompt_tokens
        )
        assert (again.thinking, again.answer) == (first.thinking, first.answer)

    def test_edit_last_message_restores_a_checkpoint(
        self, fresh: ChatSession, qwen35_model_path: Path
    ) -> None:
        chat = next_turn(CHAT, reply(fresh, CHAT), 0)
        reply(fresh, chat)
        edited = [*chat[:-1], Message("user", "Something else entirely, please.")]
        store = fresh.checkpoints
        assert store is not None
        restores = store.restores
        r = reply(fresh, edited)
        stats = r.done.stats
        assert store.restores == restores + 1
        # Reused up to the start of the edited message: only it and the cue are new.
        start = prefix(prompt_tokens(fresh, chat), prompt_tokens(fresh, edited))
        assert stats.reused_tokens == start
        assert stats.evaluated_tokens == stats.prompt_tokens - start
        with ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096, checkpoint_mib=0)) as full:
            theirs = reply(full, edited)
        assert (r.thinking, r.answer) == (theirs.thinking, theirs.answer)

    def test_checkpoint_memory_is_bounded(self, qwen35_model_path: Path) -> None:
        with ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096, checkpoint_mib=1)) as s:
            store = s.checkpoints
            assert store is not None
            chat = list(CHAT)
            for turn in range(12):
                r = reply(s, chat)
                assert store.bytes_used <= 1 << 20
                last_prompt = r.done.stats.prompt_tokens
                chat = next_turn(chat, r, turn)
            assert store.saves > len(store)  # some were evicted...
            assert len(store) >= 2  # ...but the newest turn's are there
            assert store.positions()[-1] >= last_prompt - 3

    def test_a_b_a_reads_only_what_is_new_in_a(
        self, fresh: ChatSession, qwen35_model_path: Path
    ) -> None:
        other = [CHAT[0], Message("user", "Write a poem about the mountains in winter, please.")]
        first_a = reply(fresh, CHAT, cache_key="A")
        first_b = reply(fresh, other, cache_key="B")
        a2 = next_turn(CHAT, first_a, 0)
        store = fresh.checkpoints
        assert store is not None and store.snapshots == 1  # A's, kept while B ran
        before = decoded(fresh)
        back = reply(fresh, a2, cache_key="A").done.stats
        # Exactly what turn 2 of A reads without B in between (a session of its own).
        with ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096)) as alone:
            reply(alone, CHAT)
            expected = reply(alone, a2)
        assert back.reused_tokens == expected.done.stats.reused_tokens
        assert back.evaluated_tokens == expected.done.stats.evaluated_tokens
        assert back.reused_tokens >= len(prompt_tokens(fresh, CHAT)) - 3  # all of turn 1's prompt
        assert decoded(fresh) - before == back.evaluated_tokens + (
            back.context_tokens - back.prompt_tokens
        )
        # ...and the restored state is the right one: the same (greedy) reply.
        again = reply(fresh, a2, cache_key="A")
        assert (again.thinking, again.answer) == (expected.thinking, expected.answer)
        # B's turn, in turn, was kept when A came back.
        back_b = reply(fresh, next_turn(other, first_b, 0), cache_key="B").done.stats
        assert back_b.reused_tokens >= len(prompt_tokens(fresh, other)) - 3

    def test_without_names_a_b_a_rereads_a(self, fresh: ChatSession) -> None:
        other = [CHAT[0], Message("user", "Write a poem about the mountains in winter, please.")]
        first_a = reply(fresh, CHAT)
        reply(fresh, other)
        back = reply(fresh, next_turn(CHAT, first_a, 0)).done.stats
        shared = prefix(prompt_tokens(fresh, CHAT), prompt_tokens(fresh, other))
        assert back.reused_tokens <= shared  # at most the system prompt

    def test_snapshots_stay_within_the_checkpoint_budget(self, qwen35_model_path: Path) -> None:
        with ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096, checkpoint_mib=1)) as s:
            store = s.checkpoints
            assert store is not None
            for n in range(6):  # six conversations, each left for the next
                reply(s, [Message("user", f"Conversation {n}: tell me a story.")], cache_key=n)
                assert store.bytes_used <= store.budget_bytes
            assert 0 < store.snapshots < 6  # the least recently used went first


class TestContinue:
    """Continue: the model carries on the same reply, thinking and answer kept apart."""

    def test_an_answer_cut_at_the_length_limit(self, fresh: ChatSession) -> None:
        cut = reply(fresh, CHAT, params=replace(GREEDY, max_tokens=4))
        assert cut.done.reason is FinishReason.LENGTH and cut.answer and cut.thinking
        more = reply(fresh, [*CHAT, cut.message()], continue_reply=True)
        stats = more.done.stats
        assert more.answer and set(more.order) == {"A"}  # its thinking is over
        assert stats.thinking_tokens == 0 and stats.completion_tokens > 0
        # The prompt is the question's, then the reply so far, left open.
        text = fresh.render_continuation([*CHAT, cut.message()], thinking=True)
        assert text.startswith(fresh.render_prompt(CHAT, thinking=True))
        assert text.endswith(cut.answer) and stats.prompt_tokens == len(fresh.tokenize(text))
        assert stats.reused_tokens >= len(prompt_tokens(fresh, CHAT)) - 3  # its checkpoint

    def test_a_reply_cut_inside_its_thinking(self, fresh: ChatSession) -> None:
        whole = reply(fresh, CHAT)
        half = Message("assistant", "", thinking=whole.thinking[: len(whole.thinking) // 2])
        more = reply(fresh, [*CHAT, half], continue_reply=True)
        stats = more.done.stats
        # More thinking first (counted as thinking, within its own budget), then the answer.
        assert more.order.startswith("T") and "A" in more.order and more.answer
        assert 0 < stats.thinking_tokens <= GREEDY.max_thinking_tokens


class StopMidBatch(threading.Event):
    """Turns itself on inside the prefill batch that starts after ``after`` tokens, at
    the ``checks``-th call of llama.cpp's abort callback there (mid-graph), and
    remembers when: a Stop press at an exact point of the prefill, without timing."""

    def __init__(self, session: ChatSession, after: int, checks: int) -> None:
        super().__init__()
        self.history = session._history
        self.after = after
        self.remaining = checks
        self.set_at = 0.0

    def is_set(self) -> bool:
        if not super().is_set() and self.history.n_past >= self.after:
            self.remaining -= 1
            if self.remaining <= 0:
                self.set_at = time.perf_counter()
                self.set()
        return super().is_set()


class TestStopDuringPrefill:
    def test_stop_aborts_a_long_prefill_quickly_and_keeps_what_was_read(
        self, qwen35_model_path: Path
    ) -> None:
        options = EngineOptions(n_ctx=4096, n_batch=256, n_ubatch=256)
        long_chat = [Message("user", "Tell me about boats and the sea. " * 120)]
        with ChatSession(qwen35_model_path, options) as session:
            n_prompt = len(prompt_tokens(session, long_chat))
            assert n_prompt > 4 * 256  # several batches
            stop = StopMidBatch(session, after=256, checks=30)  # inside the second batch
            r = reply(session, long_chat, stop=stop)
            returned = time.perf_counter()
            assert stop.set_at, "the stop was never reached"
            assert (r.thinking, r.answer, r.done.reason) == ("", "", FinishReason.CANCELLED)
            assert returned - stop.set_at < 0.2  # the contract: Stop within 200 ms
            # An aborted graph can leave the recurrent state half-updated: the
            # session went back to the state between the first and second batch.
            kept = r.done.stats.context_tokens
            assert 256 <= kept < 2 * 256
            # Sending again reads on from there, and the state is the one a full
            # read gives: the greedy replies are equal.
            again = reply(session, long_chat)
            assert again.done.stats.reused_tokens == kept
        with ChatSession(qwen35_model_path, replace(options, checkpoint_mib=0)) as full:
            expected = reply(full, long_chat)
        assert (again.thinking, again.answer) == (expected.thinking, expected.answer)

    def test_stop_during_a_turn_then_continue(self, fresh: ChatSession) -> None:
        chat = next_turn(CHAT, reply(fresh, CHAT), 0)
        stop = StopMidBatch(fresh, after=0, checks=40)
        r = reply(fresh, chat, stop=stop)
        assert r.done.reason is FinishReason.CANCELLED
        assert reply(fresh, chat).done.reason is FinishReason.LENGTH


def test_events_of_a_reply_are_well_formed(qwen35_session: ChatSession) -> None:
    events: list[Event] = list(qwen35_session.stream(CHAT, GREEDY))
    assert isinstance(events[-1], ReplyDone)
    assert not any(isinstance(e, ReplyDone) for e in events[:-1])
    assert all(e.text for e in events[:-1] if isinstance(e, ThinkingDelta | TextDelta))


class TestCli:
    """``hearth chat --think/--no-think`` on the fixture, as a separate process."""

    @staticmethod
    def chat(model: Path, data: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        args = ["chat", "--model", str(model), "--json", "--max-tokens", "6", *flags, "Hi"]
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HEARTH_DATA_DIR": str(data)},
            check=False,
        )

    def test_think_goes_to_stderr_and_the_store(
        self, qwen35_model_path: Path, tmp_path: Path
    ) -> None:
        from engine.history.store import ChatStore

        done = self.chat(qwen35_model_path, tmp_path, "--think", "--max-thinking-tokens", "5")
        assert done.returncode == 0, done.stderr
        answer, stats_line = done.stdout.rstrip("\n").rsplit("\n", 1)
        stats = json.loads(stats_line)
        assert stats["thinking_tokens"] == 5
        assert "[thinking] " in done.stderr  # not a terminal: a plain prefix, no colors
        store = ChatStore(tmp_path / "hearth.sqlite3")
        try:
            reply = store.messages(stats["conversation_id"])[-1]
            assert reply.thinking and reply.thinking in done.stderr
            assert reply.content == answer and reply.thinking not in answer
        finally:
            store.close()

    def test_no_think(self, qwen35_model_path: Path, tmp_path: Path) -> None:
        done = self.chat(qwen35_model_path, tmp_path, "--no-think")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["thinking_tokens"] == 0
        assert "[thinking]" not in done.stderr
