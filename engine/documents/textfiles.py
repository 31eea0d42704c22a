"""Text files as documents: decoding without a guess that loses text, and their
structure (Markdown headings and code fences, paragraphs, CSV records) with line numbers."""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator

from engine.documents.types import Block, BlockKind, DocKind, DocumentError

__all__ = ["decode", "looks_binary", "text_blocks"]

# Control characters that plain text has; any other in more than 1% of the first
# 64 kB (or a NUL) means the bytes are not text, whatever the file's name says.
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\b\x1b")
_SNIFF = 65_536
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts with UTF-16 LE's
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def looks_binary(data: bytes) -> bool:
    head = data[:_SNIFF]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROLS)
    return controls > len(head) // 100


def decode(name: str, data: bytes) -> tuple[str, str]:
    """The text of a file and the encoding it was read with.

    A byte-order mark decides; else UTF-8; else, if the bytes are text at all, Windows-1252
    (what most non-UTF-8 Western text is), and Latin-1 for the five bytes 1252 leaves
    out — both map every byte to a character, so nothing is dropped or replaced.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _newlines(data.decode(encoding)), encoding
            except UnicodeDecodeError:
                break  # a BOM followed by something else: judge the bytes below
    if _utf16_without_bom(data):
        return _newlines(data.decode("utf-16-le")), "utf-16-le"
    if looks_binary(data):
        raise DocumentError(
            f"{name} is not text (it holds binary data, whatever its name says): "
            "attach the document it came from, or export it as text, PDF or DOCX first."
        )
    try:
        return _newlines(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return _newlines(data.decode("cp1252")), "cp1252"
    except UnicodeDecodeError:
        return _newlines(data.decode("latin-1")), "latin-1"


def _utf16_without_bom(data: bytes) -> bool:
    """ASCII-range text saved as UTF-16 LE without a mark: every second byte is NUL."""
    head = data[:_SNIFF]
    if len(head) < 16 or len(head) % 2:
        return False
    odd = head[1::2]
    return odd.count(0) > len(odd) * 0.9 and head[0::2].count(0) == 0


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_blocks(text: str, kind: DocKind) -> tuple[Block, ...]:
    """A text file's blocks, each with its first line (1-based)."""
    if kind is DocKind.MARKDOWN:
        return tuple(_markdown(text))
    if kind is DocKind.CSV:
        return tuple(_csv(text))
    block_kind = BlockKind.CODE if kind is DocKind.CODE else BlockKind.PARAGRAPH
    return tuple(Block(t, block_kind, line=n) for n, t in _paragraphs(text.split("\n"), 1))


def _paragraphs(lines: list[str], first: int) -> Iterator[tuple[int, str]]:
    """Runs of non-blank lines and the number of each run's first line."""
    start: int | None = None
    for i, line in enumerate(lines):
        if line.strip():
            if start is None:
                start = i
        elif start is not None:
            yield first + start, "\n".join(lines[start:i])
            start = None
    if start is not None:
        yield first + start, "\n".join(lines[start:])


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```+|~~~+)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def _markdown(text: str) -> Iterator[Block]:
    """Headings (ATX and Setext), fenced code kept whole, paragraphs between blank lines."""
    lines = text.split("\n")
    pending: list[str] = []  # the paragraph being read
    pending_at = 0
    i = 0

    def flush() -> Iterator[Block]:
        if pending:
            yield Block("\n".join(pending), BlockKind.PARAGRAPH, line=pending_at + 1)
            pending.clear()

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        heading = _ATX.match(line)
        if fence:
            yield from flush()
            marker = fence.group(1)
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(marker)),
                len(lines) - 1,
            )
            yield Block("\n".join(lines[i : end + 1]), BlockKind.CODE, line=i + 1)
            i = end + 1
            continue
        if heading:
            yield from flush()
            yield Block(
                heading.group(2), BlockKind.HEADING, line=i + 1, level=len(heading.group(1))
            )
        elif len(pending) == 1 and _SETEXT.match(line):
            title = pending[0].strip()
            pending.clear()
            yield Block(
                title, BlockKind.HEADING, line=pending_at + 1, level=1 if "=" in line else 2
            )
        elif not line.strip():
            yield from flush()
        else:
            if not pending:
                pending_at = i
            pending.append(line)
        i += 1
    yield from flush()


_CSV_ROWS_PER_BLOCK = 20


def _csv(text: str) -> Iterator[Block]:
    """The header row as a heading (so every retrieved passage carries the column names),
    then records in groups, each group's first line numbered. A record may span lines
    (a quoted field with a newline); csv tells where each one ends."""
    lines = text.split("\n")
    ends: list[int] = []  # the last line (1-based) of each record
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], ",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(lines, dialect)
    try:
        for _row in reader:
            ends.append(reader.line_num)
    except csv.Error:  # not valid CSV after all: one record a line
        ends = list(range(1, len(lines) + 1))
    if not ends:
        return
    yield Block("\n".join(lines[: ends[0]]), BlockKind.HEADING, line=1, level=1)
    start = ends[0]
    for g in range(1, len(ends), _CSV_ROWS_PER_BLOCK):
        end = ends[min(g + _CSV_ROWS_PER_BLOCK, len(ends)) - 1]
        rows = "\n".join(lines[start:end]).strip("\n")
        if rows:
            yield Block(rows, BlockKind.TABLE, line=start + 1)
        start = end
