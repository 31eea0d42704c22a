"""Which devices this process's llama.cpp can compute on: the GPUs and the CPU.

``probe_devices()`` registers llama.cpp's backends first (``loader.load_backends``:
a ``GGML_BACKEND_DL`` build's modules are loaded from its folders there, which
llama-cpp-python never does), then asks ggml for every device through the C
functions llama-cpp-python leaves unbound (``ggml_backend_dev_count`` /
``_get`` / ``_name`` / ``_description`` / ``_type`` / ``_memory`` and the
registry's name), resolved from the libggml that libllama is linked to.

Nothing here raises for a missing or broken GPU: a GPU backend with no device
(no driver, no card), a backend module in the folder that would not load, or a
build whose bindings lack these functions all give a CPU-only answer with a
sentence (``DeviceProbe.note``). A CPU build answers "no GPU" quietly.
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp

from engine.errors import ModelLoadError
from engine.inference.loader import backend_folders, load_backends
from engine.types import DeviceProbe, GpuDevice

__all__ = ["cpu_features", "device_text", "probe_devices"]

_log = logging.getLogger(__name__)

# enum ggml_backend_dev_type (ggml-backend.h): CPU, GPU, IGPU, ACCEL, META.
_DEV_GPU, _DEV_IGPU = 1, 2
# Registries that are not GPUs however many devices they have (BLAS, AMX and the
# like are "accelerators" the CPU backend drives; RPC is a network of servers).
_NOT_GPU = {"CPU", "BLAS", "RPC", "AMX"}
# What each GPU backend needs on the machine, for the sentence when it found nothing.
_NEEDS = {
    "CUDA": "an NVIDIA GPU and its driver",
    "ROCm": "an AMD GPU and the ROCm driver",
    "HIP": "an AMD GPU and the ROCm driver",
    "Vulkan": "a GPU with a Vulkan driver",
    "Metal": "Apple Silicon or a Metal GPU",
    "SYCL": "an Intel GPU and the oneAPI runtime",
}
# A GGML_BACKEND_DL module's file name: libggml-cuda.so, ggml-vulkan.dll ...
_MODULE = re.compile(r"^(?:lib)?ggml-(cuda|hip|vulkan|metal|sycl|musa|cann|opencl)\b", re.I)
_MODULE_BACKEND = {
    "cuda": "CUDA",
    "hip": "ROCm",
    "vulkan": "Vulkan",
    "metal": "Metal",
    "sycl": "SYCL",
    "musa": "MUSA",
    "cann": "CANN",
    "opencl": "OpenCL",
}


class _Ggml:
    """The ggml device functions, from the libggml libllama uses (see loader._GgmlRegistry)."""

    def __init__(self) -> None:
        lib = llama_cpp.llama_cpp._lib
        try:
            self._bind(lib)
        except AttributeError:  # Windows: GetProcAddress does not search dependencies
            self._bind(ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "ggml.dll")))

    def _bind(self, lib: Any) -> None:
        def fn(name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
            f = getattr(lib, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            return f  # type: ignore[no-any-return]

        vp, size_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)
        self.dev_count = fn("ggml_backend_dev_count", ctypes.c_size_t)
        self.dev_get = fn("ggml_backend_dev_get", vp, ctypes.c_size_t)
        self.dev_name = fn("ggml_backend_dev_name", ctypes.c_char_p, vp)
        self.dev_description = fn("ggml_backend_dev_description", ctypes.c_char_p, vp)
        self.dev_type = fn("ggml_backend_dev_type", ctypes.c_int, vp)
        self.dev_memory = fn("ggml_backend_dev_memory", None, vp, size_p, size_p)
        self.dev_reg = fn("ggml_backend_dev_backend_reg", vp, vp)
        self.reg_count = fn("ggml_backend_reg_count", ctypes.c_size_t)
        self.reg_get = fn("ggml_backend_reg_get", vp, ctypes.c_size_t)
        self.reg_name = fn("ggml_backend_reg_name", ctypes.c_char_p, vp)
        self.reg_dev_count = fn("ggml_backend_reg_dev_count", ctypes.c_size_t, vp)


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace")


def _read(ggml: _Ggml) -> tuple[list[GpuDevice], dict[str, int]]:
    """The GPU devices, and every registry with its device count."""
    gpus = []
    for i in range(int(ggml.dev_count())):
        dev = ggml.dev_get(i)
        kind = int(ggml.dev_type(dev))
        if kind not in (_DEV_GPU, _DEV_IGPU):
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        ggml.dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        backend = _text(ggml.reg_name(ggml.dev_reg(dev)))
        gpus.append(
            GpuDevice(
                backend=backend,
                name=_text(ggml.dev_name(dev)),
                description=_text(ggml.dev_description(dev)),
                total_memory=int(total.value),
                free_memory=int(free.value),
                # Apple Silicon's GPU reads the RAM: Metal on arm64 is one memory.
                integrated=kind == _DEV_IGPU or backend.lower() in ("metal", "mtl"),
            )
        )
    regs = {}
    for i in range(int(ggml.reg_count())):
        reg = ggml.reg_get(i)
        regs[_text(ggml.reg_name(reg))] = int(ggml.reg_dev_count(reg))
    return gpus, regs


def _unloaded_modules(registered: set[str], folders: list[Path]) -> list[str]:
    """GPU backend modules in the backend folders whose backend did not register
    (their library would not load: a missing driver or runtime)."""
    found: set[str] = set()
    for folder in folders:
        try:
            names = [p.name for p in folder.iterdir()]
        except OSError:
            continue
        for name in names:
            if m := _MODULE.match(name):
                found.add(_MODULE_BACKEND[m[1].lower()])
    lowered = {r.lower() for r in registered}
    return sorted(b for b in found if b.lower() not in lowered)


def _note(regs: dict[str, int], unloaded: list[str], gpus: list[GpuDevice]) -> str:
    if gpus:
        return ""
    empty = [name for name, count in regs.items() if name not in _NOT_GPU and count == 0]
    missing = empty + unloaded
    if not missing:
        return ""
    backend = missing[0]
    needs = _NEEDS.get(backend, "a GPU and its driver")
    return (
        f"This Hearth can run models on a GPU through {backend}, but found no GPU it can "
        f"use, so models run on the CPU. {backend} needs {needs}: if this computer has "
        "one, install or update its driver and start Hearth again."
    )


_cache_lock = threading.Lock()
_cpu: str | None = None


def cpu_features() -> str:
    """The best vector extension llama.cpp's CPU backend uses here ("AVX2"), or ""."""
    global _cpu
    with _cache_lock:
        if _cpu is None:
            try:
                info = _text(llama_cpp.llama_print_system_info())
            except (OSError, AttributeError) as exc:
                _log.info("llama.cpp did not say its CPU features: %s", exc)
                info = ""
            _cpu = _best_feature(info)
        return _cpu


