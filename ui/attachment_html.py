"""A message's attachments in the chat view (issue 13): image thumbnails that open
larger when clicked, and a line per document.

Thumbnails are document resources (``hearth-image:<sha256>``) that the view asks the
app for (``ChatView.set_image_source``), only for images of the messages it shows:
nothing else, and nothing remote, is ever loaded.
"""

from __future__ import annotations

import html

from engine.types import AttachmentPart, ImagePart

IMAGE_SCHEME = "hearth-image"  # <img src="hearth-image:<sha256>">
OPEN_IMAGE_SCHEME = "hearth-open-image"  # clicked: show it larger
THUMB_HEIGHT = 120  # pixels in the chat


def thumb_size(part: ImagePart) -> tuple[int, int]:
    """Width and height of the thumbnail in the chat: its shape, at most 120 high."""
    if part.width <= 0 or part.height <= 0:
        return THUMB_HEIGHT, THUMB_HEIGHT
    height = min(THUMB_HEIGHT, part.height)
    width = max(1, round(part.width * height / part.height))
    if width > 3 * THUMB_HEIGHT:  # a panorama: limit its width instead
        width = 3 * THUMB_HEIGHT
        height = max(1, round(part.height * width / part.width))
    return width, height


def attachments_html(muted: str, parts: tuple[AttachmentPart, ...]) -> str:
    cells = []
    for part in parts:
        name = html.escape(part.name or "pasted image")
        if isinstance(part, ImagePart):
            width, height = thumb_size(part)
            pixels = f"{part.width}×{part.height}" if part.width else ""
            cells.append(
                f'<a href="{OPEN_IMAGE_SCHEME}:{part.sha256}" title="{name} {pixels}: click '
                f'to see it larger"><img src="{IMAGE_SCHEME}:{part.sha256}" width="{width}" '
                f'height="{height}" alt="{name}"></a>'
            )
    # (documents are shown by ui.citations.DocumentMarks)
    return "<p>" + "&nbsp;&nbsp;".join(cells) + "</p>" if cells else ""
