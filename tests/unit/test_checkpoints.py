"""Recurrent-state checkpoints and the token-prefix bookkeeping (engine.inference.checkpoints)."""

from __future__ import annotations

import ctypes
import random
import threading
from array import array
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from engine.inference.checkpoints import CheckpointStore, common_prefix
from engine.inference.session import ChatSession
from engine.types import EngineOptions


class TestCommonPrefix:
    def test_matches_a_plain_loop(self) -> None:
        rng = random.Random(5)
        for _ in range(300):
            n = rng.randrange(0, 1200)
            a = array("i", (rng.randrange(4) for _ in range(n)))
            b = array("i", a)
            if n and rng.random() < 0.8:
                b[rng.randrange(n)] += 1
            b.extend(rng.randrange(4) for _ in range(rng.randrange(3)))
            limit = rng.randrange(0, n + 3)
            expected = 0
            while expected < min(limit, len(a), len(b)) and a[expected] == b[expected]:
                expected += 1
            assert common_prefix(a, b, limit) == expected

    def test_block_edges(self) -> None:
        a = array("i", range(1024))
        for i in (0, 255, 256, 257, 511, 1023):
            b = array("i", a)
            b[i] = -1
            assert common_prefix(a, b, 2000) == i
        assert common_prefix(a, array("i", a), 2000) == 1024


@pytest.fixture
def session(qwen35_model_path: Path) -> Iterator[ChatSession]:
    with ChatSession(qwen35_model_path, EngineOptions(n_ctx=1024)) as s:
        yield s


def evaluate(session: ChatSession, tokens: list[int]) -> None:
    """Evaluate ``tokens`` from position 0 (clearing what was there)."""
    hist = session._history
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(session._ctx), True)
    hist.n_past = 0
    assert hist.evaluate(tokens, 0, threading.Event())


def last_logits(session: ChatSession) -> list[float]:
    n_vocab = session._n_vocab
    ptr = llama_cpp.llama_get_logits_ith(session._ctx, -1)
    return list(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float * n_vocab)).contents)


@pytest.mark.model
class TestStore:
    def test_restore_gives_the_same_state(self, session: ChatSession) -> None:
        store = CheckpointStore(session._ctx, 1 << 20)
        hist = session._history
        tokens = session.tokenize("<|im_start|>user\nWhy is the sky blue?<|im_end|>\n")
        evaluate(session, tokens[:6])
        checkpoint = store.save(hist.tokens[:6])
        assert checkpoint is not None and checkpoint.n_tokens == 6
        assert hist.evaluate(tokens, 6, threading.Event())
        reference = last_logits(session)

        def back_to_6() -> None:
            assert store.restore(checkpoint)
            # The attention cache truncates; the recurrent part now ends at 5.
            assert llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(session._ctx), 0, 6, -1)
            hist.n_past = 6

        back_to_6()
        other = [*tokens[:6], *session.tokenize(" something else")]
        assert hist.evaluate(other, 6, threading.Event())
        assert last_logits(session) != reference
        back_to_6()
        assert hist.evaluate(tokens, 6, threading.Event())
        assert last_logits(session) == reference
        assert store.restores == 2

    def test_best_is_the_longest_matching_prefix_within_the_limit(
        self, session: ChatSession
    ) -> None:
        store = CheckpointStore(session._ctx, 1 << 20)
        tokens = session.tokenize("one two three four five six seven eight nine ten")
        evaluate(session, tokens)
        for n in (2, 5, 8):
            store._scratch = None
            assert store.save(array("i", tokens[:n])) is not None
        prompt = array("i", tokens)
        assert store.best(prompt, 100).n_tokens == 8  # type: ignore[union-attr]
        assert store.best(prompt, 7).n_tokens == 5  # type: ignore[union-attr]
        assert store.best(prompt, 1) is None
        changed = array("i", prompt)
        changed[3] += 1  # the checkpoints at 5 and 8 do not follow these tokens
        assert store.best(changed, 100).n_tokens == 2  # type: ignore[union-attr]

    def test_lru_within_the_byte_budget(self, session: ChatSession) -> None:
        tokens = session.tokenize("a b c d e f g h i j k l m n o p")
        evaluate(session, tokens)
        size = int(llama_cpp.llama_state_seq_get_size_ext(session._ctx, 0, 1))
        store = CheckpointStore(session._ctx, 3 * size + 200)  # room for three
        for n in range(1, 6):
            store.save(array("i", tokens[:n]))
            assert store.bytes_used <= store.budget_bytes
        assert store.positions() == [3, 4, 5] and store.saves == 5
        # Using a checkpoint makes it the most recent: it survives the next save.
        assert store.restore(store.best(array("i", tokens), 3))  # type: ignore[arg-type]
        store.save(array("i", tokens[:6]))
        assert store.positions() == [3, 5, 6]
        # Saving the same prefix again replaces it instead of adding a copy.
        store.save(array("i", tokens[:6]))
        assert store.positions() == [3, 5, 6]

    def test_too_small_a_budget_keeps_nothing(self, session: ChatSession) -> None:
        store = CheckpointStore(session._ctx, 100)
        assert store.save(array("i", [1, 2, 3])) is None
        assert len(store) == 0 and store.bytes_used == 0

    def test_scratch_is_overwritten_not_accumulated(self, session: ChatSession) -> None:
        store = CheckpointStore(session._ctx, 1 << 20)
        tokens = session.tokenize("a b c d e f g h")
        evaluate(session, tokens)
        store.save_scratch(array("i", tokens[:3]))
        used = store.bytes_used
        store.save_scratch(array("i", tokens[:4]))
        assert store.bytes_used == used + 4  # one more token remembered, same state buffer
        assert len(store) == 0
        assert store.best(array("i", tokens), 10).n_tokens == 4  # type: ignore[union-attr]
