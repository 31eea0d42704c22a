"""The models on this computer: check, list, import, delete, and reuse the Hugging Face cache.

Everything here is local: no function opens a network connection (downloads
are ``engine.download``). The GUI's Models page and ``hearth models`` /
``hearth import`` / ``hearth rm`` / ``hearth pull`` share these functions:

- ``validate_gguf(path)`` reads the header only and raises a ``BadModelFile``
  with a sentence for a file that is not GGUF, a GGUF version llama.cpp does
  not read, a damaged or truncated file, or an architecture this llama.cpp
  build cannot run, so such a file never reaches llama.cpp's loader (which
  would only say "failed to load model");
- ``model_rows(catalog, models_dir, hw)``: the catalog as the Models page
  shows it (estimate, badge, recommended, installed, found in the HF cache),
  fast enough to call on every refresh: nothing is hashed;
- ``installed_models`` / ``import_gguf`` / ``delete_model``: the library;
- ``find_in_hf_cache`` / ``adopt_from_cache``: a GGUF another tool already
  downloaded into the standard Hugging Face cache is used instead of
  downloading it again (hard-linked when possible, always re-verified).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelInstallError
from engine.gguf_header import GGUFError, GGUFHeader, _Cursor, _read
from engine.memory import FitBadge, HardwareInfo, QuantFit, rank_quants
from engine.models import (
    CatalogEntry,
    find_starter_source,
    remember_verified,
    sidecar_path,
    verified_record,
)
from engine.types import EngineOptions

__all__ = [
    "NOT_FOR_CHAT",
    "SUPPORTED_ARCHITECTURES",
    "BadModelFile",
    "CachedFile",
    "DamagedModelFile",
    "GGUFInfo",
    "ImportCancelled",
    "InstalledModel",
    "ModelRow",
    "NotAModelFile",
    "UnsupportedArchitecture",
    "UnsupportedGGUFVersion",
    "adopt_from_cache",
    "delete_model",
    "find_in_hf_cache",
    "hf_cache_dir",
    "import_gguf",
    "installed_models",
    "model_rows",
    "partial_download_bytes",
    "scan_hf_cache",
    "validate_gguf",
]

log = logging.getLogger(__name__)

# Architectures llama-cpp-python 0.3.36's llama.cpp can build a model for: every case of
# llama_model_mapping() in vendor/llama.cpp/src/llama-model.cpp, named as in LLM_ARCH_NAMES
# (src/llama-arch.cpp). Not here: "gptj" (named, but no implementation: "unsupported model
# architecture"), "clip" (a vision projector: "CLIP cannot be used as main model").
# tests/unit/test_library.py checks each name is in the libllama this Hearth runs on.
# Update together with the llama-cpp-python pin.
SUPPORTED_ARCHITECTURES = frozenset(
    """
    afmoe apertus arcee arctic arwkv7 baichuan bailingmoe bailingmoe2 bailingmoe3 bert
    bitnet bloom chameleon chatglm codeshell cogvlm cohere2 cohere2moe command-r dbrx deci
    deepseek deepseek2 deepseek2-ocr deepseek32 deepseek4 dflash dots1 dots3note dream
    eagle3 ernie4_5 ernie4_5-moe eurobert exaone exaone-moe exaone4 falcon falcon-h1 gemma
    gemma-embedding gemma2 gemma3 gemma3n gemma4 gemma4-assistant glm-dsa glm4 glm4moe
    glm5-next gpt-oss gpt2 gptneox granite granite_swa granitehybrid granitemoe
    graniteswitch grok grovemoe hrm_text hunyuan-dense hunyuan-moe hunyuan_vl hy_v3 hy_v4
    internlm2 jais jais2 jamba jina-bert-v2 jina-bert-v3 kimi-k3 kimi-linear laguna lfm2
    lfm2moe llada llada-moe llama llama-embed llama4 maincoder mamba mamba2 maple mellum
    mimo2 minicpm minicpm3 minimax-01 minimax-m2 minimax-m3 mistral3 mistral4 modern-bert
    mpt muse-glimmer nanbeige nemotron nemotron_h nemotron_h_moe neo-bert nomic-bert
    nomic-bert-moe olmo olmo2 olmoe openelm orion paddleocr pangu-embedded phi2 phi3 phimoe
    plamo plamo2 plamo3 plm pockettts qwen qwen2 qwen2moe qwen2vl qwen3 qwen35 qwen35moe
    qwen3moe qwen3next qwen3tts qwen3vl qwen3vlmoe qwen4exp refact rnd1 rwkv6 rwkv6qwen2
    rwkv7 seed_oss smallthinker smollm3 spark2_5 stablelm starcoder starcoder2 step35 t5
    t5encoder talkie wavtokenizer-dec xverse
    """.split()  # noqa: SIM905 (a word list reads and diffs better than 150 literals)
)
# Loadable, but not something to chat with: what each is, for the sentence. Encoders and
# embedding models (non-causal attention or no decoder: llama_model_has_decoder, the
# models/*.cpp that set causal_attn = false), a vocoder, and diffusion language models,
# which need their own sampler rather than Hearth's token-by-token one.
NOT_FOR_CHAT = {
    **dict.fromkeys(
        ("bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2",
         "jina-bert-v3", "eurobert", "gemma-embedding", "t5encoder"),
        "an embedding model (it turns text into vectors, it cannot write replies)",
    ),
    "wavtokenizer-dec": "part of a speech model (an audio decoder), not a language model",
    **dict.fromkeys(
        ("dream", "llada", "llada-moe", "rnd1"),
        "a diffusion language model, which Hearth's chat cannot run yet",
    ),
}  # fmt: skip

_CHUNK = 1 << 20
_DISK_MARGIN = 64 << 20  # as engine.download: leave the system a little room
_SHA256_HEX = frozenset("0123456789abcdef")
_GGUF_VERSIONS = (2, 3)  # what llama.cpp's gguf.cpp reads (v1 was dropped long ago)


# -- validating ----------------------------------------------------------------------------


class BadModelFile(ModelInstallError):
    """A file Hearth will not hand to llama.cpp, with the reason as a sentence."""


class NotAModelFile(BadModelFile):
    """Not GGUF at all (wrong magic bytes, empty, a folder)."""


class UnsupportedGGUFVersion(BadModelFile):
    """GGUF, but a version of the format llama.cpp does not read."""


class DamagedModelFile(BadModelFile):
    """GGUF whose header or tensor data is unreadable or cut short (an unfinished download)."""


class UnsupportedArchitecture(BadModelFile):
    """A model architecture this llama.cpp build cannot run, or cannot chat with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GGUFInfo:
    """What the header says about a valid GGUF file (from ``validate_gguf``)."""

    path: Path
    version: int
    architecture: str
    name: str  # general.name, or the file name without .gguf
    quantization: str  # e.g. "Q4_K_M", from general.file_type; "" when not said
    size: int  # bytes on disk
    n_tensors: int
    context_length: int | None
    header: GGUFHeader


