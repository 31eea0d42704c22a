"""Word documents (DOCX, python-docx): paragraphs with their heading levels, and tables,
in the order they appear. A zip bomb is refused before anything is unpacked."""

from __future__ import annotations

import io
import re
import zipfile

from engine.documents.types import Block, BlockKind, DocKind, DocumentError, Extracted

__all__ = ["MAX_UNPACKED_BYTES", "read_docx"]

# A real DOCX unpacks to a few times its size (XML compresses ~5-10x); a bomb to
# thousands. Refused above 256 MB unpacked or a 200x ratio on a part over 10 MB.
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
_MAX_RATIO = 200
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted DOCX, or an old .doc
_HEADING = re.compile(r"^Heading (\d)$")


def read_docx(name: str, data: bytes) -> Extracted:
    if data.startswith(_OLE):
        raise DocumentError(
            f"{name} is protected by a password or is an old Word file (.doc), which Hearth "
            "cannot read: open it in Word or LibreOffice and save it as an unprotected .docx "
            "or PDF, then attach that."
        )
    _check_zip(name, data)
    import docx  # python-docx, imported when a DOCX is attached
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
        items = list(document.iter_inner_content())
    except Exception as e:  # a damaged package raises KeyError, ValueError, lxml errors...
        raise DocumentError(
            f"{name} could not be read as a Word document (it is damaged, or not a .docx): "
            "open it in Word or LibreOffice and save it again, then attach that.",
            detail=repr(e),
        ) from e
    blocks: list[Block] = []
    for item in items:
        if isinstance(item, Paragraph):
            text = item.text.strip()
            if not text:
                continue
            style = item.style.name if item.style is not None else ""
            level = _heading_level(style or "")
            if level:
                blocks.append(Block(text, BlockKind.HEADING, level=level))
            elif "List" in (style or ""):
                blocks.append(Block(f"- {text}"))
            else:
                blocks.append(Block(text))
        elif isinstance(item, Table):
            rows = [" | ".join(c.text.strip() for c in row.cells) for row in item.rows]
            if any(r.strip(" |") for r in rows):
                blocks.append(Block("\n".join(rows), BlockKind.TABLE))
    if not blocks:
        raise DocumentError(f"{name} has no text in it: attach the document that has it.")
    return Extracted(name, DocKind.DOCX, tuple(blocks), size=len(data))


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    match = _HEADING.match(style)
    return int(match.group(1)) if match else 0


def _check_zip(name: str, data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except zipfile.BadZipFile as e:
        raise DocumentError(
            f"{name} is not a Word document (a .docx is a zip package, and this is not one): "
            "open it in the program that made it and save it as .docx or PDF.",
        ) from e
    total = sum(i.file_size for i in infos)
    bomb = any(
        i.file_size > 10_000_000 and i.file_size > _MAX_RATIO * max(1, i.compress_size)
        for i in infos
    )
    if total > MAX_UNPACKED_BYTES or bomb:
        raise DocumentError(
            f"{name} would unpack to {total / 1e6:.0f} MB, far more than a Word document "
            "holds, so Hearth did not open it (it may be built to exhaust memory). If it is "
            "genuine, save it as PDF and attach that."
        )
