"""Which of a model's quantizations fit this computer, best quality first, and which
"Auto" picks.

Without a GPU and without a measured RAM bandwidth this is the memory-only ranking
of before: the best quality that fits. With a GPU (``device``) each row also gets
its offload plan (engine.models.offload: layers, GPU and RAM bytes, the badge "fits
on the GPU / GPU + RAM / CPU only / too large"); with the RAM's bandwidth (measured
once, engine.models.speed) an estimated decode speed, and "Auto" becomes the
speed-aware choice (``choose_by_speed``: the best quality that decodes at a
comfortable speed) with its one-line reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from engine.models.catalog import CatalogEntry
from engine.models.memory import FitBadge, FitCheck, HardwareInfo, check_fit, estimate_for_options
from engine.models.offload import DeviceInfo, OffloadBadge, OffloadPlan, plan_offload
from engine.models.speed import QuantSpeed, choose_by_speed, estimate_tokens_per_s
from engine.types import EngineOptions

__all__ = ["QuantFit", "rank_quants"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantFit:
    """One catalog row as the Models page shows it."""

    entry: CatalogEntry
    fit: FitCheck
    recommended: bool = False
    # Where its layers would go on this machine's GPU (None: no GPU).
    plan: OffloadPlan | None = None
    tokens_per_s: float | None = None  # estimated decode speed (None: bandwidth not known)
    reason: str = ""  # the recommended row's: why "Auto" picks it (speed-aware only)

    @property
    def fits(self) -> bool:
        """Loads without asking other programs for memory: on the GPU and/or in RAM."""
        if self.plan is not None:
            return self.plan.badge is not OffloadBadge.TOO_LARGE and not self.plan.tight
        return self.fit.badge is FitBadge.FITS


def rank_quants(
    entries: Sequence[CatalogEntry],
    hw: HardwareInfo,
    *,
    options: EngineOptions | None = None,
    reclaimable: int = 0,
    device: DeviceInfo | None = None,
    ram_bandwidth: float | None = None,
) -> list[QuantFit]:
    """Every entry with an estimate and badge; the one "Auto" picks is recommended.

    Estimates use ``options`` (default ``EngineOptions()``: its context, KV
    type, flash attention, checkpoint budget). Entries without architecture
    parameters are left out (nothing to estimate). Quality is the catalog's
    (family rank, quant rank): a bigger model first, then a better quant.
    Entries marked not recommendable (BF16, 2-bit) are never recommended.
    ``device``: this machine's GPU (its RAM is ``hw``'s); ``ram_bandwidth``: bytes/s,
    measured (``engine.models.speed.ram_bandwidth``); None keeps the memory-only pick.
    """
    options = options or EngineOptions()
    gpu = device if device is not None and device.has_gpu else None
    rows: list[QuantFit] = []
    for entry in entries:
        arch = entry.arch
        if arch is None:
            continue
        est = estimate_for_options(arch, options)
        row = QuantFit(entry=entry, fit=check_fit(est, hw, reclaimable=reclaimable))
        if gpu is not None or ram_bandwidth:
            on = gpu or DeviceInfo.cpu_only(hw)
            plan = plan_offload(
                arch,
                on,
                n_ctx=options.n_ctx,
                kv_type=options.kv_cache_type,
                flash_attn=options.flash_attn,
                n_ubatch=options.n_ubatch,
                checkpoint_mib=options.checkpoint_mib,
                reclaimable=reclaimable,
            )
            tps = (
                estimate_tokens_per_s(arch, plan, on, ram_bandwidth=ram_bandwidth)
                if ram_bandwidth
                else None
            )
            row = replace(row, plan=plan if gpu is not None else None, tokens_per_s=tps)
        rows.append(row)
    if ram_bandwidth:
        return _by_speed(rows)
    fitting = [r for r in rows if r.fits and r.entry.recommendable]
    if fitting:
        best = max(fitting, key=lambda r: (r.entry.quality_rank, r.entry.size))
        rows = [replace(r, recommended=r is best) for r in rows]
    return rows


def _by_speed(rows: list[QuantFit]) -> list[QuantFit]:
    """``choose_by_speed`` over the rows: the recommended one carries the reason."""
    families = {r.entry.family for r in rows}
    speeds = [
        QuantSpeed(
            label=r.entry.quantization
            if len(families) == 1
            else f"{r.entry.name} {r.entry.quantization}",
            quality=r.entry.quality_rank,
            fits=r.fits,
            tokens_per_s=r.tokens_per_s or 0.0,
            recommendable=r.entry.recommendable,
        )
        for r in rows
    ]
    chosen = choose_by_speed(speeds)
    return [
        replace(r, recommended=True, reason=chosen.reason) if s is chosen.choice else r
        for r, s in zip(rows, speeds, strict=True)
    ]
