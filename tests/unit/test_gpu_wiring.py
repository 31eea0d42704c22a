"""GPU offload wired into loading (issue 12): the device probe, the load plan, the
fallback when the GPU runs out of memory, the settings' "Automatic" default.

There is no GPU here (nor on CI), and this llama.cpp is a CPU build. What is
FAKED, and only that: the GPU itself — a RECORDED device table (the figures
ggml reports for such a GPU: ``ggml_backend_dev_*``) handed to the probe, and a
GPU that runs out of memory above a number of layers (it raises the error a real
CUDA load raises, with llama.cpp's real log lines). Everything else is real: the
probe of this process's llama.cpp, the planner, and every model load below is a
real llama.cpp load of the starter model on this CPU build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from app.backends import LoadRequest, open_local
from engine.errors import ModelLoadError
from engine.inference.devices import device_text, probe_devices
from engine.inference.local import LocalBackend
from engine.models.catalog import load_catalog
from engine.models.choice import load_options, plan_load
from engine.models.memory import GIB, MIB, HardwareInfo
from engine.models.offload import Backend, DeviceInfo, OffloadBadge
from engine.models.offload_retry import fallback_sentence
from engine.models.ranking import rank_quants
from engine.settings import Performance, Settings, engine_options
from engine.types import DeviceProbe, EngineOptions

NINE = [e for e in load_catalog() if e.family == "qwen3.5-9b"]
Q4 = next(e for e in NINE if e.quantization == "Q4_K_M")


def ram(total_gib: float, free_gib: float) -> HardwareInfo:
    return HardwareInfo(
        total_ram=int(total_gib * GIB), available_ram=int(free_gib * GIB),
        physical_cores=8, logical_cores=16, disk_free=None, gpu_offload=True,
    )  # fmt: skip


# -- the probe, on recorded device tables --------------------------------------------------


@dataclass
class RecordedGgml:
    """RECORDED, NOT REAL: ggml's device table as a CUDA/Metal build reports it."""

    devices: list[tuple[str, str, str, int, int, int]]  # reg, name, description, type, free, total
    regs: dict[str, int] = field(default_factory=dict)  # registry name -> device count

    def dev_count(self) -> int:
        return len(self.devices)

    def dev_get(self, i: int) -> int:
        return i

    def dev_name(self, i: int) -> bytes:
        return self.devices[i][1].encode()

    def dev_description(self, i: int) -> bytes:
        return self.devices[i][2].encode()

    def dev_type(self, i: int) -> int:
        return self.devices[i][3]

    def dev_memory(self, i: int, free: Any, total: Any) -> None:
        free._obj.value, total._obj.value = self.devices[i][4], self.devices[i][5]

    def dev_reg(self, i: int) -> str:
        return self.devices[i][0]

    def reg_count(self) -> int:
        return len(self.regs)

    def reg_get(self, i: int) -> str:
        return list(self.regs)[i]

    def reg_name(self, reg: str) -> bytes:
        return reg.encode()

    def reg_dev_count(self, reg: str) -> int:
        return self.regs[reg]


LAPTOP_4060 = RecordedGgml(
    devices=[
        ("CUDA", "CUDA0", "NVIDIA GeForce RTX 4060 Laptop GPU", 1, 7800 * MIB, 8188 * MIB),
        ("CPU", "CPU", "13th Gen Intel(R) Core(TM) i7-13700H", 0, 0, 0),
    ],
    regs={"CUDA": 1, "CPU": 1},
)
APPLE_M2 = RecordedGgml(
    devices=[("MTL", "MTL0", "Apple M2", 1, 11_453_251_584, 11_453_251_584)],
    regs={"MTL": 1, "BLAS": 1, "CPU": 1},
)
CUDA_WITHOUT_DRIVER = RecordedGgml(devices=[], regs={"CUDA": 0, "CPU": 1})


