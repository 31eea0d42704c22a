"""Time to first token as a conversation grows: does turn N re-read the chat?

A conversation of ``--turns`` turns, each adding a user message of the same
length and a greedy reply of ``--reply-tokens``; TTFT is recorded at turns 1, 5,
10, 20, for a Regenerate of the last turn (same history, new reply) and for
"A→B→A": a turn of another chat (B), then turn 21 of the first (A). With
prefix reuse (KV truncation, or recurrent-state checkpoints on hybrid models)
turn 20 should cost about what turn 1 does; without it, it costs the whole chat.
The chats are named (the turn's ``cache_key``) as the app names them, so a hybrid
model keeps A's state while B runs. Replies go through ``LocalBackend``, the
``ChatBackend`` the app's engine thread uses.
Each run uses a fresh session (so turn 1 really is cold); the baseline run loads
the model with checkpoints off and clears the context before every turn, i.e.
re-reads everything. Prints medians over ``--runs`` and the ratios.

    python bench/turn_latency.py --model PATH [--runs 5] [--turns 20]
    python bench/turn_latency.py --qwen35-fixture      # the tiny hybrid test model
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp

from engine.inference.local import LocalBackend
from engine.types import (
    EngineOptions,
    GenerationStats,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
    Turn,
)

MARKS = (1, 5, 10, 20)
FILLER = "Please keep in mind the lighthouse, the boats, the river and the island. "


def user_message(turn: int) -> str:
    # Same length every turn (a two-digit turn number), about 40 tokens.
    return f"Question {turn:02d}: what happens next in the story? " + FILLER * 2


def one_reply(
    backend: LocalBackend, chat: list[Message], params: SamplingParams, key: int | None = None
) -> tuple[Message, GenerationStats]:
    thinking: list[str] = []
    answer: list[str] = []
    stats = None
    turn = Turn(messages=tuple(chat), sampling=params, cache_key=key)
    for event in backend.stream(turn, params, stop=threading.Event()):
        if isinstance(event, ThinkingDelta):
            thinking.append(event.text)
        elif isinstance(event, TextDelta):
            answer.append(event.text)
        elif isinstance(event, ReplyDone):
            stats = event.stats
    assert stats is not None
    return Message("assistant", "".join(answer), thinking="".join(thinking)), stats


def run_conversation(
    model: Path, options: EngineOptions, params: SamplingParams, turns: int, *, reread: bool
) -> dict[str, GenerationStats]:
    """TTFT stats per marked turn and for regenerate; ``reread`` clears the context
    before every turn (the no-reuse baseline)."""
    out: dict[str, GenerationStats] = {}
    backend = LocalBackend(model, options)
    session = backend.session
    try:
        # Warm-up: llama.cpp allocates its graphs on the first decodes; turn 1 should
        # measure reading the prompt, not that.
        one_reply(backend, [Message("user", "Hi")], replace(params, max_tokens=2))
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(session._ctx), True)
        session._history.n_past = 0
        if session.checkpoints is not None:
            session.checkpoints.clear()

        def clear() -> None:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(session._ctx), True)
            session._history.n_past = 0

        a_key, b_key = (None, None) if reread else (1, 2)
        chat = [Message("system", "You are a storyteller. " + FILLER)]
        for turn in range(1, turns + 1):
            chat.append(Message("user", user_message(turn)))
            if reread:
                clear()
            reply, stats = one_reply(backend, chat, params, a_key)
            if turn in MARKS or turn == turns:
                out[f"turn {turn}"] = stats
            if turn == turns:
                if reread:
                    clear()
                out["regenerate"] = one_reply(backend, chat, params, a_key)[1]
            chat.append(reply)
        # Another chat, then back: turn 21 of A.
        other = [chat[0], Message("user", user_message(99))]
        if reread:
            clear()
        one_reply(backend, other, params, b_key)
        chat.append(Message("user", user_message(turns + 1)))
        if reread:
            clear()
        out["A→B→A"] = one_reply(backend, chat, params, a_key)[1]
    finally:
        backend.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path)
    source.add_argument("--qwen35-fixture", action="store_true", help="build and use it")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--reply-tokens", type=int, default=32)
    parser.add_argument("--thinking-tokens", type=int, default=16)
    parser.add_argument("--n-ctx", type=int, default=8192)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    if args.qwen35_fixture:
        from tests.fixtures.qwen35 import build_qwen35_gguf

        model = build_qwen35_gguf(Path(tempfile.mkdtemp()) / "qwen35-tiny-F16.gguf")
    else:
        model = args.model
    options = EngineOptions(n_ctx=args.n_ctx)
    params = SamplingParams(
        max_tokens=args.reply_tokens, max_thinking_tokens=args.thinking_tokens, temperature=0.0
    )
    probe = LocalBackend(model, options)
    info = probe.info
    probe.close()
    print(f"model    {info.name} ({info.architecture}, {info.quantization}), {model.name}")
    print(f"memory   {info.extra['memory']}, thinking default {info.thinking_default}")
    print(
        f"chat     {args.turns} turns, ~40-token user messages, greedy replies of "
        f"{args.reply_tokens} tokens (+{args.thinking_tokens} thinking if it thinks), "
        f"{args.runs} runs, interleaved with a re-read-everything baseline"
    )

    reuse: dict[str, list[GenerationStats]] = {}
    baseline: dict[str, list[GenerationStats]] = {}
    for run in range(args.runs):
        order = (False, True) if run % 2 == 0 else (True, False)
        for reread in order:
            opts = replace(options, checkpoint_mib=0) if reread else options
            result = run_conversation(model, opts, params, args.turns, reread=reread)
            for key, stats in result.items():
                (baseline if reread else reuse).setdefault(key, []).append(stats)
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    head = f"{'prompt':>7} {'reused':>7} {'evaluated':>9} {'TTFT ms':>9} {'re-read ms':>11}"
    print(f"\n{'':12} {head}")
    first = med([s.ttft_s for s in reuse["turn 1"]])
    for key, runs in reuse.items():
        ttft = med([s.ttft_s for s in runs])
        full = med([s.ttft_s for s in baseline[key]])
        print(
            f"{key:12} {runs[0].prompt_tokens:7d} {runs[0].reused_tokens:7d} "
            f"{runs[0].evaluated_tokens:9d} {ttft * 1e3:9.1f} {full * 1e3:11.1f}"
        )
    last = med([s.ttft_s for s in reuse[f"turn {args.turns}"]])
    regen = med([s.ttft_s for s in reuse["regenerate"]])
    back = med([s.ttft_s for s in reuse["A→B→A"]])
    everything = med([s.ttft_s for s in baseline[f"turn {args.turns}"]])
    print(f"\nturn {args.turns} / turn 1 TTFT   {last / first:.2f}  (goal <= 1.3)")
    print(f"regenerate / turn 1 TTFT {regen / first:.2f}")
    print(f"A→B→A / turn 1 TTFT      {back / first:.2f}")
    print(f"re-read turn {args.turns} / turn 1 {everything / first:.2f}  (what reuse saves)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
