"""How much memory a model needs, and whether it fits this machine.

``estimate_memory(arch, n_ctx=...)`` adds up what llama.cpp allocates *and
touches* for one chat of ``n_ctx`` tokens, filled to the end:

- weights: the tensors' bytes, counted once (``resident`` adds the page-cache
  copy of repacked weights a process monitor shows with mmap on);
- KV cache: only for layers that attend. Qwen3.5's Gated DeltaNet layers keep
  a fixed-size recurrent state instead (24 of Qwen3.5-9B's 32 layers), which
  is why counting all layers as attention layers overestimates it 4-fold at long
  contexts. Sliding-window layers (Gemma 3) take the full context because
  llama-cpp-python leaves ``swa_full`` on;
- recurrent state: conv + SSM state per recurrent layer, f32, one sequence;
- compute: without flash attention the attention scores of one ubatch against
  the whole cache (f32, plus the f16 copy ggml makes for the next matmul); the
  mask; activations that grow with ubatch, feed-forward and embedding width;
  the output row of logits;
- checkpoints: hybrid models keep copies of their recurrent state at turn
  boundaries (engine.inference.checkpoints), bounded by ``EngineOptions.checkpoint_mib``;
- overhead: the tokenizer's tables (they grow with vocabulary and BPE merges),
  the graph scheduler's tables (they grow with the graph's node budget, which
  llama.cpp sets 10x higher for delta-net hybrids) and the runtime's fixed cost.

How each term grows with context, KV type, flash attention and mmap follows
llama.cpp's own sizes. Five constants are measured: the tokenizer's bytes per
token and per merge (``vocab_only`` loads), and the runtime's fixed cost,
bytes per graph node and per activation unit, fitted to real loads of
SmolLM2-135M, Gemma 3 270M and the tiny qwen35 test model (bench/memory_fit.py;
the table is in bench/RESULTS.md). The figure is the model's share of the
process; ``HardwareInfo.available_ram`` already accounts for Hearth itself.

Architecture parameters come from a GGUF header (``engine.gguf.header.read_gguf_arch``,
without loading the model) or, before a download, from the catalog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from engine.gguf.arch import ModelArch
from engine.types import EngineOptions
from engine.units import format_bytes

__all__ = [
    "AUTO_CONTEXT",
    "DEFAULT_CONTEXT",
    "FitBadge",
    "FitCheck",
    "HardwareInfo",
    "MemoryEstimate",
    "check_fit",
    "choose_context",
    "estimate_for_options",
    "estimate_memory",
    "memory_budget",
]

GIB = 1 << 30
MIB = 1 << 20
DEFAULT_CONTEXT = 8192  # EngineOptions().n_ctx: what a model loads with unless told otherwise
# "Automatic" context, in the window and the CLI alike: what Hearth wants, less where
# memory is short (engine.models.choice.load_options).
AUTO_CONTEXT = 16384
MIN_CONTEXT = 2048  # below this a chat with a system prompt and a few turns does not fit
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# Measured: llama_vocab's tables per token and per BPE merge (vocab_only loads); then,
# fitted to the residuals of bench/memory_fit.py's loads: bytes per graph node (the
# scheduler's hash tables), per ubatch row and unit of width, and the fixed rest.
_VOCAB_PER_TOKEN = 149
_VOCAB_PER_MERGE = 157
_PER_GRAPH_NODE = 842
_ACT_PER_UNIT = 12  # bytes per ubatch row and unit of width: ~3 live f32 tensors
_FIXED = int(14.25 * MIB)
# What the OS and other programs keep: at least 2 GiB, a fifth of RAM on big machines.
_RESERVE_MIN = 2 * GIB
_RESERVE_FRACTION = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryEstimate:
    """Bytes, by where they go. ``total`` is what the model adds to the process."""

    n_ctx: int
    weights: int
    kv_cache: int
    recurrent: int  # the live state and its checkpoints
    compute: int
    overhead: int
    # With mmap, weights the CPU backend repacked stay mapped too: the process's
    # resident size shows them twice, but the OS reclaims that copy under pressure.
    page_cache: int = 0
    vision: int = 0  # the vision projector and its encoder's buffers (issue 13)

    @property
    def total(self) -> int:
        """What the model needs: the figure fits and badges use."""
        return (
            self.weights + self.kv_cache + self.recurrent + self.compute + self.overhead
            + self.vision
        )  # fmt: skip

    @property
    def resident(self) -> int:
        """What a process monitor will show at the peak (total + reclaimable page cache)."""
        return self.total + self.page_cache


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareInfo:
    """The machine, as ``engine.models.hardware.probe()`` found it (bytes)."""

    total_ram: int
    available_ram: int
    physical_cores: int
    logical_cores: int
    disk_free: int | None
    gpu_offload: bool


class FitBadge(StrEnum):
    """How a model fits this machine. # NOTE: shown and may be stored by the UI; keep values."""

    FITS = "fits"  # fits next to what is running now, with the OS's margin
    TIGHT = "tight"  # fits only if other programs give memory back; may swap
    TOO_LARGE = "too_large"  # more than this machine can hold


