"""Loading a GGUF file into llama-cpp-python, and llama.cpp's log.

A file is checked by ``engine.gguf.validate`` before llama.cpp sees it, so a
truncated, non-GGUF or unsupported-architecture file gets the validator's
sentence (llama.cpp would only say "failed to load model"). Everything here
turns llama.cpp's remaining ways of failing (a NULL model, a line in its log, an
exception holding half a model) into a ``ModelLoadError`` with a sentence for
the person and the technical detail for the log.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import struct
import sys
import threading
import traceback
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

import llama_cpp

from engine.errors import ModelLoadError
from engine.gguf.validate import BadModelFile, GGUFInfo, validate_gguf
from engine.types import EngineOptions

__all__ = [
    "check_gguf_file",
    "gguf_context_length",
    "install_log_bridge",
    "llama_load_kwargs",
    "load_backends",
    "load_llama",
    "log_state",
    "physical_cores",
    "quantization_name",
    "recent_problems",
]

_log = logging.getLogger(__name__)

_GGUF_MAGIC = b"GGUF"


def physical_cores() -> int:
    """Physical performance cores: llama.cpp gains nothing from hyper-threads and
    loses when a thread lands on an efficiency core (its matmuls wait for the slowest)."""
    import psutil

    return _performance_cores() or psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _performance_cores(sysfs: Path = Path("/sys/devices")) -> int | None:
    """Physical P-cores of a Linux hybrid CPU (Intel Alder Lake and later), else None.

    The kernel lists the P-cores' logical CPUs in ``cpu_core/cpus``; hyper-thread
    siblings share a (package, core) id.
    """
    try:
        cpus = _cpu_list((sysfs / "cpu_core" / "cpus").read_text())
        cores = set()
        for cpu in cpus:
            topo = sysfs / "system" / "cpu" / f"cpu{cpu}" / "topology"
            package = (topo / "physical_package_id").read_text().strip()
            cores.add((package, (topo / "core_id").read_text().strip()))
    except (OSError, ValueError):
        return None
    return len(cores) or None


def _cpu_list(text: str) -> list[int]:
    """Linux's CPU list format: "0-7,16,18-19"."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            first, last = part.split("-")
            cpus.extend(range(int(first), int(last) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


_KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0}


def llama_load_kwargs(options: EngineOptions, *, n_ctx_train: int | None = None) -> dict[str, Any]:
    """Every ``Llama(...)`` argument Hearth sets; the benchmark loads its baseline with it.

    n_ctx is the option's, clamped to the model's training context: never
    llama-cpp-python's 512, and never a 262k window by accident.
    """
    threads = options.n_threads or physical_cores()
    n_ctx = min(options.n_ctx, n_ctx_train) if n_ctx_train else options.n_ctx
    kv_type = _KV_TYPES[options.kv_cache_type]
    return {
        "n_ctx": n_ctx,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_batch": min(options.n_batch, n_ctx),
        "n_ubatch": min(options.n_ubatch, n_ctx),
        # "Automatic" that nobody planned (app.backends.open_local plans it): the CPU.
        "n_gpu_layers": options.n_gpu_layers or 0,
        "offload_kqv": options.offload_kqv,
        "use_mmap": options.use_mmap,
        "flash_attn": options.flash_attn,
        "type_k": kv_type,
        "type_v": kv_type,
        "seed": options.seed,
        "verbose": False,
    }


def gguf_context_length(path: Path) -> int | None:
    """``{arch}.context_length`` from a GGUF header, or None.

    Reads key by key and stops there: it comes before the tokenizer's arrays, so
    this is a few hundred bytes, not the whole header of a 248k-token vocabulary.
    """
    try:
        with path.open("rb") as f:
            return _scan_context_length(f)
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return None


# GGUF value types: fixed sizes, 8 = string, 9 = array.
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_INTS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}
_GGUF_SCAN_KEYS = 64


def _scan_context_length(f: BinaryIO) -> int | None:
    if f.read(4) != _GGUF_MAGIC:
        return None
    _version, _n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
    arch = None

    def string() -> str:
        (n,) = struct.unpack("<Q", f.read(8))
        return f.read(n).decode("utf-8")

    for _ in range(min(n_kv, _GGUF_SCAN_KEYS)):
        key = string()
        (kind,) = struct.unpack("<I", f.read(4))
        if kind == 8:
            value: object = string()
        elif kind == 9:
            (item, count) = struct.unpack("<IQ", f.read(12))
            if item == 8:
                for _ in range(count):
                    string()
            else:
                f.seek(_GGUF_SIZES[item] * count, 1)
            continue
        elif kind in _GGUF_INTS:
            (value,) = struct.unpack(_GGUF_INTS[kind], f.read(_GGUF_SIZES[kind]))
        else:
            f.seek(_GGUF_SIZES[kind], 1)
            continue
        if key == "general.architecture":
            arch = value
        elif arch is not None and key == f"{arch}.context_length" and isinstance(value, int):
            return value
    return None


