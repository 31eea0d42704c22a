"""Logging and the crash handler.

The log file gets tracebacks; a person gets a sentence (see ui.main_window's
error banner). A hard crash (segfault inside llama.cpp or Qt) leaves its
faulthandler dump in ``crash.txt``, which the next start reports once.
"""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
from pathlib import Path
from typing import IO

log = logging.getLogger("hearth")

_crash_stream: IO[str] | None = None


def setup_logging(log_dir: Path, *, verbose: bool = False) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / "hearth.log"
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    )
    root = logging.getLogger()
    # Replace handlers from an earlier call (tests start the app more than once).
    for old in list(root.handlers):
        if getattr(old, "_hearth", False):
            root.removeHandler(old)
            old.close()
    handler._hearth = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return log_file


def enable_crash_dump(crash_file: Path) -> str | None:
    """Start writing hard-crash dumps; return the previous run's dump, if any."""
    global _crash_stream
    previous = None
    if crash_file.exists() and crash_file.stat().st_size > 0:
        previous = crash_file.read_text(encoding="utf-8", errors="replace")
        crash_file.replace(crash_file.with_suffix(".previous.txt"))
    crash_file.parent.mkdir(parents=True, exist_ok=True)
    if _crash_stream is None:
        _crash_stream = crash_file.open("w", encoding="utf-8")
        faulthandler.enable(_crash_stream)
    return previous


def disable_crash_dump(crash_file: Path) -> None:
    """A clean exit leaves no crash file behind."""
    global _crash_stream
    if _crash_stream is not None:
        faulthandler.disable()
        _crash_stream.close()
        _crash_stream = None
    if crash_file.exists() and crash_file.stat().st_size == 0:
        crash_file.unlink()