@dataclass(frozen=True, slots=True, kw_only=True)
class FitCheck:
    badge: FitBadge
    estimate: MemoryEstimate
    # A sentence for the person when the badge is not FITS ("Load anyway" shows it).
    warning: str | None


def _pad(n: int, to: int = 256) -> int:
    return -(-n // to) * to


def estimate_memory(
    arch: ModelArch,
    *,
    n_ctx: int,
    n_ubatch: int = 512,
    kv_type: str = "f16",
    flash_attn: bool = False,
    use_mmap: bool = True,
    swa_full: bool = True,
    checkpoint_bytes: int = 0,
) -> MemoryEstimate:
    """The model's peak memory for a chat filled to ``n_ctx`` tokens.

    ``use_mmap`` does not change what the model needs (``total``), only what
    a process monitor shows (``resident``: repacked weights stay mapped too).
    ``checkpoint_bytes`` is the bound on recurrent-state checkpoints; it counts
    only for models with recurrent layers (others keep none).
    """
    if kv_type not in KV_BYTES:
        raise ValueError(f"unknown KV cache type {kv_type!r}; one of {sorted(KV_BYTES)}")
    cells = _pad(n_ctx)  # llama.cpp pads the context to 256 cells
    n_ubatch = min(n_ubatch, cells)
    swa_cells = cells if swa_full or not arch.n_swa else min(cells, _pad(arch.n_swa + n_ubatch))
    per_cell = arch.n_head_kv * (arch.head_dim_k + arch.head_dim_v) * KV_BYTES[kv_type]
    full_layers = arch.attention_layers - arch.swa_layers
    kv = per_cell * (full_layers * cells + arch.swa_layers * swa_cells)

    recurrent = 4 * arch.recurrent_layers * arch.recurrent_floats
    if recurrent:
        recurrent += checkpoint_bytes
    compute = 4 * arch.n_vocab  # one row of logits: Hearth asks for the last token only
    activations = n_ubatch * (arch.n_ff + arch.n_embd + arch.ssm_inner) * _ACT_PER_UNIT
    scores = 0
    if arch.attention_layers:
        # The mask: f16 for flash attention, f32 otherwise; sliding-window models have two.
        masks = 2 if arch.swa_layers else 1
        compute += masks * cells * n_ubatch * (2 if flash_attn else 4)
        if not flash_attn:
            # One layer's scores at a time (softmax in place), and ggml's f16 copy of them.
            scores = cells * n_ubatch * arch.n_head * (4 + 2)
    # ggml's allocator reuses the scores' memory for the feed-forward activations.
    compute += max(scores, activations)
    overhead = _FIXED + _VOCAB_PER_TOKEN * arch.n_vocab + _VOCAB_PER_MERGE * arch.n_merges
    overhead += _PER_GRAPH_NODE * arch.graph_nodes(n_ubatch)
    return MemoryEstimate(
        n_ctx=n_ctx,
        weights=arch.weights_bytes,
        kv_cache=int(kv),
        recurrent=recurrent,
        compute=int(compute),
        overhead=overhead,
        page_cache=arch.repacked_bytes if use_mmap else 0,
        vision=arch.vision_bytes,
    )


def estimate_for_options(arch: ModelArch, options: EngineOptions) -> MemoryEstimate:
    """The estimate for loading ``arch`` with Hearth's options (n_ctx clamped to training)."""
    n_ctx = min(options.n_ctx, arch.n_ctx_train)
    return estimate_memory(
        arch,
        n_ctx=n_ctx,
        n_ubatch=min(options.n_ubatch, n_ctx),
        kv_type=options.kv_cache_type,
        flash_attn=options.flash_attn,
        use_mmap=options.use_mmap,
        checkpoint_bytes=options.checkpoint_mib << 20,
    )


# -- fitting ---------------------------------------------------------------------------


def memory_budget(hw: HardwareInfo) -> int:
    """What a model may use on this machine when other programs behave: RAM minus the OS's share."""
    return hw.total_ram - max(_RESERVE_MIN, int(hw.total_ram * _RESERVE_FRACTION))


def check_fit(estimate: MemoryEstimate, hw: HardwareInfo, *, reclaimable: int = 0) -> FitCheck:
    """The badge for ``estimate`` on ``hw``.

    ``reclaimable``: memory that loading this model frees first (the model
    loaded now), which ``available_ram`` does not count as free.
    """
    need = estimate.total
    free_now = hw.available_ram + reclaimable
    budget = memory_budget(hw)
    if need <= budget and need <= free_now - _RESERVE_MIN // 2:
        return FitCheck(badge=FitBadge.FITS, estimate=estimate, warning=None)
    if need <= budget:
        return FitCheck(
            badge=FitBadge.TIGHT,
            estimate=estimate,
            warning=(
                f"This model needs about {format_bytes(need)} of memory and "
                f"{format_bytes(free_now)} is free right now: close other programs first, or "
                "it may make your computer slow."
            ),
        )
    return FitCheck(
        badge=FitBadge.TOO_LARGE,
        estimate=estimate,
        warning=(
            f"This model needs about {format_bytes(need)} of memory; this computer has "
            f"{format_bytes(hw.total_ram)} in all. It will probably fail to load or be very slow: "
            "pick a smaller quantization or a shorter context."
        ),
    )


def choose_context(
    arch: ModelArch,
    hw: HardwareInfo,
    *,
    wanted: int | None = None,
    options: EngineOptions | None = None,
    reclaimable: int = 0,
) -> int:
    """The largest context up to ``wanted`` (default: the options' n_ctx) that fits now.

    Clamped to the model's training length. Never below ``MIN_CONTEXT`` (or the
    training length, if smaller): a model that does not fit even then is the
    badge's business, not a reason to load it with a context too short to hold
    a conversation (llama-cpp-python's own default is 512).
    """
    options = options or EngineOptions()
    ceiling = max(min(wanted or options.n_ctx, arch.n_ctx_train), 256)
    floor = min(MIN_CONTEXT, ceiling)
    budget = min(memory_budget(hw), hw.available_ram + reclaimable - _RESERVE_MIN // 2)
    n_ctx = ceiling
    while n_ctx > floor:
        if estimate_for_options(arch, replace(options, n_ctx=n_ctx)).total <= budget:
            return n_ctx
        # Step down through powers of two (and the ceiling itself first).
        n_ctx = max(floor, 1 << (math.ceil(math.log2(n_ctx)) - 1))
    return floor
