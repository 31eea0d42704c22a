"""Which model file the person's choice means, for the window and the CLI alike.

The choice is saved in settings: a model family and "auto" or a quantization
(``model.family``, ``model.quant``), or a file of their own (``model.path``).
"Auto" is the best-quality file of the family that fits this computer; until
it is downloaded, the best file of the family that is installed and fits is
used, else the starter model (""). No Qt here: ``hearth chat`` uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from engine.gguf.arch import ModelArch
from engine.gguf.header import GGUFError, read_gguf_arch
from engine.models.catalog import CatalogEntry, verified_record
from engine.models.memory import AUTO_CONTEXT, FitBadge, HardwareInfo, choose_context
from engine.models.offload import DeviceInfo, OffloadPlan, WeightSplit, plan_offload
from engine.models.ranking import QuantFit, rank_quants
from engine.types import EngineOptions

AUTO = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelChoice:
    """What the person chose (Settings → Model): a family and "auto" or a
    quantization, or a file of their own (``path``, which wins when set)."""

    family: str
    quant: str = AUTO
    path: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    """A choice resolved to a catalog entry and, if installed, its file."""

    entry: CatalogEntry | None
    path: Path | None
    fit: QuantFit | None = None


def installed(entry: CatalogEntry, models_dir: Path) -> Path | None:
    """The verified file of ``entry`` in ``models_dir``, by its sha256 record (never hashes
    gigabytes just to list or choose), or None."""
    target = models_dir / entry.filename
    size = None if entry.size_estimated else entry.size
    return target if verified_record(target, sha256=entry.sha256, size=size) else None


def resolve(
    entries: list[CatalogEntry],
    choice: str,
    models_dir: Path,
    hw: HardwareInfo,
    options: EngineOptions,
    *,
    reclaimable: int = 0,
    device: DeviceInfo | None = None,
    ram_bandwidth: float | None = None,
) -> Target:
    """``choice`` ("auto" or a quantization) among one family's ``entries``; "auto"
    weighs speed where ``ram_bandwidth`` is known (``rank_quants``)."""
    rows = rank_quants(
        entries,
        hw,
        options=options,
        reclaimable=reclaimable,
        device=device,
        ram_bandwidth=ram_bandwidth,
    )
    if not rows:
        return Target(None, None)
    if choice == AUTO:
        row = next((r for r in rows if r.recommended), None)
        if row is None:  # nothing fits comfortably: the smallest one a person should use
            usable = [r for r in rows if r.entry.recommendable] or rows
            row = min(usable, key=lambda r: r.fit.estimate.total)
    else:
        row = next((r for r in rows if r.entry.quantization == choice), None)
        if row is None:
            return Target(None, None)
    return Target(row.entry, installed(row.entry, models_dir), row)


def startup_file(
    choice: ModelChoice,
    catalog: list[CatalogEntry],
    models_dir: Path,
    hw: HardwareInfo,
    options: EngineOptions,
    *,
    own_file: bool = True,
    device: DeviceInfo | None = None,
    ram_bandwidth: float | None = None,
) -> str:
    """The file to load at start for the saved choice ("" = the starter model).
    ``own_file=False``: leave out a file of the person's own (it is gone, say)."""
    by_hand = choice.path if own_file else ""
    if by_hand:
        return by_hand
    entries = [e for e in catalog if e.family == choice.family]
    target = resolve(
        entries,
        choice.quant or AUTO,
        models_dir,
        hw,
        options,
        device=device,
        ram_bandwidth=ram_bandwidth,
    )
    if target.path is not None:
        return str(target.path)
    # Not downloaded (yet): the best file of the family that is and fits, else the starter.
    have = [
        (r.entry.quality_rank, p)
        for r in rank_quants(entries, hw, options=options)
        if r.fit.badge != FitBadge.TOO_LARGE and (p := installed(r.entry, models_dir))
    ]
    return str(max(have)[1]) if have else ""


def arch_of(path: Path | None, catalog: Sequence[CatalogEntry]) -> ModelArch | None:
    """A model file's shape: the catalog's (matched by file name), else its GGUF
    header's; ``None`` is the starter model (the catalog's first entry)."""
    if path is None:
        return catalog[0].arch if catalog else None
    entry = next((e for e in catalog if e.filename == path.name), None)
    if entry is not None and entry.arch is not None:
        return entry.arch
    try:
        return read_gguf_arch(path)
    except (GGUFError, OSError):
        return None


def load_options(
    options: EngineOptions,
    *,
    automatic_context: bool,
    arch: ModelArch | None,
    hw: HardwareInfo,
    reclaimable: int = 0,
) -> EngineOptions:
    """The options to load a model with: the person's, and where the context is
    "Automatic", ``AUTO_CONTEXT`` or less where memory is short (the same for the
    window and ``hearth chat``)."""
    if not automatic_context or arch is None:
        return options
    n_ctx = choose_context(arch, hw, wanted=AUTO_CONTEXT, options=options, reclaimable=reclaimable)
    return replace(options, n_ctx=n_ctx)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    """The options a load uses on this machine's devices, and why."""

    options: EngineOptions  # n_gpu_layers never None here
    plan: OffloadPlan | None = None  # None: no GPU plan (the CPU, or the person's layers)
    note: str = ""  # a sentence when the GPU asked for cannot be used


def plan_load(
    options: EngineOptions,
    *,
    arch: ModelArch | None,
    device: DeviceInfo,
    can_offload: bool | None = None,
    automatic_context: bool = False,
    split: WeightSplit | None = None,
    reclaimable: int = 0,
) -> LoadPlan:
    """Where the layers go: ``options.n_gpu_layers`` None ("Automatic") becomes what
    ``plan_offload`` fits on ``device`` (0 without a GPU: exactly the CPU load of
    before), a count the person set is kept where there is a GPU, and the CPU is
    used, with a sentence, where there is none.

    ``can_offload``: the build can offload but gave no memory figures (old bindings):
    all layers, and the retry ladder if the GPU runs out. ``automatic_context``: the
    context is the plan's (the wanted context where RAM holds the plan); otherwise
    ``options.n_ctx`` is kept as set.
    """
    asked = options.n_gpu_layers
    if asked == 0:
        return LoadPlan(options=options)
    if not device.has_gpu:
        cpu = replace(options, n_gpu_layers=0, offload_kqv=True)
        if asked is None:  # Automatic
            if can_offload:
                return LoadPlan(options=replace(options, n_gpu_layers=-1))
            return LoadPlan(options=cpu)
        return LoadPlan(
            options=cpu,
            note=f"GPU layers is set to {'all' if asked < 0 else asked}, but this build of "
            "llama.cpp found no GPU it can use, so the model runs on the CPU.",
        )
    if asked is not None:
        return LoadPlan(options=options)
    if arch is None:  # no shape to plan with: everything, and the retry ladder
        return LoadPlan(options=replace(options, n_gpu_layers=-1))
    wanted = AUTO_CONTEXT if automatic_context else options.n_ctx
    plan = plan_offload(
        arch,
        device,
        n_ctx=wanted,
        kv_type=options.kv_cache_type,
        flash_attn=options.flash_attn,
        n_ubatch=options.n_ubatch,
        checkpoint_mib=options.checkpoint_mib,
        split=split,
        reclaimable=reclaimable,
    )
    n_ctx = plan.n_ctx if automatic_context else options.n_ctx
    planned = replace(
        options, n_gpu_layers=plan.gpu_layers, offload_kqv=plan.kv_on_gpu, n_ctx=n_ctx
    )
    return LoadPlan(options=planned, plan=plan)