def test_this_cpu_build_has_no_gpu_and_names_its_cpu() -> None:
    probe = probe_devices()  # the real llama.cpp of this environment
    assert probe.gpus == () and not probe.can_offload and probe.note == ""
    assert probe.cpu in ("AVX-512", "AVX2", "AVX", "NEON", "SVE", "SSE3")
    assert device_text(None) == f"CPU · {probe.cpu}"


def test_a_recorded_laptop_gpu_is_read_with_its_memory(tmp_path: Path) -> None:
    probe = probe_devices(ggml=LAPTOP_4060, folders=[tmp_path])
    (gpu,) = probe.gpus
    assert (gpu.backend, gpu.name, gpu.integrated) == ("CUDA", "CUDA0", False)
    assert (gpu.free_memory, gpu.total_memory) == (7800 * MIB, 8188 * MIB)
    assert probe.can_offload and probe.note == ""
    device = DeviceInfo.from_probe(probe, ram(16, 11))
    assert device.backend is Backend.CUDA and device.name.startswith("NVIDIA")
    apple = DeviceInfo.from_probe(probe_devices(ggml=APPLE_M2, folders=[]), ram(16, 10))
    assert apple.backend is Backend.METAL and apple.unified


def test_a_gpu_backend_without_a_device_or_a_module_that_did_not_load_says_so(
    tmp_path: Path,
) -> None:
    probe = probe_devices(ggml=CUDA_WITHOUT_DRIVER, folders=[])
    assert probe.gpus == () and not probe.can_offload
    assert "CUDA" in probe.note and "driver" in probe.note and "CPU" in probe.note
    # A GGML_BACKEND_DL package: the Vulkan module is there, but nothing registered it.
    (tmp_path / "libggml-vulkan.so").write_bytes(b"")
    probe = probe_devices(ggml=RecordedGgml(devices=[], regs={"CPU": 1}), folders=[tmp_path])
    assert "Vulkan" in probe.note and not probe.can_offload


def test_device_text_is_what_the_status_bar_shows() -> None:
    assert device_text((33, 33)) == "GPU · 33/33 layers"
    assert device_text((0, 33), cpu="AVX2") == "CPU · AVX2"
    assert device_text(None, cpu="") == "CPU"


# -- the plan --------------------------------------------------------------------------------


def test_on_a_cpu_build_automatic_is_exactly_the_cpu_load_of_before() -> None:
    hw = ram(16, 11)
    before = load_options(
        EngineOptions(n_gpu_layers=0), automatic_context=True, arch=Q4.arch, hw=hw
    )
    auto = load_options(
        EngineOptions(n_gpu_layers=None), automatic_context=True, arch=Q4.arch, hw=hw
    )
    planned = plan_load(auto, arch=Q4.arch, device=DeviceInfo.cpu_only(hw))
    assert planned.options == replace(before, n_gpu_layers=0) and planned.plan is None
    assert planned.note == ""
    # 0 is the CPU, as set: nothing planned.
    assert plan_load(before, arch=Q4.arch, device=DeviceInfo.cpu_only(hw)).options is before


def test_automatic_plans_the_recorded_gpu() -> None:
    device = DeviceInfo.from_probe(probe_devices(ggml=LAPTOP_4060, folders=[]), ram(16, 11))
    planned = plan_load(EngineOptions(n_ctx=16384, n_gpu_layers=None), arch=Q4.arch, device=device)
    assert planned.plan is not None and planned.plan.badge is OffloadBadge.GPU
    # Qwen3.5-9B Q4_K_M at 16k on an 8 GB laptop GPU: all 33 layers (test_offload's table).
    assert (planned.options.n_gpu_layers, planned.options.offload_kqv) == (33, True)
    assert planned.options.n_ctx == 16384
    # "Automatic" context: the plan's (the wanted AUTO_CONTEXT where RAM holds it).
    auto = plan_load(
        EngineOptions(n_ctx=4096, n_gpu_layers=None),
        arch=Q4.arch,
        device=device,
        automatic_context=True,
    )
    assert auto.options.n_ctx == 16384
    # A count the person set is theirs; no GPU: the CPU, with a sentence.
    mine = plan_load(replace(auto.options, n_gpu_layers=7), arch=Q4.arch, device=device)
    assert mine.options.n_gpu_layers == 7 and mine.plan is None
    no_gpu = DeviceInfo.cpu_only(ram(16, 11))
    cpu = plan_load(EngineOptions(n_gpu_layers=-1), arch=Q4.arch, device=no_gpu)
    assert cpu.options.n_gpu_layers == 0 and "no GPU" in cpu.note and "CPU" in cpu.note


