"""Loading a GGUF file into llama-cpp-python, and llama.cpp's log.

Everything here turns llama.cpp's ways of failing (a NULL model, a line in its
log, an exception holding half a model) into a ``ModelLoadError`` with a
sentence for the person and the technical detail for the log.
"""

from __future__ import annotations

import ctypes
import logging
import os
import traceback
from collections import deque
from pathlib import Path
from typing import Any

import llama_cpp

from engine.errors import ModelLoadError
from engine.types import EngineOptions

__all__ = [
    "check_gguf_file",
    "install_log_bridge",
    "llama_load_kwargs",
    "load_llama",
    "log_state",
    "physical_cores",
    "quantization_name",
    "recent_problems",
]

_log = logging.getLogger(__name__)

_GGUF_MAGIC = b"GGUF"


def physical_cores() -> int:
    """Physical cores: llama.cpp gains nothing from hyper-threads and loses a little."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def llama_load_kwargs(options: EngineOptions) -> dict[str, Any]:
    """Every ``Llama(...)`` argument Hearth sets; the benchmark loads its baseline with it."""
    threads = options.n_threads or physical_cores()
    return {
        "n_ctx": options.n_ctx,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_batch": options.n_batch,
        "n_ubatch": options.n_ubatch,
        "n_gpu_layers": options.n_gpu_layers,
        "use_mmap": options.use_mmap,
        "flash_attn": options.flash_attn,
        "seed": options.seed,
        "verbose": False,
    }


def check_gguf_file(path: Path) -> None:
    """Fail early, with a sentence, on a missing file or one that is not GGUF at all."""
    name = path.name
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError as exc:
        raise ModelLoadError(
            f"The model file {name} does not exist. Download it again or pick another model.",
            detail=str(path),
        ) from exc
    except OSError as exc:
        raise ModelLoadError(
            f"Hearth cannot read the model file {name}: {exc.strerror or exc}. "
            "Check the file's permissions or pick another model.",
            detail=str(path),
        ) from exc
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"{name} is not a GGUF model file. Download it again or pick another model.",
            detail=f"{path}: starts with {magic!r}",
        )


def load_llama(path: Path, options: EngineOptions) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` with every option set, or ``ModelLoadError``."""
    name = path.name
    _problems.clear()
    try:
        return llama_cpp.Llama(str(path), **llama_load_kwargs(options))
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
        problems = list(_problems)
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
_problems: deque[str] = deque(maxlen=16)


class _LogState:
    last_level = _GGML_INFO
    aborting = False  # a Stop is aborting llama_decode: its "failed" messages are expected


log_state = _LogState()
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
    if level >= _GGML_WARN:
        _problems.append(message)
    _llama_logger.log(_LEVELS[level], "%s", message)


def install_log_bridge() -> None:
    """Route llama.cpp's log into Python logging (once per process)."""
    global _log_callback
    if _log_callback is None:
        # Kept in a global: llama.cpp holds only the C pointer.
        _log_callback = llama_cpp.llama_log_callback(_on_llama_log)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def recent_problems() -> list[str]:
    """llama.cpp's latest warnings and errors, newest last."""
    return list(_problems)
