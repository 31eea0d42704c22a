"""Tokens/s through Hearth's remote backend against the official ``openai`` client,
both reading the same OpenAI-compatible server.

The server is llama-cpp-python's own (``python -m llama_cpp.server``) on 127.0.0.1,
serving ``--model`` (default: the starter model, installed into a temporary folder).
Each round asks the same question twice, greedy and with a fixed seed, so both
clients receive the same reply of ``--tokens`` tokens: once through
``RemoteBackend.stream`` (engine/inference/remote.py), once through
``openai.OpenAI().chat.completions.create(stream=True)``; the order alternates per
round, so drift in the machine's speed hits both alike. For each reply: pieces
received per second between the first and the last piece (what a person sees
stream), the time to the first piece, and the whole request. Medians over
``--rounds``; the goal is remote/openai >= 0.97 for tokens/s.

    python bench/endpoints.py [--model PATH] [--rounds 7] [--tokens 128]
    python bench/endpoints.py --replay [--tokens 2000]

``--replay`` takes the model out: a stdlib server on 127.0.0.1 (tests/openai_servers.py)
replays a recorded llama_cpp.server stream of ``--tokens`` chunks as fast as the
socket takes it, so what is measured is the two clients alone (their ceiling in
tokens/s, and their CPU time); on a busy machine the server's own speed swamps it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.inference.remote import RemoteBackend
from engine.types import Message, SamplingParams, TextDelta, ThinkingDelta, Turn
from tests.openai_servers import free_port
from tests.waiting import MODEL_STEP_S, wait_until

QUESTION = "Write a long story about a lighthouse keeper and a storm."


@dataclass
class Run:
    pieces: int
    ttft_s: float
    total_s: float
    cpu_s: float  # this process's CPU time for the reply (the client's own cost)

    @property
    def tokens_per_s(self) -> float:
        streaming = self.total_s - self.ttft_s
        return (self.pieces - 1) / streaming if streaming > 0 else 0.0


def through_remote(backend: RemoteBackend, tokens: int) -> Run:
    turn = Turn(messages=(Message("user", QUESTION),), thinking=False)
    params = SamplingParams(max_tokens=tokens, temperature=0.0, seed=7)
    start, cpu = time.perf_counter(), time.process_time()
    first = 0.0
    pieces = 0
    for event in backend.stream(turn, params, stop=threading.Event()):
        if isinstance(event, TextDelta | ThinkingDelta):
            if not pieces:
                first = time.perf_counter() - start
            pieces += 1
    return Run(pieces, first, time.perf_counter() - start, time.process_time() - cpu)


def through_openai(client: object, model: str, tokens: int) -> Run:
    start, cpu = time.perf_counter(), time.process_time()
    first = 0.0
    pieces = 0
    stream = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        max_tokens=tokens,
        temperature=0.0,
        seed=7,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if not pieces:
                first = time.perf_counter() - start
            pieces += 1
    return Run(pieces, first, time.perf_counter() - start, time.process_time() - cpu)


def replay_server(rounds: int, tokens: int) -> object:
    from tests.openai_servers import Exchange, ScriptedServer, sse

    def piece(i: int) -> dict[str, object]:
        return {
            "id": "chatcmpl-97c06311-cb85-47cc-baa9-47e3501695c4", "model": "bench",
            "created": 1796648449, "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": f" word{i % 10}"},
                         "logprobs": None, "finish_reason": None}],
        }  # fmt: skip

    body = sse(*(piece(i) for i in range(tokens)), "[DONE]")
    return ScriptedServer([Exchange(body=body) for _ in range(2 * rounds + 2)], models=["bench"])


def main() -> int:
    import openai

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the starter model)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="the server's CPU threads")
    parser.add_argument("--replay", action="store_true", help="a replayed stream, no model")
    args = parser.parse_args()
    model = args.model
    if args.replay:
        with replay_server(args.rounds, args.tokens) as replay:  # type: ignore[attr-defined]
            remote, official = compare(replay.base_url, args.rounds, args.tokens, openai)
        report(f"replayed stream, {args.rounds} rounds of {args.tokens} chunks", remote, official)
        return 0
    if model is None:
        from engine.models.catalog import install_starter_model

        model = install_starter_model(Path(tempfile.mkdtemp(prefix="hearth-bench-")))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
         "bench", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", str(args.threads), "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import socket

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, timeout_s=MODEL_STEP_S, what="llama_cpp.server to listen")
        base = f"http://127.0.0.1:{port}/v1"
        remote, official = compare(base, args.rounds, args.tokens, openai)
    finally:
        server.kill()
        server.wait()
    title = f"model {model.name}, {args.rounds} rounds of {args.tokens} tokens, "
    report(title + f"server threads {args.threads}", remote, official)
    return 0


def compare(base: str, rounds: int, tokens: int, openai: Any) -> tuple[list[Run], list[Run]]:
    backend = RemoteBackend.connect(base, "bench")
    client = openai.OpenAI(base_url=base, api_key="none")
    through_remote(backend, 8)  # warm both paths (the server's first reply, imports)
    through_openai(client, "bench", 8)
    remote: list[Run] = []
    official: list[Run] = []
    for round_ in range(rounds):
        if round_ % 2:
            official.append(through_openai(client, "bench", tokens))
            remote.append(through_remote(backend, tokens))
        else:
            remote.append(through_remote(backend, tokens))
            official.append(through_openai(client, "bench", tokens))
    backend.close()
    client.close()
    return remote, official


def report(title: str, remote: list[Run], official: list[Run]) -> None:
    import openai

    def med(runs: list[Run], field: str) -> float:
        return float(statistics.median(float(getattr(r, field)) for r in runs))

    print(title)
    print(f"{'client':<16}{'pieces':>8}{'tokens/s':>10}{'TTFT ms':>10}{'total s':>10}{'CPU ms':>9}")
    for name, runs in (("RemoteBackend", remote), ("openai " + openai.__version__, official)):
        print(
            f"{name:<16}{med(runs, 'pieces'):>8.0f}{med(runs, 'tokens_per_s'):>10.1f}"
            f"{med(runs, 'ttft_s') * 1000:>10.1f}{med(runs, 'total_s'):>10.2f}"
            f"{med(runs, 'cpu_s') * 1000:>9.1f}"
        )
    # Paired per round (the two replies ran back to back), so that a machine whose
    # speed drifts (other work on it) moves both sides of each ratio alike.
    ratios = [r.tokens_per_s / o.tokens_per_s for r, o in zip(remote, official, strict=True)]
    print(
        f"remote/openai tokens/s, median of {len(ratios)} paired rounds: "
        f"{statistics.median(ratios):.3f} (goal >= 0.97; rounds {min(ratios):.2f}-"
        f"{max(ratios):.2f})"
    )


if __name__ == "__main__":
    sys.exit(main())
