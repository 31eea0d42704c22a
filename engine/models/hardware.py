"""What this machine offers a model: memory, cores, disk, GPU offload.

``probe()`` is cheap (a few system calls) and safe to call from any thread.
The result type, ``HardwareInfo``, lives in ``engine.models.memory`` so that code
which only shows or compares figures need not import llama.cpp.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import psutil

from engine.gguf.arch import ModelArch
from engine.gguf.header import read_gguf_arch
from engine.models.memory import FitCheck, HardwareInfo, check_fit, estimate_for_options
from engine.types import EngineOptions

__all__ = ["HardwareInfo", "fit_for_file", "free_disk", "gpu_offload_supported", "probe"]

log = logging.getLogger(__name__)


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can put layers on a GPU (CUDA, Metal, Vulkan...).

    A CPU-only build answers False whatever the machine has; Hearth's default
    build is CPU-only, so this is what tells the settings page to hide GPU options.
    """
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:  # a broken native library: no GPU, and say why
        log.warning("llama.cpp could not be imported to check GPU support: %s", exc)
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


def free_disk(folder: Path) -> int | None:
    """Free bytes on the disk that holds ``folder`` (or would hold it, if not yet created)."""
    candidate = folder.expanduser().absolute()
    while not candidate.exists():
        if candidate.parent == candidate:
            return None
        candidate = candidate.parent
    try:
        return shutil.disk_usage(candidate).free
    except OSError as exc:
        log.warning("cannot read free space of %s: %s", candidate, exc)
        return None


def probe(models_dir: Path | None = None, *, check_gpu: bool = True) -> HardwareInfo:
    """RAM, cores, free disk on ``models_dir`` and GPU offload support, right now.

    ``check_gpu=False`` skips the GPU question (it loads llama.cpp, ~0.2 s): for the
    memory fit, which does not depend on it, on the way to the first window.
    """
    memory = psutil.virtual_memory()
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return HardwareInfo(
        total_ram=int(memory.total),
        available_ram=int(memory.available),
        physical_cores=int(physical),
        logical_cores=int(logical),
        disk_free=free_disk(models_dir) if models_dir is not None else None,
        gpu_offload=gpu_offload_supported() if check_gpu else False,
    )


def fit_for_file(
    path: Path,
    options: EngineOptions,
    *,
    hw: HardwareInfo | None = None,
    reclaimable: int = 0,
    arch: ModelArch | None = None,
) -> FitCheck:
    """Whether loading the GGUF at ``path`` with ``options`` fits this machine now.

    For the "Load anyway" question before a load and the fit badge of a file of
    one's own: ``warning`` is the sentence to show when the badge is not FITS.
    ``reclaimable`` is what unloading the current model frees. Reads the header
    only, and not even that when ``arch`` (the file's header, read before) is
    given; raises GGUFError or OSError for a file that is not a readable GGUF.
    """
    estimate = estimate_for_options(arch or read_gguf_arch(path), options)
    return check_fit(estimate, hw or probe(), reclaimable=reclaimable)