def check_gguf_file(path: Path) -> GGUFInfo:
    """``validate_gguf`` for loading: a bad file's sentence as a ``ModelLoadError``.

    ``load_llama`` calls it before ``Llama(...)``; callers of ``load_llama`` need not.
    """
    try:
        return validate_gguf(path)
    except BadModelFile as exc:
        detail = f"{path}: {exc.detail}" if exc.detail else str(path)
        raise ModelLoadError(exc.message, detail=detail) from exc


# -- llama.cpp's compute backends ----------------------------------------------------
# Hearth's installers ship llama.cpp built with GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS
# (packaging/llama-build.md): the CPU code is one libggml-cpu-<cpu>.so per CPU
# generation, and ggml registers none of them until asked. llama-cpp-python never
# asks (abetlen/llama-cpp-python#2069), so without this every load fails with
# "no backends are loaded". A default build (the dev venv) has the CPU backend linked
# into libggml and registered already.
_backends_lock = threading.Lock()
_backend_count: int | None = None


class _GgmlRegistry:
    """The three ggml functions this needs, resolved from the libggml libllama uses."""

    def __init__(self) -> None:
        lib = llama_cpp.llama_cpp._lib  # libllama, as llama-cpp-python loaded it
        try:
            # dlsym through libllama's handle searches its dependencies and finds the
            # libggml it is linked to. Loading libggml.so by path could map a second
            # copy (pip installs the wheel's symlinks as copies) with an empty registry.
            self._count = lib.ggml_backend_reg_count
            self._get = lib.ggml_backend_reg_get
            self._name = lib.ggml_backend_reg_name
            self._load_all = lib.ggml_backend_load_all_from_path
        except AttributeError:  # Windows: GetProcAddress does not search dependencies
            ggml = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "ggml.dll"))
            self._count = ggml.ggml_backend_reg_count
            self._get = ggml.ggml_backend_reg_get
            self._name = ggml.ggml_backend_reg_name
            self._load_all = ggml.ggml_backend_load_all_from_path
        self._count.restype = ctypes.c_size_t
        self._get.argtypes = [ctypes.c_size_t]
        self._get.restype = ctypes.c_void_p
        self._name.argtypes = [ctypes.c_void_p]
        self._name.restype = ctypes.c_char_p
        self._load_all.argtypes = [ctypes.c_char_p]
        self._load_all.restype = None

    def count(self) -> int:
        return int(self._count())

    def names(self) -> list[str]:
        names = (self._name(self._get(i)) for i in range(self.count()))
        return [(n or b"?").decode("utf-8", "replace") for n in names]

    def load_all_from(self, folder: Path) -> None:
        self._load_all(os.fsencode(folder))


def backend_folders() -> list[Path]:
    """Where a GGML_BACKEND_DL build's backend libraries are, in the order to try.

    Frozen, hearth.spec puts them beside libllama in ``llama_cpp/lib``; installed
    with pip, the wheel puts them into a top-level ``bin/`` (site-packages/bin).
    """
    package = Path(llama_cpp.__file__).parent
    return [package / "lib", package.parent / "bin"]


def load_backends(registry: Any = None) -> int:
    """Register llama.cpp's compute backends once per process; return how many there are.

    Does nothing when backends are registered already (a build with them linked in).
    ``ModelLoadError`` when none can be registered: every model load would fail.
    ``registry`` is for tests; by default the real ggml.
    """
    global _backend_count
    with _backends_lock:
        if _backend_count is not None and registry is None:
            return _backend_count
        ggml = registry or _GgmlRegistry()
        linked_in = ggml.count()
        if not linked_in:
            for folder in backend_folders():
                if folder.is_dir():
                    ggml.load_all_from(folder)
                if ggml.count():
                    break
        count = ggml.count()
        if not count:
            raise ModelLoadError(
                "Hearth cannot run models on this computer: none of llama.cpp's "
                "processor libraries could be loaded, so the installation is incomplete "
                "or the processor is one this build does not support. Reinstall Hearth; "
                "if that does not help, this computer cannot run it.",
                detail="no ggml backend registered after loading from "
                + ", ".join(str(f) for f in backend_folders())
                + "; llama.cpp said: "
                + " | ".join(recent_problems()),
            )
        how = "linked in" if linked_in else "loaded"
        _log.info(
            "llama.cpp backends (%s): %s%s", how, ", ".join(ggml.names()), _cpu_variant_note()
        )
        if registry is None:
            _backend_count = count
        return count


def _cpu_variant_note() -> str:
    """Which libggml-cpu-<variant> ggml picked for this CPU (Linux), for the log."""
    if not sys.platform.startswith("linux"):
        return ""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    names = {line.rsplit("/", 1)[-1] for line in maps.splitlines() if "libggml-cpu" in line}
    return f" ({', '.join(sorted(names))})" if names else ""


