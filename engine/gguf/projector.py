"""Vision projectors (``mmproj`` GGUF files) and the models they belong to (issue 13).

A projector turns an image into embeddings of one text model's width
(``clip.vision.projection_dim`` must equal the model's ``embedding_length``):
one made for another model is refused here, with a sentence, before llama.cpp
sees it. Projectors sit next to their model in the models folder, named with
``mmproj`` in the file name (as every publisher names them), which is also how
the model list tells them from models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.gguf.header import GGUFError, read_gguf_header

__all__ = [
    "ProjectorInfo",
    "find_projector",
    "is_projector_name",
    "mismatch_sentence",
    "projector_info",
]


def is_projector_name(path: Path) -> bool:
    return path.suffix.lower() == ".gguf" and "mmproj" in path.name.lower()


@dataclass(frozen=True, slots=True)
class ProjectorInfo:
    path: Path
    width: int  # the text model's embedding width it projects into
    projector_type: str  # "qwen3vl_merger", "mlp", ...


def projector_info(path: Path) -> ProjectorInfo | None:
    """What ``path`` is as a vision projector; None if it is not one (or unreadable)."""
    try:
        fields = read_gguf_header(path).fields
    except (GGUFError, OSError, ValueError):
        return None
    if fields.get("general.architecture") != "clip":
        return None
    if fields.get("clip.has_vision_encoder") is False:
        return None
    width = fields.get("clip.vision.projection_dim")
    if not isinstance(width, int):
        return None
    kind = fields.get("clip.projector_type", fields.get("clip.vision.projector_type", ""))
    return ProjectorInfo(path, width, str(kind))


def model_width(path: Path) -> int | None:
    """A text model's embedding width from its header; None if unreadable."""
    try:
        fields = read_gguf_header(path).fields
    except (GGUFError, OSError, ValueError):
        return None
    arch = fields.get("general.architecture")
    width = fields.get(f"{arch}.embedding_length")
    return width if isinstance(width, int) else None


def mismatch_sentence(projector: ProjectorInfo, model_name: str, width: int) -> str:
    return (
        f"{projector.path.name} is a vision file for another model (it makes images "
        f"{projector.width} wide; {model_name} reads {width}), so it was not used. "
        f"Download the vision file made for {model_name}."
    )


def find_projector(model: Path, width: int | None) -> tuple[ProjectorInfo | None, str]:
    """The projector for ``model`` in its folder, and a sentence when there is one
    that does not fit (else ""). Of several that fit, the one whose name shares
    the longest start with the model's (``Qwen3.5-9B-Q4_K_M.gguf`` and
    ``Qwen3.5-9B-mmproj-F16.gguf``)."""
    try:
        candidates = sorted(p for p in model.parent.iterdir() if is_projector_name(p))
    except OSError:
        return None, ""
    fitting: list[ProjectorInfo] = []
    misfit: ProjectorInfo | None = None
    for path in candidates:
        info = projector_info(path)
        if info is None:
            continue
        if width is None or info.width == width:
            fitting.append(info)
        elif misfit is None:
            misfit = info
    if fitting:
        return max(fitting, key=lambda i: (_shared(i.path.name, model.name), i.path.name)), ""
    if misfit is not None and width is not None and len(candidates) == 1:
        # One projector beside the model that fits no model of this width: say so.
        return None, mismatch_sentence(misfit, model.stem, width)
    return None, ""


def _shared(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.lower(), b.lower(), strict=False):
        if x != y:
            break
        n += 1
    return n
