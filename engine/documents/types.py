"""A document's text as Hearth reads it: blocks with where they came from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.documents.tokens import estimate_tokens
from engine.errors import KnownError

__all__ = ["Block", "BlockKind", "DocKind", "DocumentError", "Extracted"]


class DocumentError(KnownError):
    """A file could not be read as a document (encrypted, scanned, binary, gone, too big)."""


class DocKind(StrEnum):
    """What kind of file a document was read from.

    # NOTE: stored on disk (with the attachment); keep values stable.
    """

    TEXT = "text"
    MARKDOWN = "markdown"
    CODE = "code"  # source code and config files
    PDF = "pdf"
    DOCX = "docx"
    HTML = "html"
    CSV = "csv"


class BlockKind(StrEnum):
    HEADING = "heading"
    PARAGRAPH = "paragraph"
    CODE = "code"  # a fenced code block, or a stretch of a source file between blank lines
    TABLE = "table"  # rows of a CSV file or a DOCX table, one row a line


@dataclass(frozen=True, slots=True)
class Block:
    """A piece of a document that chunking keeps together when it can.

    ``page``: 1-based page (PDF), else None. ``line``: 1-based first line in the file
    (text, code, Markdown, HTML, CSV), else None. ``level``: a heading's level (1 = top).
    """

    text: str
    kind: BlockKind = BlockKind.PARAGRAPH
    page: int | None = None
    line: int | None = None
    level: int = 0


@dataclass(frozen=True, slots=True)
class Extracted:
    """A document's text, read once when it is attached; the file is not needed after.

    ``pages``: a PDF's page count; ``lines``: a text file's line count; ``size``: the
    file's bytes; ``encoding``: how a text file was decoded ("" when not a text file).
    """

    name: str
    kind: DocKind
    blocks: tuple[Block, ...]
    size: int
    pages: int | None = None
    lines: int | None = None
    encoding: str = ""
    # A text file's own text (Markdown, code, CSV keep their layout); "" for the others.
    source: str = ""

    @property
    def text(self) -> str:
        """The whole document as the model reads it when it fits: a text file as it is,
        the others' blocks with Markdown headings."""
        if self.source:
            return self.source
        return "\n\n".join(
            f"{'#' * b.level} {b.text}" if b.kind is BlockKind.HEADING and b.level else b.text
            for b in self.blocks
        )

    @property
    def tokens(self) -> int:
        """About how many tokens the whole text costs (see tokens.estimate_tokens)."""
        return estimate_tokens(self.text)
