"""The tool loop on real llama.cpp: SmolLM2 (a template without tools: the JSON form,
tools in the system message) through LocalBackend, and the qwen35 fixture (the real
Qwen3.5 template: the XML form, a hybrid model's recurrent state).

Neither model calls tools on its own, so the first round's output is forced by a
llama.cpp grammar sampler that allows exactly one call (the "forced tool-call
continuation"); everything else is real: the prompt with the tools, decoding,
detokenizing, parsing, running the calculator, re-rendering the reply with its result
and the second round, which must read only the result (prefix reuse)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import pytest

import engine.inference.session as session_module
from engine.inference.local import LocalBackend
from engine.inference.session import ChatSession
from engine.tools.builtin import builtin_tools
from engine.tools.gate import ToolGate
from engine.tools.loop import ToolLoop
from engine.tools.permissions import Answer, PermissionRules
from engine.tools.toolbox import ToolBox
from engine.types import (
    EngineOptions,
    Event,
    Message,
    SamplingParams,
    ToolCallEvent,
    ToolResultEvent,
    Turn,
)

PARAMS = SamplingParams(max_tokens=48, temperature=0.0)
# The fixture's vocabulary is small (merges learned from a few lines): a call is ~100 tokens.
QWEN_PARAMS = SamplingParams(max_tokens=160, temperature=0.0)


def force_first_reply(monkeypatch: pytest.MonkeyPatch, vocab_of: Any, text: str) -> None:
    """The next reply's sampler allows exactly ``text`` (then end of turn)."""
    original = session_module.make_sampler
    used = []

    def make_sampler(params: SamplingParams, *, n_vocab: int, seed: int) -> Any:
        if used:
            return original(params, n_vocab=n_vocab, seed=seed)
        used.append(True)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        grammar = "root ::= " + json.dumps(text)
        llama_cpp.llama_sampler_chain_add(
            chain, llama_cpp.llama_sampler_init_grammar(vocab_of(), grammar.encode(), b"root")
        )
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain

    monkeypatch.setattr(session_module, "make_sampler", make_sampler)


def run_loop(stream: Any, turn: Turn, gate: ToolGate) -> tuple[list[Event], ToolLoop]:
    stop = threading.Event()
    loop = ToolLoop(lambda t: stream(t, stop), gate, stop=stop)
    return list(loop.run(turn)), loop


def calculator_gate() -> ToolGate:
    return ToolGate(
        ToolBox(builtin_tools(["calculator"])),
        PermissionRules(),
        lambda call, spec, stop: Answer.ONCE,
    )


def test_smollm2_calls_the_calculator_and_reads_only_the_result_next(
    starter_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(starter_model_path, EngineOptions(n_ctx=2048))
    try:
        call = (
            '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>'
        )
        force_first_reply(monkeypatch, lambda: backend.session._vocab, call)
        gate = calculator_gate()
        turn = Turn(messages=(Message("user", "What is 6 times 7?"),), tools=gate.specs())
        prompt = backend.session.render_prompt(turn.messages)
        assert "calculator" not in prompt  # without tools the model is not told
        events, loop = run_loop(lambda t, s: backend.stream(t, PARAMS, stop=s), turn, gate)
        (called,) = [e.call for e in events if isinstance(e, ToolCallEvent)]
        (result,) = [e.result for e in events if isinstance(e, ToolResultEvent)]
        assert called.name == "calculator" and dict(called.arguments) == {"expression": "6*7"}
        assert result.ok and result.content == "42"
        first, second = loop.rounds
        # Round two reads the conversation and the call from the cache: only the result
        # and the cue are new.
        assert second.reused_tokens == first.prompt_tokens + first.completion_tokens
        assert second.evaluated_tokens < 40, second
    finally:
        backend.close()


@pytest.fixture
def qwen35_own(qwen35_model_path: Path) -> Iterator[ChatSession]:
    session = ChatSession(qwen35_model_path, EngineOptions(n_ctx=4096))
    yield session
    session.close()


def test_qwen35_xml_call_round_trip_on_the_hybrid_model(
    qwen35_own: ChatSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = qwen35_own
    call = (
        "<tool_call>\n<function=calculator>\n<parameter=expression>\n6*7\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    force_first_reply(monkeypatch, lambda: session._vocab, call)
    gate = calculator_gate()
    turn = Turn(
        messages=(Message("user", "What is 6 times 7?"),), tools=gate.specs(), thinking=False
    )

    def stream(t: Turn, stop: threading.Event) -> Iterator[Event]:
        return session.stream(
            t.messages, QWEN_PARAMS, stop=stop, thinking=t.thinking, cache_key=1, tools=t.tools
        )

    events, loop = run_loop(stream, turn, gate)
    (result,) = [e.result for e in events if isinstance(e, ToolResultEvent)]
    assert result.content == "42"
    first, second = loop.rounds
    assert second.reused_tokens == first.prompt_tokens + first.completion_tokens, (first, second)
    # (the fixture's tiny vocabulary spells the result and the cue in ~46 tokens)
    assert second.evaluated_tokens < 60, second
