"""Cutting a document into chunks for retrieval, along its structure.

A chunk never crosses a heading (a section starts a new chunk, and every chunk carries
its section's heading path) nor a page, keeps a code block or table whole when it fits, and
otherwise packs whole paragraphs up to ``CHUNK_TOKENS``. A block too long for one chunk
is split at lines, then sentences, then words. Consecutive chunks of a section share
up to ``OVERLAP_TOKENS`` (the last paragraph or lines of the one before), so a fact
that straddles a boundary is whole in at least one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from engine.documents.tokens import ASCII_CHARS_PER_TOKEN, estimate_tokens
from engine.documents.types import Block, BlockKind, Extracted
from engine.units import location_label

__all__ = ["CHUNK_TOKENS", "OVERLAP_TOKENS", "Chunk", "chunk_document"]

# ~300 tokens: small enough that 5-8 retrieved chunks fit next to a chat in an 8k
# context, large enough to hold a paragraph with the sentence that explains it.
CHUNK_TOKENS = 300
OVERLAP_TOKENS = 50
HEADING_SEPARATOR = " › "


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable passage: its text, section and where it is in the document."""

    index: int  # its place in the document, from 0
    text: str
    heading: str = ""  # the section's heading path, "Install › On Linux"
    page: int | None = None
    page_end: int | None = None
    line_start: int | None = None
    line_end: int | None = None

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)

    @property
    def location(self) -> str:
        return location_label(self.page, self.line_start, self.line_end, self.page_end)


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    tokens: int
    page: int | None
    line_start: int | None
    line_end: int | None


def chunk_document(
    doc: Extracted, *, target: int = CHUNK_TOKENS, overlap: int = OVERLAP_TOKENS
) -> list[Chunk]:
    return list(chunk_blocks(doc.blocks, target=target, overlap=overlap))


def chunk_blocks(
    blocks: Sequence[Block], *, target: int = CHUNK_TOKENS, overlap: int = OVERLAP_TOKENS
) -> Iterator[Chunk]:
    headings: list[tuple[int, str]] = []  # the open sections: (level, title)
    current: list[_Unit] = []
    size = 0
    index = 0

    def emit() -> Chunk:
        nonlocal index
        heading = HEADING_SEPARATOR.join(t for _, t in headings)
        pages = [u.page for u in current if u.page is not None]
        lines = [u.line_start for u in current if u.line_start is not None]
        ends = [u.line_end for u in current if u.line_end is not None]
        chunk = Chunk(
            index,
            "\n\n".join(u.text for u in current),
            heading,
            page=pages[0] if pages else None,
            page_end=pages[-1] if pages else None,
            line_start=min(lines) if lines else None,
            line_end=max(ends) if ends else None,
        )
        index += 1
        return chunk

    for block in blocks:
        if block.kind is BlockKind.HEADING:
            if current:
                yield emit()
            current, size = [], 0
            level = max(1, block.level)
            headings = [(lv, t) for lv, t in headings if lv < level]
            headings.append((level, " ".join(block.text.split())))
            continue
        for unit in _units(block, target):
            new_page = bool(current) and unit.page != current[-1].page
            if current and (new_page or size + unit.tokens > target):
                yield emit()
                # A new page starts clean: a citation then names one page, exactly.
                current = [] if new_page else _carry(current, overlap)
                size = sum(u.tokens for u in current)
            current.append(unit)
            size += unit.tokens
    if current:
        yield emit()


def _carry(previous: list[_Unit], overlap: int) -> list[_Unit]:
    """The end of the chunk just emitted that starts the next one: whole units that fit
    in ``overlap``, else the last words of the last unit."""
    kept: list[_Unit] = []
    total = 0
    for unit in reversed(previous):
        if total + unit.tokens > overlap:
            break
        kept.insert(0, unit)
        total += unit.tokens
    if kept or not previous or overlap <= 0:
        return kept
    last = previous[-1]
    tail = last.text[-int(overlap * ASCII_CHARS_PER_TOKEN) :]
    tail = tail.split(" ", 1)[-1] if " " in tail else tail  # start at a word
    start = last.line_end if last.line_end is not None else None
    return [_Unit("…" + tail, estimate_tokens(tail), last.page, start, last.line_end)]


_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


def _units(block: Block, target: int) -> Iterator[_Unit]:
    """The block whole when it fits in a chunk, else its lines, sentences or words."""
    tokens = estimate_tokens(block.text)
    last_line = block.line + block.text.count("\n") if block.line is not None else None
    if tokens <= target:
        yield _Unit(block.text, tokens, block.page, block.line, last_line)
        return
    run: list[str] = []
    run_tokens = 0
    run_start = block.line
    for offset, line in enumerate(block.text.split("\n")):
        number = block.line + offset if block.line is not None else None
        line_tokens = estimate_tokens(line) + 1
        if run and run_tokens + line_tokens > target:
            yield _Unit("\n".join(run), run_tokens, block.page, run_start, _before(number))
            run, run_tokens = [], 0
        if line_tokens > target:
            yield from (
                _Unit(piece, estimate_tokens(piece), block.page, number, number)
                for piece in _split_long(line, target)
            )
            continue
        if not run:
            run_start = number
        run.append(line)
        run_tokens += line_tokens
    if run:
        yield _Unit("\n".join(run), run_tokens, block.page, run_start, last_line)


def _before(line: int | None) -> int | None:
    return None if line is None else line - 1


def _split_long(text: str, target: int) -> Iterator[str]:
    """A line longer than a chunk: whole sentences, and a sentence too long, by words
    (a line without spaces, by characters)."""
    limit = int(target * ASCII_CHARS_PER_TOKEN)
    piece = ""
    for sentence in _SENTENCE.split(text):
        for word in _words(sentence, limit):
            if piece and estimate_tokens(piece) + estimate_tokens(word) + 1 > target:
                yield piece
                piece = ""
            piece = f"{piece} {word}" if piece else word
    if piece:
        yield piece


def _words(sentence: str, limit: int) -> Iterator[str]:
    if len(sentence) <= limit:
        yield sentence
        return
    for word in sentence.split(" "):
        for i in range(0, max(1, len(word)), limit):
            yield word[i : i + limit]
