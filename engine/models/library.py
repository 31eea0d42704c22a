"""The models on this computer: list, import, delete, and install from the Hugging Face cache.

Everything here is local: no function opens a network connection (downloads
are ``engine.models.download``). The GUI's Models page and ``hearth models`` /
``hearth import`` / ``hearth rm`` / ``hearth pull`` share these functions:

- ``model_rows(catalog, models_dir, hw)``: the catalog as the Models page
  shows it (estimate, badge, recommended, installed, found in the HF cache),
  fast enough to call on every refresh: nothing is hashed;
- ``installed_models`` / ``import_gguf`` / ``delete_model``: the library
  (a file is checked by ``engine.gguf.validate`` before it is copied);
- ``adopt_from_cache``: a GGUF another tool already downloaded into the
  standard Hugging Face cache (found by ``engine.models.hf_cache``) is used instead of
  downloading it again (hard-linked when possible, always re-verified).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelInstallError
from engine.gguf.projector import find_projector, is_projector_name, model_width
from engine.gguf.validate import BadModelFile, GGUFInfo, validate_gguf
from engine.models.catalog import (
    CatalogEntry,
    find_starter_source,
    remember_verified,
    sidecar_path,
    verified_record,
)
from engine.models.hf_cache import CachedFile, find_in_hf_cache, scan_hf_cache
from engine.models.memory import FitBadge, HardwareInfo
from engine.models.offload import DeviceInfo
from engine.models.ranking import QuantFit, rank_quants
from engine.types import EngineOptions
from engine.units import format_bytes

__all__ = [
    "ImportCancelled",
    "InstalledModel",
    "ModelRow",
    "adopt_from_cache",
    "delete_model",
    "import_gguf",
    "installed_models",
    "model_rows",
    "partial_download_bytes",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_DISK_MARGIN = 64 << 20  # as engine.models.download: leave the system a little room


# -- the library ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledModel:
    """A model file in the models folder."""

    name: str
    quantization: str
    size: int
    path: Path
    entry: CatalogEntry | None  # None: imported (or put there by hand)
    # Verified since it last changed (sha256 record next to it). A catalog file that is not
    # is damaged or unfinished: offer to delete or download it again, never to load it.
    verified: bool
    # What came (or did not come) along with an import: its vision file (issue 13).
    note: str = ""

    @property
    def is_starter(self) -> bool:
        return self.entry is not None and self.entry.source.get("package") is not None


def _gguf_files(models_dir: Path) -> list[Path]:
    try:
        return sorted(
            p
            for p in models_dir.iterdir()
            # A model's vision file (mmproj) sits beside it: it is not a model.
            if p.suffix.lower() == ".gguf" and p.is_file() and not is_projector_name(p)
        )
    except FileNotFoundError:
        return []


def installed_models(models_dir: Path, catalog: Sequence[CatalogEntry]) -> list[InstalledModel]:
    """The .gguf files in ``models_dir``: catalog models first (catalog order), then others.

    Fast: a catalog file counts as verified by its sha256 record only (nothing is
    hashed); an imported file's name and quantization come from its header.
    """
    by_name = {e.filename: e for e in catalog}
    known: list[InstalledModel] = []
    others: list[InstalledModel] = []
    for path in _gguf_files(models_dir):
        size = path.stat().st_size
        entry = by_name.get(path.name)
        if entry is not None:
            expected = None if entry.size_estimated else entry.size
            ok = verified_record(path, sha256=entry.sha256, size=expected) is not None
            known.append(
                InstalledModel(
                    name=entry.name, quantization=entry.quantization, size=size, path=path,
                    entry=entry, verified=ok,
                )
            )  # fmt: skip
            continue
        try:
            info = validate_gguf(path)
            name, quant = info.name, info.quantization
        except BadModelFile as exc:
            log.info("%s in the models folder is not usable: %s", path, exc.detail)
            name, quant = path.stem, ""
        ok = verified_record(path, sha256=None) is not None
        others.append(
            InstalledModel(
                name=name, quantization=quant, size=size, path=path, entry=None, verified=ok
            )
        )
    order = {e.filename: i for i, e in enumerate(catalog)}
    known.sort(key=lambda m: order[m.path.name])
    return known + others


class ImportCancelled(Exception):
    """The person cancelled an import or adoption; nothing was left behind."""


def _copy_hashing(
    src: Path,
    folder: Path,
    final_name: str,
    *,
    on_progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> tuple[Path, str]:
    """Copy ``src`` to a hidden temporary file in ``folder``, hashing it; (temp path, sha256).

    The temporary name starts with a dot and ends in ``.tmp``, so a listing never shows it;
    it is removed on any failure or cancel.
    """
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{final_name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    total = src.stat().st_size
    done = 0
    try:
        with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
            while block := fin.read(_CHUNK):
                if cancel is not None and cancel.is_set():
                    raise ImportCancelled
                digest.update(block)
                fout.write(block)
                done += len(block)
                if on_progress is not None:
                    on_progress(done, total)
            fout.flush()
            os.fsync(fout.fileno())  # on disk before the final name points at it
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def _hash(path: Path, cancel: threading.Event | None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            if cancel is not None and cancel.is_set():
                raise ImportCancelled
            digest.update(block)
    return digest.hexdigest()


def _no_space(name: str, models_dir: Path, need: int) -> ModelInstallError:
    free = shutil.disk_usage(models_dir).free if models_dir.exists() else 0
    return ModelInstallError(
        f"Not enough free disk space to copy {name} into the models folder: it needs "
        f"{format_bytes(need)} and {format_bytes(free)} is free in {models_dir}. Free some "
        "space or choose another models folder in Settings.",
        detail=f"need {need}, free {free}",
    )


def _write_failed(exc: OSError, name: str, models_dir: Path, need: int) -> ModelInstallError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return _no_space(name, models_dir, need)
    return ModelInstallError(
        f"Hearth could not copy {name} into {models_dir} ({exc.strerror or exc}): check the "
        "folder's permissions or choose another models folder in Settings.",
        detail=repr(exc),
    )


def import_gguf(
    src: Path,
    models_dir: Path,
    *,
    catalog: Sequence[CatalogEntry] = (),
    on_progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> InstalledModel:
    """Validate ``src``, copy it into ``models_dir`` and record it as verified.

    The copy goes to a hidden temporary file and is renamed into place only when
    complete, so a full disk, a cancel or a crash leave nothing half-written
    under a model's name. A file already there with the same name and content is
    kept as it is; one with other content is never overwritten (the import gets
    a new name). A file named like a catalog model counts as that model only if
    its sha256 is the catalog's. Blocks: call it off the GUI thread for big files.
    Raises BadModelFile or ModelInstallError with a sentence, or ImportCancelled.
    """
    info = validate_gguf(src)
    by_name = {e.filename: e for e in catalog}
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        if src.resolve().parent == models_dir.resolve():  # already in the folder: just record
            sha = _hash(src, cancel)
            remember_verified(src, sha)
            return _installed(src, info, by_name.get(src.name), sha)
        if shutil.disk_usage(models_dir).free < info.size + _DISK_MARGIN:
            raise _no_space(src.name, models_dir, info.size)
        tmp, sha = _copy_hashing(src, models_dir, src.name, on_progress=on_progress, cancel=cancel)
    except OSError as exc:
        raise _write_failed(exc, src.name, models_dir, info.size) from exc
    try:
        target = _free_name(models_dir, src.name, sha, by_name)
        if target.exists():  # the same file, imported before
            tmp.unlink()
        else:
            os.replace(tmp, target)
        remember_verified(target, sha)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_failed(exc, src.name, models_dir, info.size) from exc
    log.info("imported %s as %s (sha256 %s)", src, target, sha)
    note = _import_projector(src, target, cancel)
    return dataclasses.replace(_installed(target, info, by_name.get(target.name), sha), note=note)


def _import_projector(src: Path, target: Path, cancel: threading.Event | None) -> str:
    """Copy the vision file beside ``src`` that fits it next to ``target`` (named after
    it, so the models folder pairs them); a sentence for the person, "" if none was
    there. One made for another model is refused: the model is imported without it."""
    width = model_width(src)
    found, misfit = find_projector(src, width)
    if found is None:
        return misfit
    name = f"{target.stem}.mmproj.gguf"
    dest = target.with_name(name)
    try:
        if not dest.exists():
            tmp, _ = _copy_hashing(found.path, target.parent, name, on_progress=None,
                                   cancel=cancel)  # fmt: skip
            os.replace(tmp, dest)
    except OSError as exc:
        log.warning("could not import the vision file %s: %s", found.path, exc)
        return (
            f"Its vision file {found.path.name} could not be copied ({exc.strerror or exc}), "
            "so it cannot see images; import it again when the disk has room."
        )
    log.info("imported the vision file %s as %s", found.path, dest)
    return f"Its vision file {found.path.name} came along: it can see images."


def _installed(path: Path, info: GGUFInfo, entry: CatalogEntry | None, sha: str) -> InstalledModel:
    if entry is not None and entry.sha256 != sha:
        entry = None
    return InstalledModel(
        name=entry.name if entry else info.name,
        quantization=entry.quantization if entry else info.quantization,
        size=info.size,
        path=path,
        entry=entry,
        verified=True,
    )


def _free_name(models_dir: Path, name: str, sha: str, catalog: dict[str, CatalogEntry]) -> Path:
    """``name`` in ``models_dir``, or ``stem (2).gguf``...: never a different file's name."""
    stem, suffix = Path(name).stem, Path(name).suffix or ".gguf"
    n = 1
    while True:
        candidate = models_dir / (name if n == 1 else f"{stem} ({n}){suffix}")
        entry = catalog.get(candidate.name)
        if entry is not None and entry.sha256 != sha:
            pass  # a catalog model's name, but not its bytes: must not pass for it
        elif not candidate.exists():
            return candidate
        elif verified_record(candidate, sha256=sha) is not None:
            return candidate  # the same bytes are already here
        n += 1


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def delete_model(path: Path, models_dir: Path) -> None:
    """Delete a model file from ``models_dir`` with its sha256 record and unfinished parts.

    Refuses, with a sentence, anything outside the models folder (a person's own
    file, the Hugging Face cache) and the starter model's copy inside its Python
    package (Hearth installs from it). Deleting a file that is not there is not
    an error. The caller asks for confirmation and unloads the model first.
    """
    starter_source = find_starter_source()
    if starter_source is not None and (
        path.resolve() == starter_source.resolve() or _inside(path, starter_source.parent)
    ):
        raise ModelInstallError(
            f"{path.name} at {path.parent} is the starter model Hearth installs from; it is "
            "not deleted. Delete the copy in the models folder instead."
        )
    if not _inside(path.parent, models_dir):
        raise ModelInstallError(
            f"{path} is not in Hearth's models folder ({models_dir}), so Hearth does not "
            "delete it: delete it with your file manager if you no longer want it."
        )
    doomed = [path, sidecar_path(path)]
    doomed += (models_dir / ".downloads").glob(f"{path.name}.*.incomplete*")
    doomed += models_dir.glob(f"{path.name}.part-*")  # engine.models.catalog' unfinished copies
    doomed += models_dir.glob(f".{path.name}.*.tmp")  # import_gguf's unfinished copies
    # An imported model's own vision file goes with it (a catalog family's is shared by
    # its quantizations and stays).
    own = path.with_name(f"{path.stem}.mmproj.gguf")
    doomed += [own, sidecar_path(own)] if path.suffix.lower() == ".gguf" else []
    for item in doomed:
        try:
            item.unlink(missing_ok=True)
        except IsADirectoryError:
            continue
        except OSError as exc:
            raise ModelInstallError(
                f"Hearth could not delete {item.name} ({exc.strerror or exc}): if the model is "
                "in use, switch to another model first, then try again.",
                detail=repr(exc),
            ) from exc
    log.info("deleted %s", path)


