"""When a load runs out of GPU memory anyway: recognising it in llama.cpp's log,
the layer counts to try next (then the CPU), and the sentence that says so."""

from __future__ import annotations

import re

__all__ = ["fallback_sentence", "is_out_of_device_memory", "retry_ladder"]

# What llama.cpp and the GPU runtimes log when a device allocation fails.
_DEVICE_OOM = re.compile(
    r"out of memory|cudaMalloc failed|hipMalloc failed|ErrorOutOfDeviceMemory|"
    r"OutOfDeviceMemory|failed to allocate \S+ buffer|unable to allocate \S+ buffer|"
    r"alloc_buffer: allocating .* failed|ggml_metal\w*: error: .*(?:allocate|buffer)",
    re.IGNORECASE,
)


def is_out_of_device_memory(log_text: str) -> bool:
    """Whether a failed load's llama.cpp log says a device allocation failed."""
    return bool(_DEVICE_OOM.search(log_text))


def retry_ladder(gpu_layers: int, total_layers: int) -> tuple[int, ...]:
    """The ``n_gpu_layers`` to try, in order, after a load with ``gpu_layers`` ran out of
    device memory: three quarters, half and a quarter of them, then none (the CPU).

    ``gpu_layers = -1`` means all ``total_layers``. Each step frees about a quarter
    of what the device held; four more loads at most before the CPU.
    """
    start = total_layers if gpu_layers < 0 else min(gpu_layers, total_layers)
    steps: list[int] = []
    for fraction in (3, 2, 1):
        k = start * fraction // 4
        if 0 < k < start and k not in steps:
            steps.append(k)
    if start > 0:
        steps.append(0)
    return tuple(steps)


def fallback_sentence(*, asked: int, loaded: int, total_layers: int, device_name: str = "") -> str:
    """What the status bar says after a load fell back to fewer layers or the CPU."""
    gpu = device_name or "the GPU"
    if loaded <= 0:
        return (
            f"{gpu} ran out of memory with {asked} of {total_layers} layers, so the model "
            "runs on the CPU (slower). Close programs that use the GPU, then load it again."
        )
    return (
        f"{gpu} ran out of memory with {asked} of {total_layers} layers, so {loaded} are on "
        "the GPU and the rest in RAM (slower). Close programs that use the GPU, then load "
        "it again."
    )
