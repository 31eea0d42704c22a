"""The quantizations the Model page lists (Settings → Model): one ``QuantRow``
each, filled in by the controller (app/model_page.py), and how a row is drawn
in the list (``quant_item``: sizes, fit badge, speed, marks, accessible text).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidgetItem

from engine.units import format_bytes


@dataclass(frozen=True, slots=True)
class QuantRow:
    """One quantization as the Model page shows it (the controller fills it in)."""

    name: str
    size_bytes: int
    memory_bytes: int
    fit: str  # "fits", "tight" or "too large"
    installed: bool
    recommended: bool
    note: str = ""
    in_use: bool = False
    downloading: bool = False
    size_estimated: bool = False  # the catalog's size is an estimate until refreshed
    cached: bool = False  # in the Hugging Face cache already: no download needed
    partial: float = 0.0  # share of an unfinished download kept for resuming
    label: str = ""  # shown instead of ``name`` (a file's name for the person's own files)
    removable: bool = True  # False: Hearth needs it (the starter model)
    # With a GPU: the bytes on it (``memory_bytes`` is then the RAM's part); None: no GPU.
    gpu_bytes: int | None = None
    tokens_per_s: float | None = None  # estimated decode speed; None: not known yet
    reason: str = ""  # the recommended row's: why "Auto" picks it
    remote: bool = False  # a model on a server (Settings → Connections): no file, no fit


# The list's columns. GPU is shown only where there is one (Memory is then "RAM").
COLUMNS = ("Quantization", "Download", "GPU", "Memory", "Fit", "Speed", "")
GPU_COL, MEMORY_COL, SPEED_COL = 2, 3, 5
FIT_MARKS = {
    "fits": "✓ fits",
    "on the server": "⇄ on the server",
    "tight": "! tight",
    "too large": "✗ too large",
    "fits on the GPU": "✓ fits on the GPU",
    "GPU + RAM": "✓ GPU + RAM",
    "CPU only": "✓ CPU only",
}


def speed_text(tokens_per_s: float | None) -> str:
    """ "about 11 tokens/s" (whole numbers from 2 up: the estimate is no finer)."""
    if tokens_per_s is None:
        return ""
    shown = f"{tokens_per_s:.0f}" if tokens_per_s >= 2 else f"{tokens_per_s:.1f}"
    return f"about {shown} tokens/s"


def quant_item(row: QuantRow) -> QTreeWidgetItem:
    """One row of the Model page's list: its columns, tooltip and what a screen reader says."""
    marks = []
    if row.in_use:
        marks.append("in use")
    if row.recommended:
        marks.append("recommended")
    if row.downloading:
        marks.append("downloading")
    elif row.installed:
        marks.append("installed")
    elif row.cached:
        marks.append("in Hugging Face cache")
    elif row.partial:
        marks.append(f"paused at {row.partial:.0%}")
    size = ("≈ " if row.size_estimated else "") + format_bytes(row.size_bytes)
    memory = format_bytes(row.memory_bytes) if row.memory_bytes else "?"
    if row.remote:  # its size and memory are the server's business
        size = memory = "–"
        marks = ["in use"] if row.in_use else []
    gpu = format_bytes(row.gpu_bytes) if row.gpu_bytes else "–"
    speed = speed_text(row.tokens_per_s)
    texts = [row.label or row.name, size, gpu if row.gpu_bytes is not None else "", memory,
             FIT_MARKS.get(row.fit, row.fit), speed, ", ".join(marks)]  # fmt: skip
    item = QTreeWidgetItem(texts)
    item.setData(0, Qt.ItemDataRole.UserRole, row.name)
    for col in range(len(COLUMNS)):
        item.setToolTip(col, row.note)
    where = (
        f"{gpu} on the GPU and {memory} of RAM"
        if row.gpu_bytes is not None
        else f"{memory} of memory"
    )
    item.setData(
        0,
        Qt.ItemDataRole.AccessibleTextRole,
        f"{row.label or row.name}, {size} download, {where}, {row.fit}"
        + (f", {speed}" if speed else "")
        + (f", {', '.join(marks)}" if marks else ""),
    )
    return item