# -- installing from the Hugging Face cache ---------------------------------------------


def adopt_from_cache(
    entry: CatalogEntry,
    models_dir: Path,
    *,
    cached: CachedFile | None = None,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Install ``entry`` from the Hugging Face cache instead of downloading it; its path.

    Hard-linked when the cache is on the same disk (no space used twice; the
    cache's files are never changed in place, and deleting either name keeps the
    other), copied otherwise. Either way the bytes are hashed and must match
    before the file counts as installed. Raises ModelInstallError with a
    sentence, or ImportCancelled.
    """
    found = cached or find_in_hf_cache(entry)
    if found is None:
        raise ModelInstallError(
            f"{entry.filename} is not in the Hugging Face cache any more: download it instead."
        )
    expected = entry.sha256 or found.sha256
    target = models_dir / entry.filename
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        source = found.path.resolve()
        tmp = models_dir / f".{entry.filename}.{os.getpid()}.link.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
            sha = _hash(tmp, cancel)
        except ImportCancelled:
            tmp.unlink(missing_ok=True)
            raise
        except OSError as exc:  # another disk, or links not allowed: copy
            log.info("cannot hard-link %s (%s): copying", source, exc)
            tmp.unlink(missing_ok=True)
            if shutil.disk_usage(models_dir).free < found.size + _DISK_MARGIN:
                raise _no_space(entry.filename, models_dir, found.size) from None
            tmp, sha = _copy_hashing(
                source, models_dir, entry.filename, on_progress=on_progress, cancel=cancel
            )
        if sha != expected:
            tmp.unlink(missing_ok=True)
            raise ModelInstallError(
                f"The copy of {entry.filename} in the Hugging Face cache ({found.path}) is "
                "damaged: its checksum does not match, so it was not used. Download the model "
                "instead.",
                detail=f"sha256 {sha}, expected {expected}",
            )
        os.replace(tmp, target)
        remember_verified(target, sha)
    except OSError as exc:
        raise _write_failed(exc, entry.filename, models_dir, found.size) from exc
    log.info("installed %s from the Hugging Face cache (%s)", target, found.path)
    return target


# -- the Models page's rows ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRow:
    """One catalog model as the Models page and ``hearth models`` show it."""

    fit: QuantFit  # estimate at the options' context, badge, recommended
    installed: Path | None  # verified in the models folder (by its record: not re-hashed)
    cached: CachedFile | None  # not installed, but in the Hugging Face cache: no download
    partial: int = 0  # bytes of an unfinished download kept for resuming (0: none)

    @property
    def entry(self) -> CatalogEntry:
        return self.fit.entry

    @property
    def badge(self) -> FitBadge:
        return self.fit.fit.badge

    @property
    def memory(self) -> int:
        """Estimated bytes of memory at the options' context."""
        return self.fit.fit.estimate.total

    @property
    def recommended(self) -> bool:
        return self.fit.recommended

    @property
    def gpu_memory(self) -> int | None:
        """Bytes on the GPU (None: no GPU); ``ram_memory`` is then the rest."""
        plan = self.fit.plan
        return plan.device_bytes if plan is not None else None

    @property
    def ram_memory(self) -> int:
        plan = self.fit.plan
        return plan.ram_bytes if plan is not None else self.memory

    @property
    def tokens_per_s(self) -> float | None:
        return self.fit.tokens_per_s


def model_rows(
    catalog: Sequence[CatalogEntry],
    models_dir: Path,
    hw: HardwareInfo,
    options: EngineOptions | None = None,
    *,
    reclaimable: int = 0,
    hf_cache: bool = True,
    cached_files: Sequence[CachedFile] | None = None,
    device: DeviceInfo | None = None,
    ram_bandwidth: float | None = None,
) -> list[ModelRow]:
    """The catalog's rows for ``hw``, in catalog order: fit, installed path, HF-cache copy.

    Fast (reads headers of nothing, hashes nothing: an installed file counts by
    its sha256 record; the HF cache is scanned once). ``reclaimable``: memory
    that loading any of these frees first (the model loaded now). Entries the
    catalog has no architecture for are left out (nothing to estimate).
    ``cached_files``: a scan made before (``scan_hf_cache``), used instead of scanning.
    ``device`` and ``ram_bandwidth``: see ``rank_quants`` (the GPU split, speeds, and
    the speed-aware pick).
    """
    fits = rank_quants(
        catalog,
        hw,
        options=options,
        reclaimable=reclaimable,
        device=device,
        ram_bandwidth=ram_bandwidth,
    )
    if cached_files is None:
        cached_files = scan_hf_cache() if hf_cache else []
    rows = []
    for fit in fits:
        entry = fit.entry
        target = models_dir / entry.filename
        size = None if entry.size_estimated else entry.size
        recorded = verified_record(target, sha256=entry.sha256, size=size)
        installed = target if recorded is not None else None
        cached = None
        if installed is None and entry.repo is not None and cached_files:
            cached = find_in_hf_cache(entry, cached=cached_files)
        partial = 0 if installed else partial_download_bytes(models_dir, entry.filename)
        rows.append(ModelRow(fit=fit, installed=installed, cached=cached, partial=partial))
    return rows


def partial_download_bytes(models_dir: Path, filename: str) -> int:
    """Bytes of ``filename``'s unfinished download kept in ``models_dir`` (0: none)."""
    sizes = []
    for part in (models_dir / ".downloads").glob(f"{filename}.*.incomplete"):
        try:
            sizes.append(part.stat().st_size)
        except OSError:  # finished or deleted meanwhile
            continue
    return max(sizes, default=0)