def load_llama(path: Path, options: EngineOptions) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` with every option set, or ``ModelLoadError``."""
    name = path.name
    log_state.problems.clear()
    log_state.offloaded = None
    load_backends()  # first: without a backend no file could load, however good
    info = check_gguf_file(path)  # never hand llama.cpp a file it would only call "failed"
    try:
        kwargs = llama_load_kwargs(options, n_ctx_train=info.context_length)
        return llama_cpp.Llama(str(path), **kwargs)
    except MemoryError as exc:
        raise ModelLoadError(
            f"There is not enough free memory to load {name}. "
            "Close other programs, or pick a smaller model or a shorter context.",
            detail=str(path),
        ) from exc
    except (ValueError, RuntimeError, OSError) as exc:
        # The traceback's frames hold the half-built Llama, whose model weights
        # would stay in memory for as long as the error is kept around.
        _log.warning("loading %s failed", path, exc_info=exc)
        traceback.clear_frames(exc.__traceback__)
        problems = recent_problems()
        detail = f"{path}: {exc}; llama.cpp said: " + " | ".join(problems)
        if "llama_context" in str(exc):
            raise ModelLoadError(
                f"Hearth read {name} but could not set up a context window of "
                f"{options.n_ctx} tokens, probably for lack of memory. "
                "Choose a shorter context or a smaller model.",
                detail=detail,
            ) from exc
        arch = next((p for p in problems if "unknown model architecture" in p), None)
        if arch is not None:
            raise ModelLoadError(
                f"{name} uses a model architecture this version of Hearth cannot run "
                "yet. Update Hearth or pick another model.",
                detail=detail,
            ) from exc
        raise ModelLoadError(
            f"{name} could not be loaded: the file is damaged or incomplete. "
            "Download it again or pick another model.",
            detail=detail,
        ) from exc


def quantization_name(file_type: str | None) -> str:
    """``general.file_type`` as the name people know (Q4_K_M), via gguf's enum."""
    if file_type is None or not file_type.strip().isdigit():
        return "unknown"
    import gguf

    try:
        name = gguf.LlamaFileType(int(file_type)).name
    except ValueError:
        return f"type {file_type}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


# -- llama.cpp's log, routed into Python logging --------------------------------
# llama-cpp-python prints llama.cpp's log to stderr (or nowhere with verbose=False);
# Hearth wants it in its log file, and the last warnings and errors as the detail
# of a failed load ("unknown model architecture 'x'" is only said there).
_llama_logger = logging.getLogger("engine.llama_cpp")
# ggml_log_level as in the vendored ggml.h (llama-cpp-python's own _logger.py still
# uses an older numbering, so with verbose=False it prints warnings as errors).
_GGML_DEBUG, _GGML_INFO, _GGML_WARN, _GGML_ERROR, _GGML_CONT = 1, 2, 3, 4, 5
# llama.cpp's INFO is a hundred lines per load: debug material for Hearth's log.
_LEVELS = {_GGML_INFO: logging.DEBUG, _GGML_WARN: logging.WARNING, _GGML_ERROR: logging.ERROR}


class _LogState(threading.local):
    """What the bridge remembers, per thread: llama.cpp logs on the thread that
    calls it (a load, a decode, and the abort callback's graph run on the caller),
    so two sessions on two threads do not see each other's problems or Stop."""

    def __init__(self) -> None:
        self.last_level = _GGML_INFO
        self.aborting = False  # a Stop is aborting llama_decode: its "failed" messages are expected
        self.problems: deque[str] = deque(maxlen=16)
        # The last load's "offloaded k/n layers to GPU" (None: not said, as without a GPU).
        self.offloaded: tuple[int, int] | None = None


log_state = _LogState()
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_log_callback: Any = None


def _on_llama_log(level: int, text: bytes | None, _data: Any) -> None:
    if level == _GGML_CONT:
        level = log_state.last_level
    else:
        log_state.last_level = level
    if level not in _LEVELS or not text:
        return
    message = text.decode("utf-8", "replace").strip()
    if not message:
        return
    if log_state.aborting:
        _llama_logger.debug("%s (Stop)", message)
        return
    if (m := _OFFLOADED.search(message)) is not None:
        log_state.offloaded = (int(m[1]), int(m[2]))
    if level >= _GGML_WARN:
        log_state.problems.append(message)
    _llama_logger.log(_LEVELS[level], "%s", message)


def install_log_bridge() -> None:
    """Route llama.cpp's log into Python logging (once per process: llama.cpp has
    one log callback for all its models; what it remembers is per thread)."""
    global _log_callback
    if _log_callback is None:
        # Kept in a global: llama.cpp holds only the C pointer.
        _log_callback = llama_cpp.llama_log_callback(_on_llama_log)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def log_callback() -> Any:
    """The C log callback that feeds Python logging (libmtmd takes it too)."""
    install_log_bridge()
    return _log_callback


def recent_problems() -> list[str]:
    """llama.cpp's latest warnings and errors on this thread, newest last."""
    return list(log_state.problems)