def test_old_bindings_without_memory_figures_offload_everything() -> None:
    planned = plan_load(
        EngineOptions(n_gpu_layers=None),
        arch=Q4.arch,
        device=DeviceInfo.cpu_only(ram(16, 11)),
        can_offload=True,
    )
    assert planned.options.n_gpu_layers == -1


# -- loading: the real CPU build, a recorded GPU ---------------------------------------------


def _request(path: Path, tmp_path: Path, layers: int | None) -> LoadRequest:
    return LoadRequest(
        path=str(path), options=EngineOptions(n_ctx=512, n_gpu_layers=layers), models_dir=tmp_path
    )


def test_automatic_on_this_cpu_build_loads_as_before(
    starter_model_path: Path, tmp_path: Path
) -> None:
    auto = open_local(_request(starter_model_path, tmp_path, None))
    try:
        info = auto.info
        assert info.extra["device"] == device_text(None)  # "CPU · AVX-512" here
        assert info.extra["gpu_layers"] == "0" and "device_note" not in info.extra
    finally:
        auto.close()
    cpu = open_local(_request(starter_model_path, tmp_path, 0))
    try:
        assert (cpu.info.n_ctx, cpu.info.extra["device"]) == (info.n_ctx, info.extra["device"])
    finally:
        cpu.close()


def test_gpu_layers_asked_of_a_build_that_cannot_offload_run_on_the_cpu_and_say_so(
    starter_model_path: Path, tmp_path: Path
) -> None:
    backend = open_local(_request(starter_model_path, tmp_path, 33))  # real probe: no GPU
    try:
        assert backend.info.extra["device"].startswith("CPU")
        note = backend.info.extra["device_note"]
        assert "GPU layers is set to 33" in note and "runs on the CPU" in note
    finally:
        backend.close()


# What a CUDA load that runs out of device memory leaves in llama.cpp's log (recorded).
CUDA_OOM = (
    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4458.39 MiB on device 0: "
    "cudaMalloc failed: out of memory | alloc_tensor_range: failed to allocate CUDA0 buffer "
    "of size 4674959360"
)


