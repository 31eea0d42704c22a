"""Sizes, durations and places in a document in words people read, one way everywhere
(window, CLI, sentences the engine writes). A leaf: imports nothing of Hearth's."""

from __future__ import annotations

__all__ = ["format_bytes", "format_duration", "location_label"]


def format_bytes(n: float) -> str:
    """Bytes for people, in decimal units as file managers show them: "512 bytes",
    "12 kB", "850 MB", "5.9 GB"."""
    if n < 1e3:
        return f"{max(0, round(n))} bytes"
    if n < 1e6:
        return f"{n / 1e3:.0f} kB"
    if n < 1e9:
        return f"{n / 1e6:.0f} MB"
    return f"{n / 1e9:.1f} GB"


def format_duration(seconds: float) -> str:
    """A wait for people: "45 s", "16 min", "2.5 h"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def location_label(
    page: int | None,
    line_start: int | None,
    line_end: int | None = None,
    page_end: int | None = None,
) -> str:
    """Where a passage is, for a citation: "page 3", "pages 3–4", "lines 10–24", "line 7"."""
    if page is not None:
        return f"pages {page}–{page_end}" if page_end and page_end != page else f"page {page}"
    if line_start is None:
        return ""
    if line_end is None or line_end == line_start:
        return f"line {line_start}"
    return f"lines {line_start}–{line_end}"
