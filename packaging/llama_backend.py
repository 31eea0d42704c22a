"""Which llama.cpp backend the set-up command builds on this machine, and how.

    python packaging/llama_backend.py            say what would be built, and why
    python packaging/llama_backend.py --shell    the same as shell assignments (bootstrap.sh)

Chosen on its own: **Metal** on Apple Silicon, **CUDA** where an NVIDIA GPU
answers ``nvidia-smi`` and the CUDA toolkit (``nvcc``) is installed, the **CPU**
everywhere else. **Vulkan** and **ROCm** only when asked for: a distribution's
Vulkan headers are too old for the vendored llama.cpp (Debian 12 and 13 fail to
compile it) and a ROCm build must name the GPU's architecture; where such a GPU
is found, one sentence says how to ask.

``HEARTH_LLAMA_BACKEND=cpu|cuda|metal|vulkan|rocm`` overrides the choice; one
that cannot be built here (no toolkit) stops with a sentence naming what to install.

A GPU without its toolkit, or a driver that does not answer, gets the CPU build
and one sentence naming what to install. The result is CMAKE_ARGS for
llama-cpp-python's source build; an empty value is pip's default build, exactly
what a CPU-only machine got before this existed. Standard library only: it runs
before the virtual environment exists. The decision (``choose``) is a pure
function of a recorded ``Machine``, which ``probe()`` reads from this one.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

BACKENDS = ("cpu", "cuda", "metal", "vulkan", "rocm")
ENV = "HEARTH_LLAMA_BACKEND"

CUDA_INSTALL = (
    "install the CUDA toolkit (Debian/Ubuntu: sudo apt-get install nvidia-cuda-toolkit; "
    "others: https://developer.nvidia.com/cuda-downloads)"
)
ROCM_INSTALL = (
    "install ROCm's HIP SDK (https://rocm.docs.amd.com, the 'hip-dev' and 'rocm-llvm' packages)"
)
VULKAN_INSTALL = (
    "install the Vulkan SDK (https://vulkan.lunarg.com/sdk/home: glslc and headers 1.4.3 "
    "or newer; Debian 12 and 13's libvulkan-dev are too old for this llama.cpp)"
)

_NVIDIA_GPU = re.compile(r"^GPU \d+: (.+?)(?: \(UUID: [^)]*\))?$", re.MULTILINE)
_GFX = re.compile(r"^\s*Name:\s+(gfx[0-9a-f]+)\s*$", re.MULTILINE)
_VK_DEVICE = re.compile(
    r"deviceType\s*=\s*PHYSICAL_DEVICE_TYPE_(\w+).*?deviceName\s*=\s*([^\n]+)", re.DOTALL
)


@dataclass(frozen=True)
class Machine:
    """What the set-up command can see of a machine (recorded: tests pass one in)."""

    system: str  # `uname -s`: Linux, Darwin, Windows
    arch: str  # `uname -m`: x86_64, arm64, aarch64
    nvidia_smi: str | None = None  # `nvidia-smi -L` output (stdout + stderr); None: not installed
    nvcc: str | None = None  # path of the CUDA compiler; None: not found
    nvcc_on_path: bool = True  # False: found in /usr/local/cuda/bin, not on PATH
    vulkaninfo: str | None = None  # `vulkaninfo --summary` output; None: not installed
    glslc: str | None = None  # path of the Vulkan shader compiler
    rocminfo: str | None = None  # `rocminfo` output; None: not installed
    hipcc: str | None = None  # path of ROCm's HIP compiler
    rocm_path: str | None = None  # ROCm's root (/opt/rocm)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    backend: str  # one of BACKENDS
    cmake_args: str = ""  # for CMAKE_ARGS; "" is pip's default build
    build_env: dict[str, str] = field(default_factory=dict)  # more variables for the build
    note: str | None = None  # one sentence for the person
    error: bool = False  # the override cannot be built here: stop, with the note


def nvidia_gpus(smi: str | None) -> list[str]:
    return [m.group(1).strip() for m in _NVIDIA_GPU.finditer(smi or "")]


def amd_gpus(rocminfo: str | None) -> list[str]:
    return sorted({m.group(1) for m in _GFX.finditer(rocminfo or "") if m.group(1) != "gfx000"})


def vulkan_gpus(summary: str | None, *, discrete_only: bool = False) -> list[str]:
    """Vulkan devices that are GPUs (llvmpipe/lavapipe report type CPU)."""
    kinds = ("DISCRETE_GPU",) if discrete_only else ("DISCRETE_GPU", "INTEGRATED_GPU")
    return [name.strip() for kind, name in _VK_DEVICE.findall(summary or "") if kind in kinds]


def _apple_silicon(m: Machine) -> bool:
    return m.system == "Darwin" and m.arch in ("arm64", "aarch64")


def _cuda_args(m: Machine) -> str:
    args = "-DGGML_CUDA=on"
    if nvidia_gpus(m.nvidia_smi):
        # Only the GPU that is here: a fraction of the build time of every architecture.
        args += " -DCMAKE_CUDA_ARCHITECTURES=native"
    if m.nvcc and not m.nvcc_on_path:
        args += f" -DCMAKE_CUDA_COMPILER={m.nvcc}"
    return args


def _rocm(m: Machine) -> Choice:
    root = m.rocm_path or str(Path(m.hipcc or "/opt/rocm/bin/hipcc").parent.parent)
    targets = amd_gpus(m.rocminfo)
    args = "-DGGML_HIP=on" + (f" -DGPU_TARGETS={';'.join(targets)}" if targets else "")
    note = None if targets else "No AMD GPU answered rocminfo: building for every ROCm target."
    env = {"HIPCXX": f"{root}/llvm/bin/clang", "HIP_PATH": root}
    return Choice("rocm", args, env, note)


def _override(m: Machine, wanted: str) -> Choice:
    def refuse(sentence: str) -> Choice:
        return Choice(wanted, note=f"{ENV}={wanted}: {sentence}", error=True)

    if wanted == "cpu":
        return Choice("cpu", "-DGGML_METAL=off" if m.system == "Darwin" else "")
    if wanted == "metal":
        if m.system != "Darwin":
            return refuse(f"Metal exists only on macOS; this is {m.system}. Unset {ENV}.")
        return Choice("metal", "-DGGML_METAL=on")
    if wanted == "cuda":
        if m.system == "Darwin":
            return refuse(f"CUDA does not run on macOS. Unset {ENV} (Metal is the default).")
        if not m.nvcc:
            return refuse(f"the CUDA compiler nvcc was not found: {CUDA_INSTALL}, or unset {ENV}.")
        note = None if nvidia_gpus(m.nvidia_smi) else (
            "nvidia-smi shows no GPU: building for every CUDA architecture (slow), and "
            "Hearth will use the CPU until an NVIDIA driver answers."
        )  # fmt: skip
        return Choice("cuda", _cuda_args(m), note=note)
    if wanted == "vulkan":
        if not m.glslc:
            return refuse(f"the shader compiler glslc was not found: {VULKAN_INSTALL}.")
        return Choice("vulkan", "-DGGML_VULKAN=on")
    if not m.hipcc:  # rocm
        return refuse(f"ROCm's compiler hipcc was not found: {ROCM_INSTALL}, or unset {ENV}.")
    return _rocm(m)


def choose(m: Machine) -> Choice:
    """The backend to build for ``m``, its CMAKE_ARGS, and what to tell the person."""
    wanted = m.env.get(ENV, "").strip().lower()
    if wanted:
        if wanted not in BACKENDS:
            return Choice(
                wanted,
                note=f"{ENV}={wanted} is not a backend Hearth builds: use one of "
                f"{', '.join(BACKENDS)}, or unset it.",
                error=True,
            )
        return _override(m, wanted)
    if _apple_silicon(m):
        return Choice("metal", "-DGGML_METAL=on")
    if m.system == "Darwin":
        # llama-cpp-python turns Metal on for every Mac; on Intel Macs it is slower
        # than the CPU for most GPUs, so it is built only when asked for.
        return Choice(
            "cpu",
            "-DGGML_METAL=off",
            note=f"An Intel Mac: llama.cpp is built for the CPU ({ENV}=metal builds Metal).",
        )
    gpus = nvidia_gpus(m.nvidia_smi)
    if gpus and m.nvcc:
        return Choice("cuda", _cuda_args(m), note=f"Building llama.cpp with CUDA for {gpus[0]}.")
    if gpus:
        return Choice(
            "cpu",
            note=f"Found an NVIDIA GPU ({gpus[0]}) but not the CUDA toolkit, so llama.cpp is "
            f"built for the CPU. To use the GPU, {CUDA_INSTALL}, then run this again.",
        )
    if m.nvidia_smi is not None:
        first = next((line.strip() for line in m.nvidia_smi.splitlines() if line.strip()), "")
        return Choice(
            "cpu",
            note="nvidia-smi is installed but found no GPU"
            + (f' ("{first[:120]}")' if first else "")
            + ", so llama.cpp is built for the CPU. If this computer has an NVIDIA GPU, "
            "reinstall its driver (or restart after a driver update), then run this again.",
        )
    amd = amd_gpus(m.rocminfo)
    if amd:
        how = f"{ENV}=rocm" if m.hipcc else f"{ENV}=rocm after you {ROCM_INSTALL}"
        return Choice(
            "cpu",
            note=f"Found an AMD GPU ({', '.join(amd)}): llama.cpp is built for the CPU unless "
            f"you ask for it: {how}.",
        )
    discrete = vulkan_gpus(m.vulkaninfo, discrete_only=True)
    if discrete:
        how = f"{ENV}=vulkan" if m.glslc else f"{ENV}=vulkan after you {VULKAN_INSTALL}"
        return Choice(
            "cpu",
            note=f"Found a GPU ({discrete[0]}): llama.cpp is built for the CPU unless you ask "
            f"for Vulkan: {how}.",
        )
    return Choice("cpu")


# -- this machine ---------------------------------------------------------------------------


def _output(cmd: list[str], which: Callable[[str], str | None]) -> str | None:
    """A tool's stdout + stderr, or None when it is not installed."""
    if which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cmd[0]} failed: {exc}"
    return done.stdout + done.stderr