class GpuThatFillsUp:
    """FAKED: the GPU's memory. A load with more than ``room`` layers fails as a real
    CUDA load does; any other is a real load (on this CPU build)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.asked: list[int | None] = []

    def __call__(self, path: Path, options: EngineOptions, **kwargs: Any) -> LocalBackend:
        self.asked.append(options.n_gpu_layers)
        layers = options.n_gpu_layers or 0
        if layers < 0 or layers > self.room:
            raise ModelLoadError(
                f"{path.name} could not be loaded: the file is damaged or incomplete.",
                detail=f"{path}: failed to load model; llama.cpp said: {CUDA_OOM}",
            )
        return LocalBackend(path, options, **kwargs)


def _laptop_gpu() -> DeviceProbe:
    return probe_devices(ggml=LAPTOP_4060, folders=[])


def test_a_gpu_that_runs_out_of_memory_gets_fewer_layers_and_says_so(
    starter_model_path: Path, tmp_path: Path
) -> None:
    gpu = GpuThatFillsUp(room=20)
    backend = open_local(_request(starter_model_path, tmp_path, -1), probe=_laptop_gpu, load=gpu)
    try:
        # SmolLM2-135M: 30 blocks + the output layer. All, then 3/4 (23), then half (15).
        assert gpu.asked == [-1, 23, 15]
        assert backend.info.extra["device_note"] == fallback_sentence(
            asked=31, loaded=15, total_layers=31, device_name="NVIDIA GeForce RTX 4060 Laptop GPU"
        )
        assert "15 are on the GPU" in backend.info.extra["device_note"]
    finally:
        backend.close()


def test_a_gpu_with_no_room_at_all_falls_back_to_the_cpu(
    starter_model_path: Path, tmp_path: Path
) -> None:
    gpu = GpuThatFillsUp(room=0)
    backend = open_local(_request(starter_model_path, tmp_path, None), probe=_laptop_gpu, load=gpu)
    try:
        assert gpu.asked[0] == 31 and gpu.asked[-1] == 0  # planned: all 31 fit 7.8 GB
        note = backend.info.extra["device_note"]
        assert "ran out of memory with 31 of 31 layers" in note and "runs on the CPU" in note
        assert backend.info.extra["device"].startswith("CPU")  # what llama.cpp really did
    finally:
        backend.close()


def test_a_load_that_fails_for_another_reason_is_not_retried(
    starter_model_path: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(starter_model_path.read_bytes()[: 2 << 20])
    calls: list[int | None] = []

    def load(path: Path, options: EngineOptions, **kwargs: Any) -> LocalBackend:
        calls.append(options.n_gpu_layers)
        return LocalBackend(path, options, **kwargs)

    with pytest.raises(ModelLoadError):
        open_local(_request(broken, tmp_path, None), probe=_laptop_gpu, load=load)
    assert len(calls) == 1


# -- the settings ----------------------------------------------------------------------------


def test_gpu_layers_default_to_automatic_and_old_files_move_to_it(tmp_path: Path) -> None:
    assert Performance.GPU_LAYERS.default is None
    assert engine_options(Settings(tmp_path / "new.json")).n_gpu_layers is None
    old = tmp_path / "old.json"  # version 1 saved its default, 0, for everyone
    old.write_text(json.dumps({"version": 1, "values": {"performance.gpu_layers": 0}}))
    assert Settings(old)[Performance.GPU_LAYERS] is None
    chosen = tmp_path / "chosen.json"
    chosen.write_text(json.dumps({"version": 1, "values": {"performance.gpu_layers": 5}}))
    assert Settings(chosen)[Performance.GPU_LAYERS] == 5
    cpu = tmp_path / "cpu.json"  # saved by this version: 0 is a choice
    cpu.write_text(json.dumps({"version": 2, "values": {"performance.gpu_layers": 0}}))
    assert Settings(cpu)[Performance.GPU_LAYERS] == 0


# -- the Model page's figures ----------------------------------------------------------------


def test_rows_split_gpu_and_ram_and_auto_weighs_speed() -> None:
    device = DeviceInfo.from_probe(_laptop_gpu(), ram(16, 11))
    options = EngineOptions(n_ctx=16384)
    ranked = rank_quants(NINE, ram(16, 11), options=options, device=device, ram_bandwidth=50e9)
    rows = {r.entry.quantization: r for r in ranked}
    q4 = rows["Q4_K_M"]
    assert q4.plan is not None and q4.plan.badge is OffloadBadge.GPU and q4.plan.gpu_layers == 33
    assert q4.tokens_per_s is not None and q4.tokens_per_s > 8
    assert rows["Q8_0"].plan is not None and rows["Q8_0"].plan.badge is OffloadBadge.GPU_RAM
    (pick,) = [r for r in rows.values() if r.recommended]
    assert pick.reason.startswith(f"{pick.entry.quantization}: about ")
    # Without a measured bandwidth and a GPU: the memory-only pick of before.
    before = [r for r in rank_quants(NINE, ram(16, 11), options=options) if r.recommended]
    assert before[0].plan is None and before[0].tokens_per_s is None and before[0].reason == ""
