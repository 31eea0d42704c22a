"""Hearth's local API (app/serving) against streaming in-process from the same model.

One process loads ``--model`` (default: the starter model, installed into a temporary
folder) once as a ``LocalBackend``. Each round asks the same question twice, greedy,
so both sides get the same reply of ``--tokens`` tokens:

- in-process: ``backend.stream`` called directly on the engine's thread (as the
  window's engine thread does; on the thread the API uses too: llama.cpp's CPU threads
  belong to the OS thread that decodes, and switching threads between replies made
  the first one measured 10x slower here, which would flatter the API);
- through the API: the official ``openai`` client, streaming, in a child process (as
  another program is), against ``ApiServer`` on 127.0.0.1 in this process with the
  ``ThreadRunner`` that ``hearth serve`` uses (the engine on its own thread, the HTTP
  thread writing SSE beside it: their contention for the GIL is counted). The child
  runs one request per line it is sent and answers with its figures, so the two sides
  still alternate. (With the client in this process too, its per-chunk parsing holds
  the GIL the engine needs between tokens: bench/RESULTS.md has that figure as well,
  ``--client-here``.)

The order alternates per round. For each reply: tokens/s between the first and the last
piece (tokens from the reply's own count: the server may put several in one write), and
the time to the first piece from the request. Medians over ``--rounds``; the goals are
api/in-process >= 0.95 for tokens/s and <= 20 ms added to the first token.

    python bench/serve.py [--model PATH] [--rounds 9] [--tokens 256] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.serving.engine_queue import ThreadRunner
from app.serving.server import ApiServer, model_id
from engine.inference.local import LocalBackend
from engine.types import (
    EngineOptions,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
    Turn,
)

QUESTION = "Write a long story about a lighthouse keeper and a storm."


@dataclass
class Run:
    tokens: int
    ttft_s: float
    last_s: float  # the last piece, from the request

    @property
    def tokens_per_s(self) -> float:
        streaming = self.last_s - self.ttft_s
        return (self.tokens - 1) / streaming if streaming > 0 else 0.0


def in_process(backend: LocalBackend, tokens: int) -> Run:
    turn = Turn(messages=(Message("user", QUESTION),), thinking=False)
    params = SamplingParams(max_tokens=tokens, temperature=0.0, seed=7)
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for event in backend.stream(turn, params, stop=threading.Event()):
        if isinstance(event, TextDelta | ThinkingDelta):
            last = time.perf_counter() - start
            first = first or last
        elif isinstance(event, ReplyDone):
            count = event.stats.completion_tokens
    return Run(count, first, last)


def through_api(client: object, model: str, tokens: int) -> Run:
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    stream = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=tokens,
        temperature=0.0,
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    for chunk in stream:
        if chunk.usage is not None:
            count = chunk.usage.completion_tokens
        if chunk.choices and (chunk.choices[0].delta.content or ""):
            last = time.perf_counter() - start
            first = first or last
    return Run(count, first, last)


def through_http(url: str, model: str, tokens: int) -> Run:
    """The same request with the standard library: the server's cost without the
    openai client's (pydantic objects per chunk), which shares the CPU with the model."""
    import http.client
    import json
    from urllib.parse import urlsplit

    where = urlsplit(url)
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": tokens,
            "temperature": 0.0,
            "seed": 7,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    conn = http.client.HTTPConnection(where.hostname or "", where.port)
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    for line in response:
        # Content pieces only: the first chunk is the role with an empty content.
        if line.startswith(b"data: {") and b'"delta":{"content":' in line:
            last = time.perf_counter() - start
            first = first or last
        elif line.startswith(b"data: {") and b'"usage":{' in line:
            count = json.loads(line[6:])["usage"]["completion_tokens"]
    conn.close()
    return Run(count, first, last)


def client_loop(url: str, model: str, kind: str) -> int:
    """The child: one streamed request per line on stdin, its Run as a line on stdout."""
    import json

    import openai

    with openai.OpenAI(base_url=url, api_key="none", max_retries=0) as client:
        for line in sys.stdin:
            if kind == "http":
                run = through_http(url, model, int(line))
            else:
                run = through_api(client, model, int(line))
            print(json.dumps([run.tokens, run.ttft_s, run.last_s]), flush=True)
    return 0


