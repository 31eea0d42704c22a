"""The offload planner (engine.models.offload) on recorded machines.

There is no GPU here (nor on CI): every GPU below is RECORDED, NOT REAL — a
``DeviceInfo`` with the memory figures llama.cpp reports for such a device
(``ggml_backend_dev_memory``: total and free; on Apple Silicon, Metal's
recommended working-set size). Only the GPU is faked; the model shapes are the
catalog's real Qwen3.5-9B entries and the byte counts come from the real
estimator (engine.models.memory), whose CPU figures are checked against real
loads in test_memory.py.

The table's expectations were derived once from the planner's arithmetic,
checked by hand (a few rows are worked through in the tests below), and written
down: the test guards them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import pytest

from engine.gguf.header import arch_from_header, read_gguf_header
from engine.models.catalog import load_catalog
from engine.models.memory import (
    GIB,
    MIB,
    HardwareInfo,
    choose_context,
    estimate_for_options,
    estimate_memory,
)
from engine.models.offload import (
    Backend,
    DeviceInfo,
    KvPlace,
    OffloadBadge,
    device_margin,
    plan_offload,
    weight_split,
    weight_split_from_header,
)
from engine.models.offload_retry import fallback_sentence, is_out_of_device_memory, retry_ladder
from engine.types import EngineOptions

# The plans below were recorded for the text model alone: its vision file (issue 13,
# ~1.1 GB counted in ModelArch.vision_bytes) is left out here, and its share of the
# plan is tested in tests/unit/test_projector.py.
NINE = {
    e.quantization: dataclasses.replace(
        e, arch=dataclasses.replace(e.arch, vision_bytes=0) if e.arch else None
    )
    for e in load_catalog()
    if e.family == "qwen3.5-9b"
}
CONTEXTS = (4096, 16384, 65536)


def ram(total_gib: float, available_gib: float) -> HardwareInfo:
    return HardwareInfo(
        total_ram=int(total_gib * GIB), available_ram=int(available_gib * GIB),
        physical_cores=8, logical_cores=16, disk_free=None, gpu_offload=True,
    )  # fmt: skip


# Recorded, not real: what llama.cpp reports on such machines.
LAPTOP_RAM = ram(16, 11)  # a 16 GB laptop with a browser open
MACHINES = {
    "no GPU": DeviceInfo.cpu_only(LAPTOP_RAM),
    "4 GB laptop GPU": DeviceInfo(
        backend=Backend.CUDA, name="NVIDIA GeForce RTX 3050 Laptop GPU",
        total_memory=4095 * MIB, free_memory=3800 * MIB, bandwidth=192e9, ram=LAPTOP_RAM,
    ),
    "8 GB laptop GPU": DeviceInfo(
        backend=Backend.CUDA, name="NVIDIA GeForce RTX 4060 Laptop GPU",
        total_memory=8188 * MIB, free_memory=7800 * MIB, bandwidth=256e9, ram=LAPTOP_RAM,
    ),
    "24 GB desktop GPU": DeviceInfo(
        backend=Backend.CUDA, name="NVIDIA GeForce RTX 4090",
        total_memory=24564 * MIB, free_memory=23900 * MIB, bandwidth=1008e9, ram=ram(32, 26),
    ),
    # Metal's recommendedMaxWorkingSetSize: two thirds of 16 GB, three quarters of 36 GB.
    "16 GB Apple unified": DeviceInfo(
        backend=Backend.METAL, name="Apple M2", total_memory=11_453_251_584,
        free_memory=11_453_251_584, unified=True, bandwidth=100e9, ram=ram(16, 10),
    ),
    "36 GB Apple unified": DeviceInfo(
        backend=Backend.METAL, name="Apple M3 Pro", total_memory=28_991_029_248,
        free_memory=28_991_029_248, unified=True, bandwidth=150e9, ram=ram(36, 27),
    ),
}  # fmt: skip

# Per machine, per quantization, for 4k / 16k / 64k wanted: n_gpu_layers (of 33: 32
# blocks + the output layer), the context that fits, the badge (* = tight: fits only if
# other programs give memory back). Hearth's defaults: f16 KV, no flash attention.
EXPECTED = {
    "no GPU": """
        UD-Q2_K_XL  0  4096 cpu          0 16384 cpu          0 65536 cpu
        Q3_K_M      0  4096 cpu          0 16384 cpu          0 65536 cpu
        IQ4_XS      0  4096 cpu          0 16384 cpu          0 32768 cpu
        Q4_K_M      0  4096 cpu          0 16384 cpu          0 32768 cpu
        UD-Q4_K_XL  0  4096 cpu          0 16384 cpu          0 32768 cpu
        Q5_K_M      0  4096 cpu          0 16384 cpu          0 32768 cpu
        Q6_K        0  4096 cpu          0 16384 cpu          0 32768 cpu
        Q8_0        0  4096 cpu          0  8192 cpu          0  8192 cpu
        BF16        0  2048 too_large    0  2048 too_large    0  2048 too_large
    """,
    # Without flash attention a 64k context's attention scores take 3.3 GB of work
    # space: a 4 GB GPU then holds not one layer next to them (the two small quants),
    # while the bigger ones are cut to 32k by RAM first and so fit some layers.
    "4 GB laptop GPU": """
        UD-Q2_K_XL 29  4096 gpu_ram     21 16384 gpu_ram      0 65536 cpu
        Q3_K_M     25  4096 gpu_ram     18 16384 gpu_ram      0 65536 cpu
        IQ4_XS     23  4096 gpu_ram     16 16384 gpu_ram      9 32768 gpu_ram
        Q4_K_M     20  4096 gpu_ram     15 16384 gpu_ram      9 32768 gpu_ram
        UD-Q4_K_XL 19  4096 gpu_ram     14 16384 gpu_ram      8 32768 gpu_ram
        Q5_K_M     17  4096 gpu_ram     13 16384 gpu_ram      7 32768 gpu_ram
        Q6_K       15  4096 gpu_ram     11 16384 gpu_ram      6 32768 gpu_ram
        Q8_0       11  4096 gpu_ram      8 16384 gpu_ram      8 16384 gpu_ram
        BF16        4  2048 too_large    4  2048 too_large    4  2048 too_large
    """,
    # Q6_K at 16k and Q3_K_M at 64k: all 33 layers on the GPU, the KV cache in RAM.
    "8 GB laptop GPU": """
        UD-Q2_K_XL 33  4096 gpu         33 16384 gpu         22 65536 gpu_ram
        Q3_K_M     33  4096 gpu         33 16384 gpu         33 65536 gpu_ram
        IQ4_XS     33  4096 gpu         33 16384 gpu         19 65536 gpu_ram
        Q4_K_M     33  4096 gpu         33 16384 gpu         17 65536 gpu_ram
        UD-Q4_K_XL 33  4096 gpu         33 16384 gpu         17 65536 gpu_ram
        Q5_K_M     33  4096 gpu         33 16384 gpu         16 65536 gpu_ram
        Q6_K       33  4096 gpu         33 16384 gpu_ram     14 65536 gpu_ram
        Q8_0       27  4096 gpu_ram     23 16384 gpu_ram     19 32768 gpu_ram
        BF16       13  2048 gpu_ram*    13  2048 gpu_ram*    13  2048 gpu_ram*
    """,
    "24 GB desktop GPU": """
        UD-Q2_K_XL 33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q3_K_M     33  4096 gpu         33 16384 gpu         33 65536 gpu
        IQ4_XS     33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q4_K_M     33  4096 gpu         33 16384 gpu         33 65536 gpu
        UD-Q4_K_XL 33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q5_K_M     33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q6_K       33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q8_0       33  4096 gpu         33 16384 gpu         33 65536 gpu
        BF16       33  4096 gpu         33 16384 gpu         33 65536 gpu
    """,
    # One budget: 10 GB of the 16 are free, so contexts are cut by the RAM check,
    # never by Metal's 11.5 GB working set.
    "16 GB Apple unified": """
        UD-Q2_K_XL 33  4096 gpu         33 16384 gpu         33 32768 gpu
        Q3_K_M     33  4096 gpu         33 16384 gpu         33 32768 gpu
        IQ4_XS     33  4096 gpu         33 16384 gpu         33 32768 gpu
        Q4_K_M     33  4096 gpu         33 16384 gpu         33 32768 gpu
        UD-Q4_K_XL 33  4096 gpu         33 16384 gpu         33 32768 gpu
        Q5_K_M     33  4096 gpu         33 16384 gpu         33 16384 gpu
        Q6_K       33  4096 gpu         33 16384 gpu         33 16384 gpu
        Q8_0       33  2048 gpu*        33  2048 gpu*        33  2048 gpu*
        BF16       20  2048 too_large   20  2048 too_large   20  2048 too_large
    """,
    "36 GB Apple unified": """
        UD-Q2_K_XL 33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q3_K_M     33  4096 gpu         33 16384 gpu         33 65536 gpu
        IQ4_XS     33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q4_K_M     33  4096 gpu         33 16384 gpu         33 65536 gpu
        UD-Q4_K_XL 33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q5_K_M     33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q6_K       33  4096 gpu         33 16384 gpu         33 65536 gpu
        Q8_0       33  4096 gpu         33 16384 gpu         33 65536 gpu
        BF16       33  4096 gpu         33 16384 gpu         33 65536 gpu
    """,
}


def _cases() -> list[tuple[str, str, int, int, int, str, bool]]:
    cases = []
    for machine, table in EXPECTED.items():
        for line in table.strip().splitlines():
            quant, *cells = line.split()
            for i, wanted in enumerate(CONTEXTS):
                layers, ctx, badge = cells[3 * i : 3 * i + 3]
                cases.append(
                    (machine, quant, wanted, int(layers), int(ctx), badge.rstrip("*"),
                     badge.endswith("*"))
                )  # fmt: skip
    return cases


def test_the_table_covers_every_machine_quantization_and_context() -> None:
    assert len(_cases()) == len(MACHINES) * len(NINE) * len(CONTEXTS)
    assert {c[1] for c in _cases()} == set(NINE)


@pytest.mark.parametrize(
    ("machine", "quant", "wanted", "layers", "n_ctx", "badge", "tight"),
    _cases(),
    ids=[f"{c[0]}-{c[1]}-{c[2] // 1024}k" for c in _cases()],
)
def test_plans_on_recorded_machines(
    machine: str, quant: str, wanted: int, layers: int, n_ctx: int, badge: str, tight: bool
) -> None:
    arch = NINE[quant].arch
    assert arch is not None
    plan = plan_offload(arch, MACHINES[machine], n_ctx=wanted)
    assert (plan.gpu_layers, plan.n_ctx, plan.badge.value, plan.tight) == (
        layers, n_ctx, badge, tight
    )  # fmt: skip
    assert plan.total_layers == 33
    device = MACHINES[machine]
    if plan.badge is not OffloadBadge.TOO_LARGE and device.has_gpu:
        assert plan.device_bytes <= device.free_memory - device_margin(device.total_memory)


def test_without_a_gpu_the_plan_is_the_cpu_estimate_and_context_of_today() -> None:
    """A CPU-only machine behaves exactly as before: same bytes, same context."""
    device = MACHINES["no GPU"]
    for entry in NINE.values():
        assert entry.arch is not None
        for wanted in CONTEXTS:
            options = EngineOptions(n_ctx=wanted)
            plan = plan_offload(entry.arch, device, n_ctx=wanted)
            ctx = choose_context(entry.arch, device.ram, options=options)
            assert plan.n_ctx == ctx
            assert plan.host == estimate_for_options(entry.arch, replace(options, n_ctx=ctx))
            assert plan.device_bytes == 0 and plan.kv_place is KvPlace.RAM


def test_a_partial_offload_counts_the_hybrid_layers_it_moves() -> None:
    """Worked by hand: Q4_K_M, 16k, on the 4 GB GPU -> 15 layers: the output layer
    and blocks 18..31, of which 19, 23, 27 and 31 attend (4 of 8 KV caches) and the
    other 10 keep a recurrent state."""
    arch = NINE["Q4_K_M"].arch
    assert arch is not None
    plan = plan_offload(arch, MACHINES["4 GB laptop GPU"], n_ctx=16384)
    assert plan.gpu_layers == 15 and plan.kv_place is KvPlace.SPLIT
    full = estimate_memory(arch, n_ctx=16384, use_mmap=False, checkpoint_bytes=256 * MIB)
    state = 4 * arch.recurrent_floats  # one recurrent layer's state, f32
    assert plan.device.kv_cache == full.kv_cache // 2
    assert plan.device.recurrent == 10 * state
    assert plan.host.recurrent == full.recurrent - 10 * state  # 14 states + checkpoints
    split = weight_split(arch)
    assert plan.device.weights == split.output + sum(split.blocks[18:])
    assert plan.host.weights == split.input + sum(split.blocks[:18])
    assert plan.device.weights + plan.host.weights == arch.weights_bytes
    assert plan.device.compute == full.compute == plan.host.compute
    assert plan.sentence == (
        "15 of 33 layers on NVIDIA GeForce RTX 3050 Laptop GPU (3.7 GB), the rest in RAM "
        "(4.6 GB): slower than a model that fits the GPU."
    )


def test_a_full_offload_leaves_the_token_embedding_in_ram() -> None:
    """Worked by hand: Q4_K_M, 16k, on the 24 GB GPU: 5.03 GB of weights + 0.54 GB KV +
    0.05 GB state + 0.84 GB work space on the GPU; RAM keeps the 0.65 GB embedding,
    the checkpoints, the tokenizer and the logits."""
    arch = NINE["Q4_K_M"].arch
    assert arch is not None
    plan = plan_offload(arch, MACHINES["24 GB desktop GPU"], n_ctx=16384)
    assert (plan.badge, plan.kv_place, plan.kv_on_gpu) == (OffloadBadge.GPU, KvPlace.GPU, True)
    assert round(plan.device_bytes / 1e9, 2) == 6.46
    assert round(plan.ram_bytes / 1e9, 2) == 1.03
    assert plan.host.weights == weight_split(arch).input
    assert plan.host.kv_cache == 0
    assert plan.sentence == "All 33 layers on NVIDIA GeForce RTX 4090 (6.5 GB); 1.0 GB of RAM."


def test_the_kv_cache_goes_to_ram_when_that_keeps_every_layer_on_the_gpu() -> None:
    arch = NINE["Q6_K"].arch
    assert arch is not None
    plan = plan_offload(arch, MACHINES["8 GB laptop GPU"], n_ctx=16384)
    assert (plan.gpu_layers, plan.kv_on_gpu, plan.kv_place) == (33, False, KvPlace.RAM)
    assert plan.device.kv_cache == 0 and plan.host.kv_cache > 0
    assert plan.badge is OffloadBadge.GPU_RAM
    assert "their KV cache in RAM" in plan.sentence


def test_flash_attention_lets_a_long_context_fit_the_gpu() -> None:
    """Its work space does not grow with the context; without it 64k spills to RAM."""
    arch = NINE["Q4_K_M"].arch
    assert arch is not None
    gpu = MACHINES["8 GB laptop GPU"]
    plain = plan_offload(arch, gpu, n_ctx=65536)
    flash = plan_offload(arch, gpu, n_ctx=65536, flash_attn=True)
    assert (plain.gpu_layers, plain.badge) == (17, OffloadBadge.GPU_RAM)
    assert (flash.gpu_layers, flash.n_ctx, flash.badge) == (33, 65536, OffloadBadge.GPU)


def test_unified_memory_is_one_budget() -> None:
    arch = NINE["Q8_0"].arch
    assert arch is not None
    mac = MACHINES["16 GB Apple unified"]
    plan = plan_offload(arch, mac, n_ctx=16384)
    # The GPU part alone (8.7 GB) is under Metal's 11.5 GB, but with the RAM part the
    # model needs 10.2 GB of the 9.7 GB free: cut to the floor, and tight.
    assert plan.device_bytes < mac.free_memory
    assert (plan.n_ctx, plan.badge, plan.tight) == (2048, OffloadBadge.GPU, True)
    assert plan.sentence == (
        "All 33 layers on Apple M2's GPU: 10.2 GB of its memory. Context cut to 2,048 "
        "tokens to fit the memory. Close other programs first, or it may make your "
        "computer slow."
    )
    # The same GPU part on a discrete card with as much RAM free would not be cut.
    discrete = replace(mac, backend=Backend.CUDA, unified=False)
    assert plan_offload(arch, discrete, n_ctx=16384).n_ctx == 16384


def test_sentences_for_the_cpu_and_too_large() -> None:
    q3, bf16 = NINE["Q3_K_M"].arch, NINE["BF16"].arch
    assert q3 is not None and bf16 is not None
    assert plan_offload(q3, MACHINES["no GPU"], n_ctx=16384).sentence == (
        "Runs on the CPU (no GPU this build of llama.cpp can use): 6.5 GB of RAM."
    )
    assert plan_offload(q3, MACHINES["4 GB laptop GPU"], n_ctx=65536).sentence == (
        "Runs on the CPU: NVIDIA GeForce RTX 3050 Laptop GPU has 4.0 GB free, too little for "
        "one layer and the 3.4 GB of work space 65,536 tokens of context need. 10.6 GB of RAM."
    )
    assert plan_offload(bf16, MACHINES["no GPU"], n_ctx=4096).sentence == (
        "Too large for this computer: it needs about 18.5 GB even with 2,048 tokens of "
        "context, more than its memory can hold. Pick a smaller quantization."
    )
    assert OffloadBadge.GPU_RAM.label == "GPU + RAM"


def test_a_busy_gpu_gets_fewer_layers() -> None:
    """Free memory, not total, is what the plan fills (a game or a second model running)."""
    arch = NINE["Q4_K_M"].arch
    assert arch is not None
    gpu = MACHINES["8 GB laptop GPU"]
    busy = replace(gpu, free_memory=3 * GIB)
    assert plan_offload(arch, gpu, n_ctx=16384).gpu_layers == 33
    assert 0 < plan_offload(arch, busy, n_ctx=16384).gpu_layers < 33


# -- the weights by layer ----------------------------------------------------------------


def test_the_exact_split_of_the_starter_finds_its_tied_embedding(starter_model_path: Path) -> None:
    header = read_gguf_header(starter_model_path)
    arch = arch_from_header(header)
    exact = weight_split_from_header(header, arch.n_layer)
    assert exact.tied and len(exact.blocks) == 30
    # The file holds the embedding once; the GPU's output layer gets a copy of it.
    assert exact.input + sum(exact.blocks) + exact.output_in_ram() <= arch.weights_bytes
    assert arch.weights_bytes - (exact.input + sum(exact.blocks)) < 100_000  # the norms
    assert exact.output >= exact.input
    # Its embedding is Q8_0 in a Q4_1 file: the estimate, which takes every tensor at
    # the file's average bits, would put 10 MB too few in it. Hence the exact split
    # for a downloaded file.
    assert exact.input == 30_081_024
    assert weight_split(arch, tied=True).input < exact.input


def test_the_exact_split_of_a_hybrid(qwen35_model_path: Path) -> None:
    header = read_gguf_header(qwen35_model_path)
    arch = arch_from_header(header)
    exact = weight_split_from_header(header, arch.n_layer)
    assert len(exact.blocks) == arch.n_layer
    assert exact.input + sum(exact.blocks) + exact.output_in_ram() == arch.weights_bytes
    device = MACHINES["8 GB laptop GPU"]
    plan = plan_offload(arch, device, n_ctx=4096, split=exact)
    assert plan.badge is OffloadBadge.GPU and plan.gpu_layers == arch.n_layer + 1
    assert plan.host.weights == exact.input


# -- when the load fails anyway ------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "total", "ladder"),
    [
        (33, 33, (24, 16, 8, 0)),
        (-1, 33, (24, 16, 8, 0)),
        (15, 33, (11, 7, 3, 0)),
        (3, 33, (2, 1, 0)),
        (1, 33, (0,)),
        (0, 33, ()),
    ],
)
def test_the_retry_ladder_steps_down_to_the_cpu(
    asked: int, total: int, ladder: tuple[int, ...]
) -> None:
    assert retry_ladder(asked, total) == ladder


@pytest.mark.parametrize(
    ("log", "oom"),
    [
        ("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 5120.00 MiB on device 0: "
         "cudaMalloc failed: out of memory", True),
        ("alloc_tensor_range: failed to allocate CUDA0 buffer of size 5368709120", True),
        ("ggml_vulkan: Device memory allocation of size 4294967296 failed.\n"
         "ggml_vulkan: vk::Device::allocateMemory: ErrorOutOfDeviceMemory", True),
        ("ggml_metal_buffer_init: error: failed to allocate buffer, size = 9000.00 MiB", True),
        ("llama_model_load: error loading model: tensor 'blk.0.attn_q.weight' data is not "
         "within the file bounds, model is corrupted or incomplete", False),
        ("load_tensors: offloaded 33/33 layers to GPU", False),
    ],
)  # fmt: skip
def test_recognizes_device_memory_failures_in_llama_cpp_logs(log: str, oom: bool) -> None:
    assert is_out_of_device_memory(log) is oom


def test_fallback_sentences_say_what_was_done() -> None:
    assert fallback_sentence(asked=33, loaded=16, total_layers=33, device_name="RTX 4060") == (
        "RTX 4060 ran out of memory with 33 of 33 layers, so 16 are on the GPU and the rest "
        "in RAM (slower). Close programs that use the GPU, then load it again."
    )
    assert fallback_sentence(asked=8, loaded=0, total_layers=33) == (
        "the GPU ran out of memory with 8 of 33 layers, so the model runs on the CPU "
        "(slower). Close programs that use the GPU, then load it again."
    )
