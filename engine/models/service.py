"""The models Hearth knows, for any front end: the catalog held once, this machine
(probed at most every few seconds), the person's choice resolved to a file, and the
memory estimates and fit of every file.

Qt-free: the window's ``ModelManager`` and ``hearth models`` both use it. Slow parts
are cached so that a page that refreshes often reads nothing twice: the Hugging Face
cache is scanned only when ``scan_hf_cache`` is called (off the GUI thread), and a
file of one's own has its header read once until it changes on disk.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from engine.errors import CatalogError
from engine.gguf.arch import ModelArch
from engine.gguf.header import GGUFError, read_gguf_arch
from engine.models import choice as _choice
from engine.models import speed as _speed
from engine.models.catalog import CatalogEntry
from engine.models.embedding_models import embedding_entries
from engine.models.hardware import fit_for_file, probe
from engine.models.hf_cache import CachedFile
from engine.models.hf_cache import scan_hf_cache as _scan_hf_cache
from engine.models.library import InstalledModel, ModelRow, installed_models, model_rows
from engine.models.memory import AUTO_CONTEXT, FitCheck, HardwareInfo, estimate_for_options
from engine.models.offload import DeviceInfo
from engine.models.speed import Bandwidth
from engine.types import DeviceProbe, EngineOptions, GpuDevice
from engine.units import format_bytes

__all__ = ["HW_TTL_S", "ModelService", "label"]

log = logging.getLogger(__name__)

# The probe is cheap but not free; free memory moves, so a few seconds old is current.
HW_TTL_S = 5.0
# The GPUs llama.cpp found when the machine was last measured (beside speed.CACHE_FILE).
DEVICES_FILE = "devices.json"


def label(entry: CatalogEntry) -> str:
    """How a model file is named to people: 'Qwen3.5 9B Q4_K_M'."""
    return f"{entry.name} {entry.quantization}"


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What identifies one version of a file on disk (a changed file reads again)."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _Stamp:
        st = path.stat()
        return cls(st.st_size, st.st_mtime_ns)


class ModelService:
    """Catalog, hardware, choice and estimates over one models folder.

    ``models_dir`` is asked each time (the folder can move while Hearth runs); the
    CLI gives a fixed path. Methods are for one thread at a time, except
    ``scan_hf_cache``, which only replaces the cached list when it is done.
    """

    def __init__(
        self,
        catalog: Sequence[CatalogEntry],
        models_dir: Path | Callable[[], Path],
        *,
        hw_ttl_s: float = HW_TTL_S,
    ) -> None:
        self.catalog: tuple[CatalogEntry, ...] = tuple(catalog)
        self._models_dir = models_dir
        self._hw_ttl_s = hw_ttl_s
        self._hw: HardwareInfo | None = None
        self._hw_at = 0.0
        self._hf: tuple[CachedFile, ...] | None = None  # None: not scanned yet
        self._headers: dict[Path, tuple[_Stamp, ModelArch | GGUFError | OSError]] = {}
        self._own: tuple[tuple[tuple[str, _Stamp], ...], list[InstalledModel]] | None = None
        # This machine's GPU and RAM speed, once someone has asked (the GPU question loads
        # llama.cpp; the bandwidth is measured once): until then, the memory-only view.
        self.devices: DeviceProbe | None = None
        self.bandwidth: Bandwidth | None = None
        # The catalog's embedding models are not chat models: never listed as "your own".
        try:
            self._embedding_files = frozenset(e.filename for e in embedding_entries())
        except CatalogError:
            self._embedding_files = frozenset()

    @property
    def models_dir(self) -> Path:
        folder = self._models_dir
        return folder if isinstance(folder, Path) else folder()

    # --- the catalog --------------------------------------------------------------------
    def families(self) -> list[tuple[str, str]]:
        """(family id, name) of the catalog's families, biggest model first."""
        seen: dict[str, CatalogEntry] = {}
        for entry in self.catalog:
            seen.setdefault(entry.family, entry)
        ordered = sorted(seen.values(), key=lambda e: -e.family_rank)
        return [(e.family, e.name) for e in ordered]

    def entries(self, family: str) -> list[CatalogEntry]:
        return [e for e in self.catalog if e.family == family]

    def entry_for_path(self, path: str | Path) -> CatalogEntry | None:
        name = Path(path).name
        return next((e for e in self.catalog if e.filename == name), None)

    def installed(self, entry: CatalogEntry) -> Path | None:
        return _choice.installed(entry, self.models_dir)

    # --- this machine -------------------------------------------------------------------
    def hardware(self) -> HardwareInfo:
        """This machine now (at most ``hw_ttl_s`` old). The fit does not depend on the GPU
        question, which would load llama.cpp (0.2 s) on the way to the first window."""
        now = time.monotonic()
        if self._hw is None or now - self._hw_at > self._hw_ttl_s:
            self._hw, self._hw_at = probe(self.models_dir, check_gpu=False), now
        return self._hw

    def device(self) -> DeviceInfo | None:
        """The GPU llama.cpp found (with this machine's RAM), or None: not asked, or none."""
        info = DeviceInfo.from_probe(self.devices, self.hardware())
        return info if info.has_gpu else None

    def _ram_bandwidth(self) -> float | None:
        """Known only once the GPU question is answered too: a speed without the GPU
        would be the CPU's, and "Auto" would pick for the wrong device."""
        if self.bandwidth is None or self.devices is None:
            return None
        return self.bandwidth.bytes_per_s

    def load_machine(self, folder: Path) -> None:
        """What an earlier run measured here (``measure_machine``), if anything: read only."""
        self.bandwidth = _speed.cached_bandwidth(folder)
        try:
            raw = json.loads((folder / DEVICES_FILE).read_text(encoding="utf-8"))
            gpus = tuple(GpuDevice(**g) for g in raw["gpus"])
            self.devices = DeviceProbe(
                gpus=gpus, can_offload=bool(raw["can_offload"]), cpu=str(raw["cpu"])
            )
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring %s: %s", folder / DEVICES_FILE, exc)

    def measure_machine(
        self, folder: Path, probe: Callable[[], DeviceProbe], *, remeasure: bool = False
    ) -> None:
        """Ask llama.cpp for the devices (``probe``) and measure the RAM's speed once
        (``remeasure``: again), keeping both in ``folder``. Slow: off the GUI thread."""
        devices = probe()
        record = {"gpus": [asdict(g) for g in devices.gpus], "can_offload": devices.can_offload,
                  "cpu": devices.cpu}  # fmt: skip
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / DEVICES_FILE).write_text(json.dumps(record), encoding="utf-8")
        except OSError as exc:  # only costs asking again next time
            log.warning("could not save %s: %s", folder / DEVICES_FILE, exc)
        bandwidth = _speed.ram_bandwidth(folder, remeasure=remeasure)
        self.devices, self.bandwidth = devices, bandwidth  # readers see old or new

    # --- files and their shapes ---------------------------------------------------------
    def header_arch(self, path: Path) -> ModelArch:
        """A file's shape from its GGUF header, read once per version of the file.
        Raises GGUFError or OSError (also remembered) for a file that is not a GGUF."""
        stamp = _Stamp.of(path)  # OSError: the file is gone
        known = self._headers.get(path)
        if known is None or known[0] != stamp:
            try:
                found: ModelArch | GGUFError | OSError = read_gguf_arch(path)
            except (GGUFError, OSError) as exc:
                found = exc
            known = self._headers[path] = (stamp, found)
        if isinstance(known[1], Exception):
            raise known[1]
        return known[1]

    def arch_of(self, path: Path | None) -> ModelArch | None:
        """The catalog's shape for a file (by name), else its header's; ``None`` path: the
        starter model. None when neither is known."""
        if path is None:
            return _choice.arch_of(None, self.catalog)
        entry = self.entry_for_path(path)
        if entry is not None and entry.arch is not None:
            return entry.arch
        try:
            return self.header_arch(path)
        except (GGUFError, OSError):
            return None

    def own_files(self) -> list[InstalledModel]:
        """The files in the models folder that are not the catalog's (imported, or put
        there by hand); their headers are read again only when the folder changes."""
        folder = self.models_dir
        try:
            listing = tuple(
                sorted((p.name, _Stamp.of(p)) for p in folder.glob("*.gguf") if p.is_file())
            )
        except OSError:
            listing = ()
        if self._own is None or self._own[0] != listing:
            found = [
                m
                for m in installed_models(folder, self.catalog)
                if m.entry is None and m.path.name not in self._embedding_files
            ]
            self._own = (listing, found)
        return list(self._own[1])

    # --- the Hugging Face cache ------------------------------------------------------------
    def scan_hf_cache(self) -> tuple[CachedFile, ...]:
        """Scan the Hugging Face cache now (disk work: call it off the GUI thread) and keep
        the result for ``rows``."""
        found = tuple(_scan_hf_cache())
        self._hf = found  # one assignment: a reader sees the old list or the new one
        return found

    @property
    def hf_cache(self) -> tuple[CachedFile, ...] | None:
        """The last scan's .gguf files (None: not scanned yet)."""
        return self._hf

    # --- choosing and estimating -----------------------------------------------------------
    def reclaimable(self, loaded: Path | None, options: EngineOptions) -> int:
        """What unloading the model at ``loaded`` gives back (loading another frees it
        first); 0 when nothing is loaded or its shape is unknown."""
        arch = self.arch_of(loaded) if loaded is not None else None
        return estimate_for_options(arch, options).total if arch is not None else 0

    def rows(self, family: str, options: EngineOptions, *, reclaimable: int = 0) -> list[ModelRow]:
        """The catalog rows of ``family``: fit, installed file, copy in the HF cache (from
        the last ``scan_hf_cache``), unfinished download."""
        return model_rows(
            self.entries(family),
            self.models_dir,
            self.hardware(),
            options,
            reclaimable=reclaimable,
            cached_files=self._hf or (),
            device=self.device(),
            ram_bandwidth=self._ram_bandwidth(),
        )

    def fit(self, path: Path, options: EngineOptions, *, reclaimable: int = 0) -> FitCheck:
        """Whether the GGUF at ``path`` fits this machine now (``fit_for_file`` with the
        probe above and the header read once). Raises GGUFError or OSError."""
        return fit_for_file(
            path,
            options,
            hw=self.hardware(),
            reclaimable=reclaimable,
            arch=self.header_arch(path),
        )

    def resolve(
        self, family: str, quant: str, options: EngineOptions, *, reclaimable: int = 0
    ) -> _choice.Target:
        """``quant`` ("auto" or a quantization) of ``family`` on this machine."""
        return _choice.resolve(
            self.entries(family),
            quant,
            self.models_dir,
            self.hardware(),
            options,
            reclaimable=reclaimable,
            device=self.device(),
            ram_bandwidth=self._ram_bandwidth(),
        )

    def startup_file(
        self, choice: _choice.ModelChoice, options: EngineOptions, *, own_file: bool = True
    ) -> str:
        """The file to load at start for the saved choice ("" = the starter model)."""
        return _choice.startup_file(
            choice,
            list(self.catalog),
            self.models_dir,
            self.hardware(),
            options,
            own_file=own_file,
            device=self.device(),
            ram_bandwidth=self._ram_bandwidth(),
        )

    def load_options(
        self,
        options: EngineOptions,
        path: Path | None,
        *,
        automatic_context: bool,
        reclaimable: int = 0,
    ) -> EngineOptions:
        """The options to load ``path`` ("" / None: the starter) with: ``options``, and
        where the context is "Automatic", what fits (``choice.load_options``)."""
        return _choice.load_options(
            options,
            automatic_context=automatic_context,
            arch=self.arch_of(path),
            hw=self.hardware(),
            reclaimable=reclaimable,
        )

    def estimate_text(self, loaded: Path | None, n_ctx: int | None, options: EngineOptions) -> str:
        """For the Performance page: the loaded model's memory at ``n_ctx`` (None: the
        context ``options`` has)."""
        arch = self.arch_of(loaded) if loaded is not None else None
        if arch is None:
            return "Load a model to see its memory estimate."
        wanted = n_ctx or options.n_ctx or AUTO_CONTEXT
        est = estimate_for_options(arch, replace(options, n_ctx=wanted))
        shown = min(wanted, arch.n_ctx_train)
        note = f" (this model reads at most {arch.n_ctx_train:,} tokens)" if shown < wanted else ""
        return f"About {format_bytes(est.total)} of memory at {shown:,} tokens{note}."