# Best first; llama_print_system_info lists "AVX2 = 1 | ..." per CPU backend.
_FEATURES = (
    ("AVX512", "AVX-512"),
    ("AVX2", "AVX2"),
    ("AVX", "AVX"),
    ("SVE", "SVE"),
    ("NEON", "NEON"),
    ("SSE3", "SSE3"),
)


def _best_feature(info: str) -> str:
    on = set(re.findall(r"(\w+) = 1", info))
    return next((label for key, label in _FEATURES if key in on), "")


def probe_devices(*, ggml: Any = None, folders: list[Path] | None = None) -> DeviceProbe:
    """This process's devices now (free memory moves: ask again before each plan).

    ``ggml`` and ``folders`` are for tests (a recorded device table); by default the
    real libggml and the backend folders of the installed llama.cpp.
    """
    cpu = cpu_features()
    try:
        load_backends()
    except ModelLoadError as exc:  # no backend at all: the load will say so itself
        return DeviceProbe(cpu=cpu, note=exc.message)
    try:
        gpus, regs = _read(ggml or _Ggml())
    except AttributeError as exc:  # bindings without the device functions: ask the old way
        _log.info("llama.cpp's device functions are missing (%s)", exc)
        try:
            offload = bool(llama_cpp.llama_supports_gpu_offload())
        except (OSError, AttributeError):
            offload = False
        # A GPU without its memory figures: no plan, all layers with the retry ladder.
        return DeviceProbe(can_offload=offload, cpu=cpu)
    except (OSError, ValueError) as exc:
        _log.warning("could not list llama.cpp's devices: %s", exc, exc_info=True)
        return DeviceProbe(
            cpu=cpu,
            note="Hearth could not ask llama.cpp which GPUs it can use, so models run on "
            "the CPU. Reinstalling Hearth may help; the details are in the log file.",
        )
    unloaded = _unloaded_modules(set(regs), backend_folders() if folders is None else folders)
    # What llama_supports_gpu_offload() answers, from the same device table.
    probe = DeviceProbe(
        gpus=tuple(gpus), can_offload=bool(gpus), cpu=cpu, note=_note(regs, unloaded, gpus)
    )
    found = [f"{g.name} ({g.description}, {g.free_memory}/{g.total_memory} B free)" for g in gpus]
    _log.info("llama.cpp devices: %s; backends %s %s", found or "no GPU", regs, probe.note)
    return probe


def device_text(offloaded: tuple[int, int] | None, cpu: str | None = None) -> str:
    """Where a loaded model runs, for the status bar: "GPU · 33/33 layers", "CPU · AVX2".

    ``offloaded``: llama.cpp's "offloaded k/n layers to GPU" (None: it said nothing,
    as a build without a GPU backend does).
    """
    if offloaded is not None and offloaded[0] > 0:
        return f"GPU · {offloaded[0]}/{offloaded[1]} layers"
    feature = cpu_features() if cpu is None else cpu
    return f"CPU · {feature}" if feature else "CPU"
