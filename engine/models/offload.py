"""Where a model's layers go: the GPU, RAM, or both, and the context that fits.

``plan_offload(arch, device, n_ctx=...)`` answers, from numbers alone (no
llama.cpp), what a load with ``n_gpu_layers`` would put where:

- **Layers.** llama.cpp counts ``n_layer + 1`` layers: the repeating blocks
  and the output layer (norm + the vocabulary-wide output matrix). It
  offloads from the end: ``n_gpu_layers = 1`` is the output layer alone,
  ``k`` adds the last ``k - 1`` blocks. The token embedding always stays in
  RAM (llama-model.cpp: "there is very little benefit to offloading the input
  layer"). A tied embedding is duplicated onto the GPU for the output layer.
- **KV cache and recurrent state** live with their layer (``offload_kqv``).
  Hybrid models are counted layer by layer: Qwen3.5's attention layers (every
  4th) hold a KV cache that grows with context, its Gated DeltaNet layers a
  small fixed state. Where all the weights fit the GPU but their KV cache does
  not, keeping the whole cache in RAM (``offload_kqv=False``) is chosen when it
  leaves fewer bytes in RAM than dropping layers would.
- **Compute buffers** are allocated on the GPU as soon as one layer is there;
  the CPU keeps one too unless everything is offloaded.
- **Checkpoints** of the recurrent state (engine.inference.checkpoints) are
  host copies: RAM. So are the tokenizer and graph tables (``overhead``).
- **Apple unified memory** is one budget: GPU and CPU parts together must fit
  the RAM check, and the GPU part Metal's working-set limit (what llama.cpp
  reports as the device's memory).

Each byte count reuses ``engine.models.memory.estimate_memory`` for the whole
model and splits it; with no layer offloaded the RAM side *is* that estimate,
so a CPU-only machine gets exactly the CPU fit it had. The RAM side is judged
by ``check_fit`` (the same reserve for the OS, the same "close other programs"
case).

The wanted context is kept where RAM allows: a GPU too small for it gets fewer
layers, not a shorter context. Only when RAM cannot hold the plan is the
context stepped down (as ``choose_context`` does), never below ``MIN_CONTEXT``.

A load can still fail for lack of device memory (other programs, driver
overhead): ``retry_ladder`` gives the layer counts to try next and
``fallback_sentence`` says what was done.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from enum import StrEnum

from engine.gguf.arch import ModelArch
from engine.gguf.header import GGUFHeader, TensorInfo
from engine.models.memory import (
    GIB,
    MIB,
    MIN_CONTEXT,
    FitBadge,
    HardwareInfo,
    MemoryEstimate,
    check_fit,
    estimate_memory,
)
from engine.types import DeviceProbe
from engine.units import format_bytes as _gb

__all__ = [
    "ASSUMED_GPU_BANDWIDTH",
    "Backend",
    "DeviceInfo",
    "KvPlace",
    "OffloadBadge",
    "OffloadPlan",
    "WeightSplit",
    "device_margin",
    "plan_offload",
    "weight_split",
    "weight_split_from_header",
]

# Bytes/s assumed for a discrete GPU's memory until one is measured: entry laptop GPUs
# read 112-192 GB/s (Arc A370M, RTX 3050/4050 Laptop), everything above them more.
ASSUMED_GPU_BANDWIDTH = 150e9
# qwen3next/qwen35: the query projection also yields the output gate (twice as wide).
_GATED_Q = {"qwen3next", "qwen35", "qwen35moe"}


class Backend(StrEnum):
    """The llama.cpp backend a device belongs to. # NOTE: may be stored (device records)."""

    NONE = "none"
    CUDA = "cuda"
    METAL = "metal"
    VULKAN = "vulkan"
    ROCM = "rocm"
    OTHER = "other"  # SYCL, MUSA, CANN...: planned the same way

    @classmethod
    def of(cls, registry: str) -> Backend:
        """The backend a ggml registry name means ("CUDA", "Metal", "ROCm", ...)."""
        name = registry.lower()
        known = {"cuda": cls.CUDA, "metal": cls.METAL, "mtl": cls.METAL, "vulkan": cls.VULKAN}
        if name in ("rocm", "hip"):
            return cls.ROCM
        return known.get(name, cls.OTHER)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """The accelerator as recorded (ggml_backend_dev_memory, names), and the RAM beside it."""

    backend: Backend
    ram: HardwareInfo
    name: str = ""
    total_memory: int = 0  # bytes; Metal: its recommended working-set size
    free_memory: int = 0  # bytes free when recorded
    unified: bool = False  # Apple Silicon: the GPU's memory is the RAM
    bandwidth: float = 0.0  # bytes/s of the device's memory; 0: not known

    @property
    def has_gpu(self) -> bool:
        return self.backend is not Backend.NONE and self.total_memory > 0

    @classmethod
    def cpu_only(cls, ram: HardwareInfo) -> DeviceInfo:
        return cls(backend=Backend.NONE, ram=ram)

    @classmethod
    def from_probe(cls, probe: DeviceProbe | None, ram: HardwareInfo) -> DeviceInfo:
        """What engine.inference.devices found (None: not asked yet: the CPU)."""
        gpu = probe.gpu if probe is not None else None
        if gpu is None:
            return cls.cpu_only(ram)
        return cls(
            backend=Backend.of(gpu.backend),
            ram=ram,
            name=gpu.description or gpu.name,
            total_memory=gpu.total_memory,
            free_memory=gpu.free_memory,
            unified=gpu.integrated,
            # ggml does not say how fast a device's memory is: an integrated GPU reads the
            # RAM (0: as fast as the RAM); a discrete one gets a low figure for its kind.
            bandwidth=0.0 if gpu.integrated else ASSUMED_GPU_BANDWIDTH,
        )


