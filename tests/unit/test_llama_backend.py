"""The set-up command's choice of llama.cpp backend (packaging/llama_backend.py).

The machines are RECORDED, NOT REAL: what ``uname``, ``nvidia-smi -L``,
``vulkaninfo --summary`` and ``rocminfo`` print on such computers, and where
their compilers are. Only ``probe()`` reads this machine, and its test checks
the shape of what it found, not what this machine has.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    # packaging/ is a folder of scripts (and "packaging" is also PyPI's package name).
    if "llama_backend" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "llama_backend", ROOT / "packaging" / "llama_backend.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["llama_backend"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["llama_backend"]


lb = _load()
Machine = lb.Machine

NVIDIA_SMI = (
    "GPU 0: NVIDIA GeForce RTX 4060 Laptop GPU (UUID: GPU-5c1e0b6a-2f0e-7d7e-8a51-0c8f2a9e4d11)\n"
)
NVIDIA_NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
    "that the latest NVIDIA driver is installed and running.\n"
)
ROCMINFO = """*******
Agent 1
*******
  Name:                    AMD Ryzen 9 7950X 16-Core Processor
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    gfx1100
  Marketing Name:          AMD Radeon RX 7900 XTX
  Device Type:             GPU
"""
VULKAN_ARC = """Devices:
========
GPU0:
	apiVersion         = 1.3.289
	deviceType         = PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
	deviceName         = Intel(R) Arc(tm) A770 Graphics (DG2)
GPU1:
	apiVersion         = 1.3.289
	deviceType         = PHYSICAL_DEVICE_TYPE_CPU
	deviceName         = llvmpipe (LLVM 15.0.6, 256 bits)
"""
VULKAN_LLVMPIPE_ONLY = """Devices:
========
GPU0:
	deviceType         = PHYSICAL_DEVICE_TYPE_CPU
	deviceName         = llvmpipe (LLVM 15.0.6, 256 bits)
