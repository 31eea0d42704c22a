"""Decode throughput: Hearth's engine boundary against a bare ``Llama.generate`` loop.

Hearth's side is what the app runs: ``LocalBackend.stream`` on a ``Turn`` (the
``ChatBackend`` the engine thread uses), events and all.

Both load the same file with the same llama.cpp arguments (``llama_load_kwargs``),
get the same prompt tokens and greedy sampling, so they produce the same tokens;
only the Python around llama.cpp differs. Runs are interleaved (order alternating)
so drift in machine load hits both sides alike. Prints medians and hearth/bare.

    python bench/engine_throughput.py --model PATH [--tokens N] [--runs K] [--threads T]
        [--overhead] [--thinking-split]

``--thinking-split`` also times what splitting a reply into thinking and answer
(engine.inference.thinking) adds per token, on the model's own tokens and pieces.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp

from engine.inference.detok import Detokenizer
from engine.inference.loader import llama_load_kwargs, physical_cores
from engine.inference.local import LocalBackend
from engine.inference.session import ChatSession
from engine.inference.thinking import ThinkingSplitter
from engine.types import (
    EngineOptions,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
    Turn,
)

PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a map in a bottle. "
    "Describe every place she visits."
)


# Thinking off: both loops must produce the same tokens from the same prompt.
TURN = Turn(messages=(Message("user", PROMPT),), thinking=False)


def run_hearth(backend: LocalBackend, max_tokens: int) -> tuple[float, int]:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0)
    done = None
    for event in backend.stream(TURN, params, stop=threading.Event()):
        if isinstance(event, ReplyDone):
            done = event
    assert done is not None
    return done.stats.tokens_per_s, done.stats.completion_tokens


def run_bare(llm: llama_cpp.Llama, tokens: list[int], max_tokens: int) -> tuple[float, int]:
    """The smallest honest loop over ``Llama.generate``: stop at EOG or max_tokens."""
    vocab = llm._model.vocab
    is_eog = llama_cpp.llama_vocab_is_eog
    n = 0
    t_first = 0.0
    for token in llm.generate(tokens, temp=0.0, repeat_penalty=1.0):
        if n == 0:
            t_first = time.perf_counter()
        if is_eog(vocab, token):
            break
        n += 1
        if n >= max_tokens:
            break
    elapsed = time.perf_counter() - t_first
    return ((n - 1) / elapsed if n > 1 else 0.0), n


def python_overhead_us(
    backend: LocalBackend, bare: llama_cpp.Llama, tokens: list[int], n: int
) -> tuple[float, float]:
    """Per-token cost of everything but ``llama_decode`` (sampling, detokenizing,
    the Python loop), for both loops: decode is swapped for a no-op, so sampling
    reruns on the last real logits. Leaves both contexts stale: run it last."""
    run_hearth(backend, 1)  # real logits for the prompt's last token, not EOG
    run_bare(bare, tokens, 1)
    real = llama_cpp.llama_decode
    fake = lambda ctx, batch: 0  # noqa: E731
    # Hearth calls llama_cpp.llama_decode; llama-cpp-python's LlamaContext.decode
    # calls it through the llama_cpp.llama_cpp module.
    llama_cpp.llama_decode = llama_cpp.llama_cpp.llama_decode = fake
    try:
        h, nh = run_hearth(backend, n)
        b, nb = run_bare(bare, tokens, n)
    finally:
        llama_cpp.llama_decode = llama_cpp.llama_cpp.llama_decode = real
    assert nh == nb == n, (nh, nb)
    return 1e6 / h, 1e6 / b


def thinking_split_us(session: ChatSession, repeats: int = 20) -> tuple[float, float, int]:
    """Per-token cost of the session's work on one streamed token while the model
    thinks (detokenize, split, one ThinkingDelta) minus the same without the split
    (detokenize, one TextDelta), in microseconds; and the same in the START state's
    worst case. Median of interleaved repeats over ~2000 real tokens."""
    thought = (PROMPT + " Then she weighs each option again, step by step. ") * 40
    tokens = session._tokenize(f"{thought}\n</think>\n\nDone.", add_bos=False)
    close_id, open_id = session._think_close, session._think_open

    def plain() -> float:
        detok = Detokenizer(session._piece)
        t = time.perf_counter()
        for token in tokens:
            text = detok.feed(token)
            if text:
                TextDelta(text)
        return time.perf_counter() - t

    def split() -> float:
        detok = Detokenizer(session._piece)
        splitter = ThinkingSplitter(start_in_thinking=True, open_id=open_id, close_id=close_id)
        feed = splitter.feed
        t = time.perf_counter()
        for token in tokens:
            thinking, answer = feed(token, detok.feed(token))
            if thinking:
                ThinkingDelta(thinking)
            if answer:
                TextDelta(answer)
        return time.perf_counter() - t

    base: list[float] = []
    with_split: list[float] = []
    for k in range(repeats):
        for fn, out in ((plain, base), (split, with_split))[:: 1 if k % 2 == 0 else -1]:
            out.append(fn())
    n = len(tokens)
    return statistics.median(base) / n * 1e6, statistics.median(with_split) / n * 1e6, n


def run_llama_bench(model: Path, threads: int, tokens: int, runs: int) -> float | None:
    exe = shutil.which("llama-bench")
    if exe is None:
        return None
    cmd = [exe, "-m", str(model), "-t", str(threads), "-p", "0", "-n", str(tokens)]
    out = subprocess.run(
        [*cmd, "-r", str(runs), "-o", "json"], capture_output=True, text=True, check=True
    )
    return float(json.loads(out.stdout)[0]["avg_ts"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--tokens", type=int, default=256, help="max tokens per reply")
    parser.add_argument("--runs", type=int, default=7, help="interleaved runs per side")
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument(
        "--overhead", action="store_true", help="also time the loops with decode stubbed out"
    )
    parser.add_argument(
        "--thinking-split", action="store_true", help="also time the thinking/answer split"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # llama.cpp's warnings are not results

    threads = args.threads or physical_cores()
    options = EngineOptions(n_ctx=2048, n_threads=threads)
    backend = LocalBackend(args.model, options)
    session = backend.session
    bare = llama_cpp.Llama(str(args.model), **llama_load_kwargs(options))
    prompt_tokens = session.tokenize(session.render_prompt(TURN.messages, thinking=False))

    print(f"model    {session.info.name} ({session.info.quantization}), {args.model.name}")
    print(f"machine  {platform.machine()}, {physical_cores()} physical cores, threads={threads}")
    print(f"prompt   {len(prompt_tokens)} tokens, greedy, up to {args.tokens} new tokens")

    # Warm-up: page in the weights and let the CPU clocks settle for both.
    run_hearth(backend, args.tokens)
    run_bare(bare, prompt_tokens, args.tokens)

    hearth: list[float] = []
    base: list[float] = []
    counts: set[tuple[int, int]] = set()
    for k in range(args.runs):
        if k % 2 == 0:
            h, nh = run_hearth(backend, args.tokens)
            b, nb = run_bare(bare, prompt_tokens, args.tokens)
        else:
            b, nb = run_bare(bare, prompt_tokens, args.tokens)
            h, nh = run_hearth(backend, args.tokens)
        hearth.append(h)
        base.append(b)
        counts.add((nh, nb))
        print(f"run {k + 1}: hearth {h:7.1f} tok/s ({nh} tok)   bare {b:7.1f} tok/s ({nb} tok)")

    med_h, med_b = statistics.median(hearth), statistics.median(base)
    paired = statistics.median(h / b for h, b in zip(hearth, base, strict=True))
    print(f"median   hearth {med_h:.1f} tok/s   bare generate {med_b:.1f} tok/s")
    print(f"ratio    hearth/bare {med_h / med_b:.3f} (median of per-run ratios {paired:.3f})")
    if any(nh != nb for nh, nb in counts):
        print(f"WARNING  token counts differ between the loops: {sorted(counts)}")
    lb = run_llama_bench(args.model, threads, args.tokens, args.runs)
    print("llama-bench " + (f"{lb:.1f} tok/s (tg{args.tokens})" if lb else "not on PATH"))
    if args.thinking_split:
        base_us, split_us, n = thinking_split_us(session)
        per_token_us = 1e6 / med_h
        print(
            f"thinking split, per token ({n} tokens, ids: {session._think_close is not None}): "
            f"{base_us:.2f} us without, {split_us:.2f} us with: +{split_us - base_us:.2f} us "
            f"= {(split_us - base_us) / per_token_us * 100:.3f} % of a {per_token_us:.0f} us token"
        )
    if args.overhead:
        h_us, b_us = python_overhead_us(backend, bare, prompt_tokens, 1500)
        print(f"outside llama_decode, per token: hearth {h_us:.1f} us   bare {b_us:.1f} us")

    backend.close()
    bare.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