class OffloadBadge(StrEnum):
    """How a plan runs. # NOTE: shown and may be stored by the UI; keep values."""

    GPU = "gpu"  # fits on the GPU
    GPU_RAM = "gpu_ram"  # GPU + RAM
    CPU = "cpu"  # CPU only
    TOO_LARGE = "too_large"

    @property
    def label(self) -> str:
        return _BADGE_LABELS[self]


_BADGE_LABELS = {
    OffloadBadge.GPU: "fits on the GPU",
    OffloadBadge.GPU_RAM: "GPU + RAM",
    OffloadBadge.CPU: "CPU only",
    OffloadBadge.TOO_LARGE: "too large",
}


class KvPlace(StrEnum):
    GPU = "gpu"
    RAM = "ram"
    SPLIT = "split"  # each attention layer's cache sits with its layer
    NONE = "none"  # a model without attention layers (all recurrent)


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightSplit:
    """The weights' bytes by llama.cpp layer."""

    input: int  # token embedding: always in RAM, one row read per token
    blocks: tuple[int, ...]  # each repeating layer
    output: int  # output norm + matrix (a tied embedding's GPU copy when offloaded)
    tied: bool = False  # the output reuses the token embedding (no second copy in the file)

    def output_in_ram(self) -> int:
        """The output layer's bytes when it stays in RAM (a tied one is the input again)."""
        return 0 if self.tied else self.output


def _block_params(arch: ModelArch) -> tuple[int, int]:
    """Parameters of one attention block and one recurrent block (estimates)."""
    e = arch.n_embd
    ffn = 3 * e * arch.n_ff
    q = arch.n_head * arch.head_dim_k * (2 if arch.architecture in _GATED_Q else 1)
    kv = arch.n_head_kv * (arch.head_dim_k + arch.head_dim_v)
    attention = e * (q + kv) + arch.n_head * arch.head_dim_v * e + ffn
    # Gated DeltaNet / Mamba-2: in-projections about twice the inner width, a gate and
    # an out-projection of the inner width each.
    recurrent = 4 * e * arch.ssm_inner + ffn
    return attention, recurrent


def _attention_flags(arch: ModelArch) -> list[bool]:
    """Which blocks attend. Hybrids interleave evenly (Qwen3.5: blocks 3, 7, ..., 31)."""
    n, a = arch.n_layer, arch.attention_layers
    if a >= n:
        return [True] * n
    if a <= 0:
        return [False] * n
    every = n / a
    return [math.floor((i + 1) / every) > math.floor(i / every) for i in range(n)]