"""

LINUX = Machine(system="Linux", arch="x86_64")
CUDA_LAPTOP = replace(LINUX, nvidia_smi=NVIDIA_SMI, nvcc="/usr/bin/nvcc")
MAC_M2 = Machine(system="Darwin", arch="arm64")


def test_a_plain_linux_machine_gets_pips_default_build() -> None:
    """No GPU anywhere: the CPU, with no CMAKE_ARGS: exactly what the set-up built before."""
    choice = lb.choose(replace(LINUX, vulkaninfo=VULKAN_LLVMPIPE_ONLY))
    assert choice == lb.Choice("cpu", "")


def test_apple_silicon_builds_metal() -> None:
    assert lb.choose(MAC_M2) == lb.Choice("metal", "-DGGML_METAL=on")


def test_an_intel_mac_builds_for_the_cpu_unless_asked() -> None:
    intel = Machine(system="Darwin", arch="x86_64")
    choice = lb.choose(intel)
    assert (choice.backend, choice.cmake_args) == ("cpu", "-DGGML_METAL=off")
    assert choice.note == (
        "An Intel Mac: llama.cpp is built for the CPU (HEARTH_LLAMA_BACKEND=metal builds Metal)."
    )
    asked = lb.choose(replace(intel, env={"HEARTH_LLAMA_BACKEND": "metal"}))
    assert (asked.backend, asked.cmake_args) == ("metal", "-DGGML_METAL=on")


def test_an_nvidia_gpu_with_its_toolkit_builds_cuda_for_that_gpu() -> None:
    choice = lb.choose(CUDA_LAPTOP)
    assert choice.backend == "cuda" and not choice.error
    assert choice.cmake_args == "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native"
    assert choice.note == "Building llama.cpp with CUDA for NVIDIA GeForce RTX 4060 Laptop GPU."


def test_an_nvcc_off_the_path_is_named_to_cmake() -> None:
    machine = replace(CUDA_LAPTOP, nvcc="/usr/local/cuda/bin/nvcc", nvcc_on_path=False)
    assert lb.choose(machine).cmake_args == (
        "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native "
        "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc"
    )


def test_an_nvidia_gpu_without_the_toolkit_says_what_to_install() -> None:
    choice = lb.choose(replace(CUDA_LAPTOP, nvcc=None))
    assert (choice.backend, choice.cmake_args, choice.error) == ("cpu", "", False)
    assert choice.note == (
        "Found an NVIDIA GPU (NVIDIA GeForce RTX 4060 Laptop GPU) but not the CUDA toolkit, so "
        "llama.cpp is built for the CPU. To use the GPU, install the CUDA toolkit (Debian/Ubuntu: "
        "sudo apt-get install nvidia-cuda-toolkit; others: "
        "https://developer.nvidia.com/cuda-downloads), then run this again."
    )


def test_a_driver_that_does_not_answer_builds_for_the_cpu() -> None:
    choice = lb.choose(replace(LINUX, nvidia_smi=NVIDIA_NO_DRIVER, nvcc="/usr/bin/nvcc"))
    assert (choice.backend, choice.cmake_args) == ("cpu", "")
    assert choice.note is not None
    assert choice.note.startswith(
        'nvidia-smi is installed but found no GPU ("NVIDIA-SMI has failed because'
    )
    assert choice.note.endswith("reinstall its driver (or restart after a driver update), "
                                "then run this again.")  # fmt: skip


def test_an_amd_gpu_is_built_for_only_when_asked() -> None:
    amd = replace(LINUX, rocminfo=ROCMINFO)
    choice = lb.choose(amd)
    assert (choice.backend, choice.cmake_args) == ("cpu", "")
    assert choice.note is not None and "Found an AMD GPU (gfx1100)" in choice.note
    assert "HEARTH_LLAMA_BACKEND=rocm after you install ROCm's HIP SDK" in choice.note
    with_sdk = replace(amd, hipcc="/opt/rocm/bin/hipcc", rocm_path="/opt/rocm")
    assert lb.choose(with_sdk).note == (
        "Found an AMD GPU (gfx1100): llama.cpp is built for the CPU unless you ask for it: "
        "HEARTH_LLAMA_BACKEND=rocm."
    )
    asked = lb.choose(replace(with_sdk, env={"HEARTH_LLAMA_BACKEND": "rocm"}))
    assert asked == lb.Choice(
        "rocm",
        "-DGGML_HIP=on -DGPU_TARGETS=gfx1100",
        {"HIPCXX": "/opt/rocm/llvm/bin/clang", "HIP_PATH": "/opt/rocm"},
    )


def test_a_discrete_vulkan_gpu_is_built_for_only_when_asked() -> None:
    arc = replace(LINUX, vulkaninfo=VULKAN_ARC)
    choice = lb.choose(arc)
    assert choice.backend == "cpu"
    assert choice.note is not None
    assert choice.note.startswith(
        "Found a GPU (Intel(R) Arc(tm) A770 Graphics (DG2)): llama.cpp is built for the CPU "
        "unless you ask for Vulkan: HEARTH_LLAMA_BACKEND=vulkan after you install the Vulkan SDK"
    )
    asked = lb.choose(replace(arc, glslc="/usr/bin/glslc", env={"HEARTH_LLAMA_BACKEND": "vulkan"}))
    assert asked == lb.Choice("vulkan", "-DGGML_VULKAN=on")


@pytest.mark.parametrize(
    ("machine", "wanted", "says"),
    [
        (LINUX, "cuda", "HEARTH_LLAMA_BACKEND=cuda: the CUDA compiler nvcc was not found: "
                        "install the CUDA toolkit"),
        (MAC_M2, "cuda", "HEARTH_LLAMA_BACKEND=cuda: CUDA does not run on macOS."),
        (LINUX, "metal", "HEARTH_LLAMA_BACKEND=metal: Metal exists only on macOS; this is Linux."),
        (LINUX, "vulkan", "HEARTH_LLAMA_BACKEND=vulkan: the shader compiler glslc was not found"),
        (LINUX, "rocm", "HEARTH_LLAMA_BACKEND=rocm: ROCm's compiler hipcc was not found"),
        (LINUX, "opencl", "HEARTH_LLAMA_BACKEND=opencl is not a backend Hearth builds: use one "
                          "of cpu, cuda, metal, vulkan, rocm, or unset it."),
    ],
)  # fmt: skip
def test_an_override_that_cannot_be_built_stops_with_a_sentence(
    machine: Any, wanted: str, says: str
) -> None:
    choice = lb.choose(replace(machine, env={"HEARTH_LLAMA_BACKEND": wanted}))
    assert choice.error
    assert choice.note.startswith(says)


def test_the_override_can_force_the_cpu_anywhere() -> None:
    assert lb.choose(replace(CUDA_LAPTOP, env={"HEARTH_LLAMA_BACKEND": " CPU "})) == lb.Choice(
        "cpu"
    )
    on_mac = lb.choose(replace(MAC_M2, env={"HEARTH_LLAMA_BACKEND": "cpu"}))
    assert (on_mac.backend, on_mac.cmake_args) == ("cpu", "-DGGML_METAL=off")


def test_cuda_asked_for_without_a_visible_gpu_builds_every_architecture() -> None:
    choice = lb.choose(replace(LINUX, nvcc="/usr/bin/nvcc", env={"HEARTH_LLAMA_BACKEND": "cuda"}))
    assert (choice.backend, choice.cmake_args, choice.error) == ("cuda", "-DGGML_CUDA=on", False)
    assert choice.note is not None and "every CUDA architecture" in choice.note


def test_shell_lines_quote_for_eval() -> None:
    rocm = lb.Choice("rocm", "-DGGML_HIP=on -DGPU_TARGETS=gfx1100;gfx1030",
                     {"HIP_PATH": "/opt/rocm"})  # fmt: skip
    assert lb.shell_lines(rocm) == [
        "HEARTH_LLAMA_BACKEND_CHOSEN=rocm",
        "HEARTH_LLAMA_CMAKE_ARGS='-DGGML_HIP=on -DGPU_TARGETS=gfx1100;gfx1030'",
        "export HIP_PATH=/opt/rocm",
    ]
    assert lb.shell_lines(lb.Choice("cpu")) == [
        "HEARTH_LLAMA_BACKEND_CHOSEN=cpu",
        "HEARTH_LLAMA_CMAKE_ARGS=''",
    ]


def test_the_script_runs_here_and_its_lines_eval_in_bash(tmp_path: Path) -> None:
    """The real probe on this machine, as bootstrap.sh runs it (with the CPU forced, so
    the result does not depend on what this machine has)."""
    script = ROOT / "packaging" / "llama_backend.py"
    out = subprocess.run(
        ["bash", "-c", f'eval "$({sys.executable} {script} --shell)" && '
                       'echo "$HEARTH_LLAMA_BACKEND_CHOSEN:$HEARTH_LLAMA_CMAKE_ARGS"'],
        env={"PATH": "/usr/bin:/bin", "HEARTH_LLAMA_BACKEND": "cpu"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == ("cpu:-DGGML_METAL=off" if sys.platform == "darwin" else "cpu:")
    machine = lb.probe({"HEARTH_LLAMA_BACKEND": "cpu"})
    assert machine.system and machine.arch
    refused = subprocess.run(
        [sys.executable, str(script)], env={"PATH": "/usr/bin:/bin", "HEARTH_LLAMA_BACKEND": "x"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("hearth-setup: HEARTH_LLAMA_BACKEND=x is not a backend")