def _quantization(file_type: object) -> str:
    if not isinstance(file_type, int):
        return ""
    from gguf import LlamaFileType

    try:
        return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except ValueError:
        return ""


def _data_needed(header: GGUFHeader, header_end: int, raw: mmap.mmap) -> int:
    """Bytes the file must have for every tensor's data (llama.cpp refuses a shorter file).

    ``engine.gguf_header`` keeps no tensor offsets, so they are read here from the
    tensor-info records, which end at ``header_end``: name, n_dims, dims, type, offset.
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    records = [8 + len(t.name.encode()) + 4 + 8 * len(t.shape) + 4 + 8 for t in header.tensors]
    pos = header_end - sum(records)
    alignment = header.fields.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise DamagedModelFile("general.alignment is not a power of two")
    data_start = -(-header_end // alignment) * alignment
    needed = data_start
    for tensor, size in zip(header.tensors, records, strict=True):
        (offset,) = struct.unpack_from("<Q", raw, pos + size - 8)
        pos += size
        try:
            block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(tensor.ggml_type)]
        except (ValueError, KeyError) as exc:
            raise DamagedModelFile(f"tensor {tensor.name} has unknown type") from exc
        if offset % alignment:
            raise DamagedModelFile(f"tensor {tensor.name} is misaligned")
        needed = max(needed, data_start + offset + tensor.n_elements // block * block_bytes)
    return needed


def validate_gguf(path: Path) -> GGUFInfo:
    """Check ``path`` is a GGUF model this llama.cpp can run, reading its header only.

    Raises a ``BadModelFile`` subclass whose message is one sentence naming the
    file, saying what is wrong and what to do. Milliseconds even for big files.
    """
    name = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            start = f.read(8)
    except IsADirectoryError as exc:
        raise NotAModelFile(f"{name} is a folder, not a model file: pick a .gguf file.") from exc
    except FileNotFoundError as exc:
        raise NotAModelFile(f"{path} does not exist: check the path and try again.") from exc
    except OSError as exc:
        raise BadModelFile(
            f"Hearth could not read {name} ({exc.strerror or exc}): check that the file is "
            "readable and try again.",
            detail=repr(exc),
        ) from exc
    if start[:4] != b"GGUF":
        raise NotAModelFile(
            f"{name} is not a GGUF model file: Hearth runs .gguf files, such as the ones on "
            "Hugging Face marked GGUF.",
            detail=f"starts with {start[:4]!r}",
        )
    version = struct.unpack("<I", start[4:8])[0] if len(start) == 8 else -1
    if version not in _GGUF_VERSIONS:
        raise UnsupportedGGUFVersion(
            f"{name} is written in GGUF version {version}, which this version of Hearth cannot "
            f"read (it reads versions {' and '.join(map(str, _GGUF_VERSIONS))}): get a newer "
            "conversion of the model, or a newer Hearth.",
            detail=f"GGUF version {version}",
        )
    damaged = (
        f"{name} is damaged or incomplete (perhaps an unfinished download): download or "
        "copy it again."
    )
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            cursor = _Cursor(buf)
            header = _read(cursor)
            needed = _data_needed(header, cursor.pos, buf)
    except (GGUFError, struct.error, UnicodeError, ValueError) as exc:
        raise DamagedModelFile(damaged, detail=str(exc)) from exc
    except OSError as exc:
        raise BadModelFile(
            f"Hearth could not read {name} ({exc.strerror or exc}): check that the file is "
            "readable and try again.",
            detail=repr(exc),
        ) from exc
    if size < needed:
        raise DamagedModelFile(damaged, detail=f"{size} bytes, tensors need {needed}")
    arch = header.fields.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise DamagedModelFile(damaged, detail="general.architecture is missing")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"{name} is a model of type {arch!r}, which this version of Hearth cannot run: "
            "pick a model of a supported type (Qwen, Llama, Gemma, Mistral, Phi and many "
            "more) or update Hearth.",
            detail=f"architecture {arch}",
        )
    if arch in NOT_FOR_CHAT:
        raise UnsupportedArchitecture(
            f"{name} is {NOT_FOR_CHAT[arch]}: pick a chat or instruct model instead.",
            detail=f"architecture {arch}",
        )
    ctx = header.fields.get(f"{arch}.context_length")
    title = header.fields.get("general.name")
    return GGUFInfo(
        path=path,
        version=version,
        architecture=arch,
        name=title if isinstance(title, str) and title.strip() else path.stem,
        quantization=_quantization(header.fields.get("general.file_type")),
        size=size,
        n_tensors=len(header.tensors),
        context_length=ctx if isinstance(ctx, int) else None,
        header=header,
    )


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

    @property
    def is_starter(self) -> bool:
        return self.entry is not None and self.entry.source.get("package") is not None


def _gguf_files(models_dir: Path) -> list[Path]:
    try:
        return sorted(
            p for p in models_dir.iterdir() if p.suffix.lower() == ".gguf" and p.is_file()
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
        f"{need / 1e9:.1f} GB and {free / 1e9:.1f} GB is free in {models_dir}. Free some "
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
    return _installed(target, info, by_name.get(target.name), sha)


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
    doomed += models_dir.glob(f"{path.name}.part-*")  # engine.models' unfinished copies
    doomed += models_dir.glob(f".{path.name}.*.tmp")  # import_gguf's unfinished copies
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


# -- the Hugging Face cache ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedFile:
    """A file in the Hugging Face cache (a snapshot path; the blob holds the bytes)."""

    repo: str
    filename: str
    path: Path  # snapshots/<commit>/<filename>
    blob: Path  # blobs/<sha256> for LFS files
    size: int

    @property
    def sha256(self) -> str | None:
        """The LFS sha256 the Hub gave when it was downloaded (the blob's name), or None."""
        name = self.blob.name
        return name if len(name) == 64 and set(name) <= _SHA256_HEX else None


def hf_cache_dir() -> Path:
    """The Hugging Face cache folder, as huggingface_hub resolves it, read at each call.

    ``HF_HUB_CACHE``, else ``HF_HOME``/hub, else huggingface_hub's default
    (``~/.cache/huggingface/hub``, which honours ``XDG_CACHE_HOME``).
    """
    if cache := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def scan_hf_cache(cache_dir: Path | None = None) -> list[CachedFile]:
    """Every .gguf file in the Hugging Face cache's model repos (no hashing, no network)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    folder = cache_dir or hf_cache_dir()
    if not folder.is_dir():
        return []
    try:
        info = scan_cache_dir(folder)
    except (CacheNotFound, OSError, ValueError) as exc:
        log.info("cannot scan the Hugging Face cache at %s: %s", folder, exc)
        return []
    for warning in info.warnings:  # a damaged repo folder: skipped, not fatal
        log.info("Hugging Face cache: %s", warning)
    found: list[CachedFile] = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            for f in revision.files:
                if f.file_name.lower().endswith(".gguf"):
                    found.append(
                        CachedFile(
                            repo=repo.repo_id, filename=f.file_name, path=Path(f.file_path),
                            blob=Path(f.blob_path), size=f.size_on_disk,
                        )
                    )  # fmt: skip
    return found


def find_in_hf_cache(
    entry: CatalogEntry, *, cached: Sequence[CachedFile] | None = None
) -> CachedFile | None:
    """A copy of ``entry`` already in the Hugging Face cache, or None.

    Matched by content: the blob's name is the LFS sha256 the Hub gave, so with
    a catalog hash any repo's copy of the same bytes counts. Without one (a
    catalog not refreshed yet), only the same file of the same repo does. The
    size must match when the catalog knows it. Nothing is hashed here;
    ``adopt_from_cache`` verifies the bytes. ``cached``: a ``scan_hf_cache()``
    result, to scan once for many entries.
    """
    from huggingface_hub import try_to_load_from_cache

    size = None if entry.size_estimated else entry.size

    def fits(c: CachedFile) -> bool:
        if size is not None and c.size != size:
            return False
        if entry.sha256 is not None:
            return c.sha256 == entry.sha256
        return c.repo == entry.repo and c.filename == entry.filename and c.sha256 is not None

    if cached is None and entry.repo is not None:
        # The pinned revision first: one lookup, no scan.
        hit = try_to_load_from_cache(
            entry.repo, entry.filename, cache_dir=hf_cache_dir(), revision=entry.revision
        )
        if isinstance(hit, str):
            p = Path(hit)
            candidate = CachedFile(
                repo=entry.repo, filename=entry.filename, path=p, blob=p.resolve(),
                size=p.stat().st_size,
            )  # fmt: skip
            if fits(candidate):
                return candidate
    for c in cached if cached is not None else scan_hf_cache():
        if fits(c):
            return c
    return None


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


def model_rows(
    catalog: Sequence[CatalogEntry],
    models_dir: Path,
    hw: HardwareInfo,
    options: EngineOptions | None = None,
    *,
    reclaimable: int = 0,
    hf_cache: bool = True,
) -> list[ModelRow]:
    """The catalog's rows for ``hw``, in catalog order: fit, installed path, HF-cache copy.

    Fast (reads headers of nothing, hashes nothing: an installed file counts by
    its sha256 record; the HF cache is scanned once). ``reclaimable``: memory
    that loading any of these frees first (the model loaded now). Entries the
    catalog has no architecture for are left out (nothing to estimate).
    """
    fits = rank_quants(catalog, hw, options=options, reclaimable=reclaimable)
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
