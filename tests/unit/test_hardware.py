"""The hardware probe (engine.models.hardware), checked against what the OS reports directly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import llama_cpp

from engine.models.hardware import fit_for_file, free_disk, gpu_offload_supported, probe
from engine.models.memory import GIB, FitBadge, HardwareInfo
from engine.types import EngineOptions


def meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_probe_reports_this_machine(tmp_path: Path) -> None:
    hw = probe(tmp_path)
    assert hw.total_ram == meminfo_total()
    assert 0 < hw.available_ram <= hw.total_ram
    assert 1 <= hw.physical_cores <= hw.logical_cores == os.cpu_count()
    assert hw.disk_free is not None
    # Other processes write to this disk meanwhile: equal within 100 MB.
    assert abs(hw.disk_free - shutil.disk_usage(tmp_path).free) < 100_000_000


def test_free_disk_of_a_folder_not_created_yet(tmp_path: Path) -> None:
    later = tmp_path / "not" / "yet" / "models"
    free = free_disk(later)
    assert free is not None
    assert abs(free - shutil.disk_usage(tmp_path).free) < 100_000_000
    assert not later.exists()  # probing does not create it
    assert probe().disk_free is None  # no folder asked about


def test_gpu_offload_is_what_this_llama_cpp_build_says() -> None:
    # The bundled build is CPU-only; a CUDA/Metal/Vulkan build would say True.
    assert gpu_offload_supported() is bool(llama_cpp.llama_supports_gpu_offload())
    assert probe().gpu_offload is gpu_offload_supported()


def test_fit_for_file_reads_the_header_and_probes_the_machine(starter_model_path: Path) -> None:
    here = fit_for_file(starter_model_path, EngineOptions(n_ctx=4096))
    assert here.badge is FitBadge.FITS and here.warning is None
    assert here.estimate.n_ctx == 4096
    assert 150 << 20 < here.estimate.total < 400 << 20
    small = HardwareInfo(
        total_ram=GIB // 4, available_ram=GIB // 8, physical_cores=1, logical_cores=1,
        disk_free=None, gpu_offload=False,
    )  # fmt: skip
    tiny = fit_for_file(starter_model_path, EngineOptions(n_ctx=4096), hw=small)
    assert tiny.badge is FitBadge.TOO_LARGE and tiny.warning is not None