def probe(env: Mapping[str, str] | None = None) -> Machine:
    """This machine, as ``choose`` needs it (runs nvidia-smi, vulkaninfo, rocminfo)."""
    env = dict(os.environ if env is None else env)
    which = shutil.which
    nvcc, on_path = which("nvcc"), True
    if nvcc is None:
        for root in (env.get("CUDA_HOME"), env.get("CUDA_PATH"), "/usr/local/cuda", "/opt/cuda"):
            if root and Path(root, "bin", "nvcc").is_file():
                nvcc, on_path = str(Path(root, "bin", "nvcc")), False
                break
    rocm = env.get("ROCM_PATH") or ("/opt/rocm" if Path("/opt/rocm").is_dir() else None)
    hipcc = which("hipcc") or (
        str(Path(rocm, "bin", "hipcc")) if rocm and Path(rocm, "bin", "hipcc").is_file() else None
    )
    return Machine(
        system=platform.system(),
        arch=platform.machine(),
        nvidia_smi=_output(["nvidia-smi", "-L"], which),
        nvcc=nvcc,
        nvcc_on_path=on_path,
        vulkaninfo=_output(["vulkaninfo", "--summary"], which),
        glslc=which("glslc"),
        rocminfo=_output(["rocminfo"], which),
        hipcc=hipcc,
        rocm_path=rocm,
        env=env,
    )


def shell_lines(choice: Choice) -> list[str]:
    """Assignments for bootstrap.sh to eval."""
    lines = [
        f"HEARTH_LLAMA_BACKEND_CHOSEN={shlex.quote(choice.backend)}",
        f"HEARTH_LLAMA_CMAKE_ARGS={shlex.quote(choice.cmake_args)}",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(choice.build_env.items())]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shell", action="store_true", help="print shell assignments")
    args = parser.parse_args(argv)
    choice = choose(probe())
    if choice.note:
        print(f"hearth-setup: {choice.note}", file=sys.stderr)
    if choice.error:
        return 1
    if args.shell:
        print("\n".join(shell_lines(choice)))
    else:
        print(f"{choice.backend}: CMAKE_ARGS={choice.cmake_args!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
