"""PDF documents: the text layer, page by page (pypdf). No OCR: a scanned PDF says so."""

from __future__ import annotations

import io
import logging

from engine.documents.types import Block, DocKind, DocumentError, Extracted

__all__ = ["read_pdf"]

log = logging.getLogger(__name__)


def read_pdf(name: str, data: bytes) -> Extracted:
    # pypdf is imported here: the window starts without it, and most chats never need it.
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            # Many PDFs are "encrypted" with an empty password only to set permissions;
            # those open. This one needs the password the person would have to type.
            raise _encrypted(name)
        pages = list(reader.pages)
    except (FileNotDecryptedError, DependencyError) as e:
        raise _encrypted(name) from e
    except (DocumentError, MemoryError):
        raise
    except Exception as e:  # pypdf raises many kinds on a damaged file; all mean the same
        raise DocumentError(
            f"{name} could not be read as a PDF (it is damaged, or not a PDF): "
            "open it in a PDF viewer and save or print it to a new PDF, then attach that.",
            detail=repr(e),
        ) from e
    blocks: list[Block] = []
    unreadable = 0
    for number, page in enumerate(pages, 1):
        try:
            text = page.extract_text() or ""
        except Exception:  # one broken page (a bad font, a bad stream) costs that page only
            log.warning("%s: page %d has no readable text", name, number, exc_info=True)
            unreadable += 1
            continue
        blocks.extend(Block(p, page=number) for p in _paragraphs(text))
    if not blocks:
        if unreadable:
            raise DocumentError(
                f"The pages of {name} could not be read (their text is damaged): "
                "open it in a PDF viewer and print it to a new PDF, then attach that."
            )
        raise DocumentError(
            f"{name} has no text to read: its {len(pages)} page(s) are images (a scan), and "
            "Hearth does not recognise text in images (no OCR). Attach a version with a text "
            "layer, for example by running it through an OCR tool first."
        )
    return Extracted(name, DocKind.PDF, tuple(blocks), size=len(data), pages=len(pages))


def _encrypted(name: str) -> DocumentError:
    return DocumentError(
        f"{name} is protected by a password, so Hearth cannot read it: open it in a PDF "
        "viewer with its password, save a copy without one, and attach that."
    )


def _paragraphs(text: str) -> list[str]:
    """A page's text in paragraphs (blank lines), lines' trailing spaces dropped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    out: list[str] = []
    run: list[str] = []
    for line in lines:
        if line.strip():
            run.append(line)
        elif run:
            out.append("\n".join(run))
            run = []
    if run:
        out.append("\n".join(run))
    return out
