"""Which of a model's quantizations fit this computer, best quality first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.models.catalog import CatalogEntry
from engine.models.memory import FitBadge, FitCheck, HardwareInfo, check_fit, estimate_for_options
from engine.types import EngineOptions

__all__ = ["QuantFit", "rank_quants"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantFit:
    """One catalog row as the Models page shows it."""

    entry: CatalogEntry
    fit: FitCheck
    recommended: bool = False


def rank_quants(
    entries: Sequence[CatalogEntry],
    hw: HardwareInfo,
    *,
    options: EngineOptions | None = None,
    reclaimable: int = 0,
) -> list[QuantFit]:
    """Every entry with an estimate and badge; the best-quality one that fits is recommended.

    Estimates use ``options`` (default ``EngineOptions()``: its context, KV
    type, flash attention, checkpoint budget). Entries without architecture
    parameters are left out (nothing to estimate). Quality is the catalog's
    (family rank, quant rank): a bigger model first, then a better quant.
    Entries marked not recommendable (BF16, 2-bit) are never recommended.
    """
    options = options or EngineOptions()
    rows: list[QuantFit] = []
    for entry in entries:
        if entry.arch is None:
            continue
        est = estimate_for_options(entry.arch, options)
        rows.append(QuantFit(entry=entry, fit=check_fit(est, hw, reclaimable=reclaimable)))
    fitting = [r for r in rows if r.fit.badge is FitBadge.FITS and r.entry.recommendable]
    if fitting:
        best = max(fitting, key=lambda r: (r.entry.quality_rank, r.entry.size))
        rows = [QuantFit(entry=r.entry, fit=r.fit, recommended=r is best) for r in rows]
    return rows
