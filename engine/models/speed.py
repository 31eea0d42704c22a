"""How fast a model will write here, before it is downloaded.

Decoding one token reads every weight that takes part once, plus the KV cache
of the context in use and the recurrent state: a memory-bound loop. So the
speed is about ``bytes read per token / memory bandwidth``, per device:
``engine.models.offload`` says which bytes sit on the GPU and which in RAM.

- **RAM bandwidth** is measured once (``measure_bandwidth``: a fraction of a
  second) and cached in a JSON file (``ram_bandwidth(folder)``). It scans a
  buffer larger than any CPU cache with libc's ``memchr`` (vectorized, and
  ctypes releases the GIL) on as many threads as llama.cpp decodes with: a
  read-only stream like decoding's, which a ``bytearray`` copy (read + write,
  one thread) would understate by 2-4x. Without a libc, ``bytearray.find``
  (the same ``memchr``, one thread) is the fallback.
- **Device bandwidth** is the recorded device's (``DeviceInfo.bandwidth``, a
  spec-sheet figure). llama.cpp's decode reaches about 60-80 % of it (its
  published llama-bench runs: ~630 of an RTX 4090's 1008 GB/s on an 8B Q4_K_M,
  ~80 of an M2's 100 GB/s), hence ``DEVICE_EFFICIENCY``.
- The CPU figure is checked against real decodes by bench/speed_estimate.py
  (bench/RESULTS.md has the ratio). On the small models available there
  (135M-270M parameters) it is ~3x optimistic: they are compute-bound, not
  memory-bound; a multi-GB model, where the choice matters, is what the
  bandwidth model describes. ``CPU_EFFICIENCY`` stays 1.0 until a multi-GB
  decode calibrates it.

``choose_by_speed`` is the speed-aware "Auto": the best quality that fits and
decodes at least ``COMFORTABLE_TPS``; where none does, the fastest that fits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.gguf.arch import ModelArch
from engine.models.memory import MIB
from engine.models.offload import DeviceInfo, OffloadPlan

__all__ = [
    "CACHE_FILE",
    "COMFORTABLE_TPS",
    "DEVICE_EFFICIENCY",
    "TYPICAL_CONTEXT",
    "Bandwidth",
    "QuantSpeed",
    "SpeedChoice",
    "bytes_per_token",
    "cached_bandwidth",
    "choose_by_speed",
    "estimate_tokens_per_s",
    "measure_bandwidth",
    "ram_bandwidth",
]

log = logging.getLogger(__name__)

# Comfortable: faster than a person reads. 250 words a minute is ~5.5 tokens/s of
# English; 8 leaves room for the estimate's error and for a thinking model, whose
# reasoning is read less closely but still has to be waited for.
COMFORTABLE_TPS = 8.0
# Speeds are quoted for a chat this long (the KV cache read per token grows with it).
TYPICAL_CONTEXT = 4096
DEVICE_EFFICIENCY = 0.7
# What llama.cpp's CPU decode reaches of the memchr figure (bench/speed_estimate.py).
CPU_EFFICIENCY = 1.0
CACHE_FILE = "bandwidth.json"
_CACHE_VERSION = 1
_BUFFER = 256 * MIB  # larger than any CPU's last-level cache (the largest are ~128-256 MiB)
_PASSES = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Bandwidth:
    """This machine's RAM read bandwidth, as measured."""

    bytes_per_s: float
    method: str  # "memchr" (libc, threads) or "bytearray.find" (one thread)
    threads: int
    machine: str  # the measurement is redone when this changes
    measured_at: str  # ISO 8601, UTC


def _machine() -> str:
    return f"{platform.system()} {platform.machine()} {platform.processor()} {os.cpu_count()}"


def _memchr() -> Callable[[int, int, int], object] | None:
    """libc's memchr through ctypes (which releases the GIL for the call), or None."""
    try:
        if sys.platform == "win32":
            libc = ctypes.cdll.msvcrt
        else:
            name = ctypes.util.find_library("c")
            libc = ctypes.CDLL(name) if name else ctypes.CDLL(None)
        fn = libc.memchr
    except (OSError, AttributeError) as exc:
        log.info("no libc memchr (%s): measuring with bytearray.find", exc)
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    return fn


def _physical_cores() -> int:
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return os.cpu_count() or 1