def weight_split(arch: ModelArch, *, tied: bool = False) -> WeightSplit:
    """The weights by layer, estimated from the shapes (before a download).

    Every tensor is taken at the file's average bytes per parameter (a Q4_K_M
    file keeps its output matrix at Q6_K: about 0.2 GB more on the GPU's side
    for Qwen3.5-9B than counted here). ``tied``: the model reuses its token
    embedding as the output matrix (SmolLM2); Qwen3.5-9B does not.
    """
    flags = _attention_flags(arch)
    att, rec = _block_params(arch)
    recurrent = arch.recurrent_layers > 0
    per_block = [att if a or not recurrent else rec for a in flags]
    embd = arch.n_vocab * arch.n_embd
    params = sum(per_block) + embd * (1 if tied else 2)
    per_param = arch.weights_bytes / params
    embd_bytes = round(embd * per_param)
    rest = arch.weights_bytes - embd_bytes * (1 if tied else 2)
    total_blocks = sum(per_block)
    blocks = [rest * p // total_blocks for p in per_block]
    blocks[-1] += rest - sum(blocks)  # the rounding, so that the parts add up to the file
    return WeightSplit(input=embd_bytes, blocks=tuple(blocks), output=embd_bytes, tied=tied)


def weight_split_from_header(header: GGUFHeader, n_layer: int) -> WeightSplit:
    """The weights by layer, exactly, from a GGUF file's tensor table."""
    blocks: list[list[TensorInfo]] = [[] for _ in range(n_layer)]
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    layer = re.compile(r"^blk\.(\d+)\.")
    for t in header.tensors:
        if m := layer.match(t.name):
            if int(m[1]) < n_layer:  # later blocks: multi-token prediction, not loaded
                blocks[int(m[1])].append(t)
        elif t.name == "token_embd.weight":
            inputs.append(t)
        else:
            outputs.append(t)

    def size(tensors: list[TensorInfo]) -> int:
        return GGUFHeader(version=header.version, tensors=tensors).weights_bytes()

    tied = not any(t.name == "output.weight" for t in header.tensors)
    input_bytes = size(inputs)
    return WeightSplit(
        input=input_bytes,
        blocks=tuple(size(b) for b in blocks),
        output=size(outputs) + (input_bytes if tied else 0),
        tied=tied,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadPlan:
    """What a load puts where, and how the Model page and the status bar say it."""

    gpu_layers: int  # n_gpu_layers for llama.cpp
    total_layers: int  # n_layer + 1: llama.cpp counts the output layer
    kv_on_gpu: bool  # offload_kqv
    n_ctx: int
    device: MemoryEstimate  # bytes on the GPU (all zero without one)
    host: MemoryEstimate  # bytes in RAM (Apple: the part the CPU holds)
    badge: OffloadBadge
    tight: bool  # fits only if other programs give memory back
    sentence: str
    split: WeightSplit
    kv_place: KvPlace

    @property
    def device_bytes(self) -> int:
        return self.device.total

    @property
    def ram_bytes(self) -> int:
        return self.host.total


def device_margin(total_memory: int) -> int:
    """What to leave free on a GPU: drivers, the display, fragmentation (256 MiB to 1 GiB).

    llama.cpp's own ``--fit`` leaves 1 GiB; that is a quarter of a 4 GB laptop GPU,
    so small devices keep a sixteenth.
    """
    return min(GIB, max(256 * MIB, total_memory // 16))


def _contexts(wanted: int, floor: int) -> list[int]:
    """The wanted context, then powers of two down to ``floor`` (as choose_context steps)."""
    out = [wanted]
    while out[-1] > floor:
        out.append(max(floor, 1 << (math.ceil(math.log2(out[-1])) - 1)))
    return out


@dataclass(frozen=True, slots=True)
class _Layout:
    gpu_layers: int
    kv_on_gpu: bool
    device: MemoryEstimate
    host: MemoryEstimate


def _layout(
    arch: ModelArch,
    est: MemoryEstimate,
    split: WeightSplit,
    flags: list[bool],
    *,
    gpu_layers: int,
    kv_on_gpu: bool,
    n_ubatch: int,
) -> _Layout:
    n = arch.n_layer
    if gpu_layers <= 0:
        zero = MemoryEstimate(
            n_ctx=est.n_ctx, weights=0, kv_cache=0, recurrent=0, compute=0, overhead=0
        )
        return _Layout(0, kv_on_gpu, zero, est)
    on_gpu = range(n - min(gpu_layers - 1, n), n)
    att_on = sum(1 for i in on_gpu if flags[i])
    rec_on = sum(1 for i in on_gpu if not flags[i]) if arch.recurrent_layers else 0
    live_state = 4 * arch.recurrent_layers * arch.recurrent_floats
    kv_per_layer = est.kv_cache / arch.attention_layers if arch.attention_layers else 0.0
    state_per_layer = live_state / arch.recurrent_layers if arch.recurrent_layers else 0.0
    dev_weights = split.output + sum(split.blocks[i] for i in on_gpu)
    dev_kv = int(att_on * kv_per_layer) if kv_on_gpu else 0
    dev_state = int(rec_on * state_per_layer)
    everything = gpu_layers > n and kv_on_gpu
    # Fully offloaded, the CPU computes only the embedding lookup and keeps the logits.
    host_compute = 4 * arch.n_vocab + 4 * n_ubatch * arch.n_embd if everything else est.compute
    device = MemoryEstimate(
        n_ctx=est.n_ctx,
        weights=dev_weights,
        kv_cache=dev_kv,
        recurrent=dev_state,
        compute=est.compute,
        overhead=0,
    )
    ram_weights = split.input + sum(split.blocks[i] for i in range(n) if i not in on_gpu)
    host = MemoryEstimate(
        n_ctx=est.n_ctx,
        weights=ram_weights,
        kv_cache=est.kv_cache - dev_kv,
        recurrent=est.recurrent - dev_state,  # the rest of the live state, and the checkpoints
        compute=host_compute,
        overhead=est.overhead,
    )
    return _Layout(gpu_layers, kv_on_gpu, device, host)


def plan_offload(
    arch: ModelArch,
    device: DeviceInfo,
    *,
    n_ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = False,
    n_ubatch: int = 512,
    checkpoint_mib: int = 256,
    split: WeightSplit | None = None,
    reclaimable: int = 0,
) -> OffloadPlan:
    """The plan for loading ``arch`` on ``device`` with (up to) ``n_ctx`` tokens of context.

    ``split``: the weights by layer, exact from a downloaded file's header
    (``weight_split_from_header``); estimated from the shapes otherwise.
    ``reclaimable``: RAM that loading this model frees first (the model loaded now).
    """
    split = split or weight_split(arch)
    flags = _attention_flags(arch)
    total_layers = arch.n_layer + 1
    wanted = max(min(n_ctx, arch.n_ctx_train), 256)
    checkpoint_bytes = checkpoint_mib * MIB
    budget = device.free_memory - device_margin(device.total_memory) if device.has_gpu else 0

    def best_at(ctx: int) -> _Layout:
        est = estimate_memory(
            arch,
            n_ctx=ctx,
            n_ubatch=min(n_ubatch, ctx),
            kv_type=kv_type,
            flash_attn=flash_attn,
            use_mmap=False,
            checkpoint_bytes=checkpoint_bytes,
        )

        def layout(k: int, kv_on_gpu: bool = True) -> _Layout:
            return _layout(
                arch,
                est,
                split,
                flags,
                gpu_layers=k,
                kv_on_gpu=kv_on_gpu,
                n_ubatch=min(n_ubatch, ctx),
            )

        if budget <= 0:
            return layout(0)
        # The most layers whose weights, KV cache and compute buffer fit the device
        # (what the device needs only grows with the layer count).
        best = layout(0)
        for k in range(total_layers, 0, -1):
            if (lay := layout(k)).device.total <= budget:
                best = lay
                break
        if best.gpu_layers < total_layers and arch.attention_layers:
            # Every layer's weights on the GPU with the KV cache in RAM (offload_kqv off):
            # taken when that leaves fewer bytes in RAM to read per token than the layers
            # that would otherwise stay there. Partial layouts keep llama.cpp's default.
            alt = layout(total_layers, kv_on_gpu=False)
            if alt.device.total <= budget and _ram_read(alt) < _ram_read(best):
                best = alt
        return best

    def ram_check(lay: _Layout) -> FitBadge:
        # Unified memory: the GPU's part is RAM too.
        need = lay.host
        if device.unified:
            need = replace(
                lay.host,
                weights=lay.host.weights + lay.device.weights,
                kv_cache=lay.host.kv_cache + lay.device.kv_cache,
                recurrent=lay.host.recurrent + lay.device.recurrent,
                compute=lay.host.compute + lay.device.compute,
            )
        return check_fit(need, device.ram, reclaimable=reclaimable).badge

    floor = min(MIN_CONTEXT, wanted)
    chosen: _Layout | None = None
    for ctx in _contexts(wanted, floor):
        lay = best_at(ctx)
        if ram_check(lay) is FitBadge.FITS:
            chosen, ram_badge = lay, FitBadge.FITS
            break
    if chosen is None:  # nothing fits now: the floor, and say whether closing programs helps
        chosen = best_at(floor)
        ram_badge = ram_check(chosen)
    return _plan(
        arch,
        device,
        chosen,
        split,
        wanted=wanted,
        ram_badge=ram_badge,
        total_layers=total_layers,
        flags=flags,
    )


def _ram_read(lay: _Layout) -> int:
    """Bytes a token reads from RAM in this layout, at a full cache (for comparing layouts)."""
    return lay.host.weights + lay.host.kv_cache


def _plan(
    arch: ModelArch,
    device: DeviceInfo,
    lay: _Layout,
    split: WeightSplit,
    *,
    wanted: int,
    ram_badge: FitBadge,
    total_layers: int,
    flags: list[bool],
) -> OffloadPlan:
    k = lay.gpu_layers
    n_ctx = lay.device.n_ctx
    on_gpu_att = sum(
        1 for i in range(arch.n_layer - min(max(k - 1, 0), arch.n_layer), arch.n_layer) if flags[i]
    )
    if not arch.attention_layers:
        kv_place = KvPlace.NONE
    elif k == 0 or not lay.kv_on_gpu or on_gpu_att == 0:
        kv_place = KvPlace.RAM
    elif on_gpu_att == arch.attention_layers:
        kv_place = KvPlace.GPU
    else:
        kv_place = KvPlace.SPLIT
    gpu_name = device.name or "the GPU"
    if ram_badge is FitBadge.TOO_LARGE:
        badge = OffloadBadge.TOO_LARGE
        total = lay.host.total + lay.device.total
        where = "memory" if device.unified or k == 0 else "RAM"
        sentence = (
            f"Too large for this computer: it needs about {_gb(total)} even with "
            f"{n_ctx:,} tokens of context, more than its {where} can hold. "
            "Pick a smaller quantization."
        )
    elif k == 0:
        badge = OffloadBadge.CPU
        if device.has_gpu:
            sentence = (
                f"Runs on the CPU: {gpu_name} has {_gb(device.free_memory)} free, too little "
                f"for one layer and the {_gb(lay.host.compute)} of work space {n_ctx:,} tokens "
                f"of context need. {_gb(lay.host.total)} of RAM."
            )
        else:
            sentence = (
                f"Runs on the CPU (no GPU this build of llama.cpp can use): "
                f"{_gb(lay.host.total)} of RAM."
            )
    elif device.unified:
        badge = OffloadBadge.GPU if k == total_layers else OffloadBadge.GPU_RAM
        both = _gb(lay.device.total + lay.host.total)
        if k == total_layers:
            sentence = f"All {total_layers} layers on {gpu_name}'s GPU: {both} of its memory."
        else:
            sentence = (
                f"{k} of {total_layers} layers on {gpu_name}'s GPU, the rest on its CPU "
                f"(the GPU may use {_gb(device.total_memory)}): {both} of memory in all."
            )
    elif k == total_layers and lay.kv_on_gpu:
        badge = OffloadBadge.GPU
        sentence = (
            f"All {total_layers} layers on {gpu_name} ({_gb(lay.device.total)}); "
            f"{_gb(lay.host.total)} of RAM."
        )
    elif k == total_layers:
        badge = OffloadBadge.GPU_RAM
        sentence = (
            f"All {total_layers} layers on {gpu_name} ({_gb(lay.device.total)}), their "
            f"KV cache in RAM ({_gb(lay.host.total)} in all): a little slower than a full fit."
        )
    else:
        badge = OffloadBadge.GPU_RAM
        sentence = (
            f"{k} of {total_layers} layers on {gpu_name} ({_gb(lay.device.total)}), "
            f"the rest in RAM ({_gb(lay.host.total)}): slower than a model that fits the GPU."
        )
    if n_ctx < wanted and badge is not OffloadBadge.TOO_LARGE:
        sentence += f" Context cut to {n_ctx:,} tokens to fit the memory."
    tight = ram_badge is FitBadge.TIGHT
    if tight:
        sentence += " Close other programs first, or it may make your computer slow."
    return OffloadPlan(
        gpu_layers=k,
        total_layers=total_layers,
        kv_on_gpu=lay.kv_on_gpu,
        n_ctx=n_ctx,
        device=lay.device,
        host=lay.host,
        badge=badge,
        tight=tight,
        sentence=sentence,
        split=split,
        kv_place=kv_place,
    )