class ChildClient:
    def __init__(self, url: str, model: str, kind: str) -> None:
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, __file__, "--client-of", url, model, kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, tokens: int) -> Run:
        import json

        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{tokens}\n")
        self.process.stdin.flush()
        count, ttft, last = json.loads(self.process.stdout.readline())
        return Run(count, ttft, last)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def main() -> int:
    import openai

    if len(sys.argv) == 5 and sys.argv[1] == "--client-of":
        return client_loop(sys.argv[2], sys.argv[3], sys.argv[4])

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the starter model)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gpu-layers", type=int, default=0, help="-1: all on the GPU")
    parser.add_argument(
        "--client-here", action="store_true", help="run the openai client in this process"
    )
    parser.add_argument(
        "--client",
        choices=("openai", "http"),
        default="openai",
        help="the child's client: the openai package, or plain http.client (no parsing)",
    )
    args = parser.parse_args()
    model = args.model
    if model is None:
        from engine.models.catalog import install_starter_model

        model = install_starter_model(Path(tempfile.mkdtemp(prefix="hearth-bench-")))
    options = EngineOptions(n_ctx=2048, n_threads=args.threads, n_gpu_layers=args.gpu_layers)
    backend = LocalBackend(model, options)
    runner = ThreadRunner(backend)  # owns the backend from here; closes it at the end
    server = ApiServer(runner, port=0).start()
    name = model_id(backend.info)
    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
    child = None if args.client_here else ChildClient(server.url, name, args.client)

    def ask(tokens: int) -> Run:
        return through_api(client, name, tokens) if child is None else child.ask(tokens)

    try:

        def local_run(tokens: int) -> Run:
            done: list[Run] = []
            finished = threading.Event()

            def job(_backend: object) -> None:
                done.append(in_process(backend, tokens))
                finished.set()

            runner.submit(job, threading.Event())
            finished.wait()
            return done[0]

        # Warm-up: the prompt is read once; every later run reuses it (both alike).
        local_run(8)
        ask(8)
        local: list[Run] = []
        api: list[Run] = []
        for i in range(args.rounds):
            order = ("local", "api") if i % 2 == 0 else ("api", "local")
            for side in order:
                if side == "local":
                    local.append(local_run(args.tokens))
                else:
                    api.append(ask(args.tokens))
            print(
                f"round {i + 1}: in-process {local[-1].tokens_per_s:6.1f} tok/s "
                f"ttft {local[-1].ttft_s * 1000:6.1f} ms | api {api[-1].tokens_per_s:6.1f} "
                f"tok/s ttft {api[-1].ttft_s * 1000:6.1f} ms ({api[-1].tokens} tokens)",
                flush=True,
            )
    finally:
        if child is not None:
            child.close()
        client.close()
        server.close()
        runner.close()
    local_tps = statistics.median(r.tokens_per_s for r in local)
    api_tps = statistics.median(r.tokens_per_s for r in api)
    local_ttft = statistics.median(r.ttft_s for r in local) * 1000
    api_ttft = statistics.median(r.ttft_s for r in api) * 1000
    ratios = statistics.median(
        a.tokens_per_s / b.tokens_per_s for a, b in zip(api, local, strict=True)
    )
    added = statistics.median((a.ttft_s - b.ttft_s) * 1000 for a, b in zip(api, local, strict=True))
    where = "this process" if child is None else f"a child process, {args.client}"
    print(f"model: {backend.info.name} ({model.name}), {args.tokens} tokens, {args.rounds} rounds")
    print(f"in-process: {local_tps:.1f} tok/s, first token {local_ttft:.1f} ms")
    print(
        f"through the API (client in {where}): {api_tps:.1f} tok/s, first token {api_ttft:.1f} ms"
    )
    print(f"api/in-process: {api_tps / local_tps:.3f} (per-round ratios: median {ratios:.3f})")
    print(f"first token added by the API: {added:.1f} ms (median of per-round differences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