def measure_bandwidth(
    *, size: int = _BUFFER, threads: int | None = None, passes: int = _PASSES
) -> Bandwidth:
    """Read ``size`` bytes ``passes`` times and keep the fastest pass (bytes/s)."""
    threads = max(1, threads or min(_physical_cores(), 16))
    buf = bytearray(size)
    view = (ctypes.c_char * size).from_buffer(buf)
    base = ctypes.addressof(view)
    # Touch every page (a fresh allocation maps them all to one zero page, which would
    # be read from the cache), with a byte the scan does not look for.
    ctypes.memset(base, 0x5A, size)
    memchr = _memchr()
    best = float("inf")
    try:
        if memchr is None:
            threads = 1
            for _ in range(passes):
                start = time.perf_counter()
                buf.find(b"\x01")  # absent: scans the whole buffer
                best = min(best, time.perf_counter() - start)
        else:
            chunk = size // threads
            for _ in range(passes):
                workers = [
                    threading.Thread(target=memchr, args=(base + i * chunk, 1, chunk))
                    for i in range(threads)
                ]
                start = time.perf_counter()
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                best = min(best, time.perf_counter() - start)
    finally:
        del view  # the bytearray cannot be freed while a ctypes view exports it
    return Bandwidth(
        bytes_per_s=size / best,
        method="bytearray.find" if memchr is None else "memchr",
        threads=threads,
        machine=_machine(),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def cached_bandwidth(folder: Path) -> Bandwidth | None:
    """The measurement saved in ``folder`` for this machine, or None (never measures)."""
    path = folder / CACHE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.pop("version", None) == _CACHE_VERSION:
            cached = Bandwidth(**raw)
            if cached.machine == _machine() and cached.bytes_per_s > 0:
                return cached
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # damaged: measure again
        log.warning("ignoring %s: %s", path, exc)
    return None


def ram_bandwidth(folder: Path, *, remeasure: bool = False) -> Bandwidth:
    """The cached measurement in ``folder`` (measured and saved the first time).

    ``remeasure``: measure again (the Model page's "Measure again"). A cache from
    another machine (a copied profile) or damaged is measured again too.
    """
    if not remeasure and (cached := cached_bandwidth(folder)) is not None:
        return cached
    path = folder / CACHE_FILE
    measured = measure_bandwidth()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_text(json.dumps({"version": _CACHE_VERSION, **asdict(measured)}), "utf-8")
        os.replace(part, path)
    except OSError as exc:  # only costs another measurement next time
        log.warning("could not save %s: %s", path, exc)
    return measured


# -- the estimate ----------------------------------------------------------------------


def bytes_per_token(arch: ModelArch, plan: OffloadPlan, *, context_in_use: int) -> tuple[int, int]:
    """Bytes one decoded token reads (device, RAM) with ``context_in_use`` tokens in the cache.

    The token embedding is looked up by row (not read whole) unless it doubles as the
    output matrix on the CPU; the recurrent state is read and written back.
    """
    split = plan.split
    host_weights = plan.host.weights - split.input
    if split.tied and plan.gpu_layers == 0:
        host_weights += split.input
    fill = min(1.0, context_in_use / plan.n_ctx)
    live_state = 4 * arch.recurrent_layers * arch.recurrent_floats
    device = plan.device.weights + plan.device.kv_cache * fill + 2 * plan.device.recurrent
    host = host_weights + plan.host.kv_cache * fill + 2 * (live_state - plan.device.recurrent)
    return int(device), int(host)


def estimate_tokens_per_s(
    arch: ModelArch,
    plan: OffloadPlan,
    device: DeviceInfo,
    *,
    ram_bandwidth: float,
    context_in_use: int = TYPICAL_CONTEXT,
) -> float:
    """Decode tokens/s for ``plan``: each device's bytes over its bandwidth, one after the other.

    A device whose bandwidth is not known is taken to be as fast as the RAM (a
    low guess for a discrete GPU, right for an integrated one).
    """
    if ram_bandwidth <= 0:
        raise ValueError("ram_bandwidth must be positive")
    on_device, in_ram = bytes_per_token(arch, plan, context_in_use=context_in_use)
    device_bw = device.bandwidth * DEVICE_EFFICIENCY if device.bandwidth > 0 else ram_bandwidth
    seconds = in_ram / (ram_bandwidth * CPU_EFFICIENCY) + on_device / device_bw
    return 1.0 / seconds if seconds > 0 else float("inf")


# -- the speed-aware choice ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantSpeed:
    """One candidate as the choice sees it."""

    label: str  # "Q4_K_M"
    quality: tuple[int, int]  # higher is better (CatalogEntry.quality_rank)
    fits: bool
    tokens_per_s: float
    recommendable: bool = True  # BF16 and 2-bit files are never chosen


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeedChoice:
    choice: QuantSpeed | None
    reason: str  # one line for the Model page


def _tps(x: float) -> str:
    return f"{x:.0f}" if x >= 2 else f"{x:.1f}"


def choose_by_speed(rows: Sequence[QuantSpeed], *, floor: float = COMFORTABLE_TPS) -> SpeedChoice:
    """The best quality that fits and runs at ``floor`` tokens/s or more; else the fastest.

    Ties in quality go to the faster file.
    """
    fitting = [r for r in rows if r.fits and r.recommendable]
    if not fitting:
        return SpeedChoice(
            choice=None,
            reason="None of these fits this computer's memory: pick a smaller model.",
        )
    by_quality = sorted(fitting, key=lambda r: (r.quality, r.tokens_per_s), reverse=True)
    comfortable = [r for r in by_quality if r.tokens_per_s >= floor]
    if comfortable:
        pick = comfortable[0]
        better = [r for r in by_quality if r.quality > pick.quality]
        if not better:
            reason = f"{pick.label}: about {_tps(pick.tokens_per_s)} tokens/s, the best that fits."
        else:
            best = better[0]
            reason = (
                f"{pick.label}: about {_tps(pick.tokens_per_s)} tokens/s; {best.label} would "
                f"fit but runs at {_tps(best.tokens_per_s)}."
            )
        return SpeedChoice(choice=pick, reason=reason)
    pick = max(fitting, key=lambda r: (r.tokens_per_s, r.quality))
    # A faster 2-bit file may fit too; it is never chosen, so the sentence says why.
    skipped = any(
        r.fits and not r.recommendable and r.tokens_per_s > pick.tokens_per_s for r in rows
    )
    which = "the fastest recommended file that fits" if skipped else "the fastest that fits"
    return SpeedChoice(
        choice=pick,
        reason=(
            f"{pick.label}: about {_tps(pick.tokens_per_s)} tokens/s, {which}; "
            f"none reaches {floor:.0f} tokens/s on this computer."
        ),
    )
