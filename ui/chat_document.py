"""Building blocks of the chat view's document: appending HTML as blocks of its own,
removing a streamed tail, finding links, and the state of a reply being streamed.

Kept apart from ``ui.chat_view`` so that the view reads as what it shows; these are
the QTextDocument details that make appending exact.
"""

from __future__ import annotations

import html

from PySide6.QtGui import QTextCursor, QTextDocument

from engine.types import ToolCallPart, ToolResultPart
from ui.markdown import BlockSplitter


def plain_html(text: str) -> str:
    return "<p>" + html.escape(text).replace("\n", "<br>") + "</p>"


_SENTINEL = "<p>x</p>"  # one throw-away block, see insert_blocks


def insert_blocks(cursor: QTextCursor, html_text: str) -> None:
    """Append HTML at the end of the document as blocks of their own, laid out
    exactly as ``setHtml`` of the whole text would lay them out.

    ``QTextCursor.insertHtml`` merges the fragment's first block into the block
    at the cursor and keeps *that* block's format (its margins), so a streamed
    paragraph would take the margins of the header or table before it: uneven
    gaps that jumped when the finished reply was re-rendered. So a sentinel
    paragraph goes first and takes the merge; every real block then arrives
    with its own format, and the sentinel is removed. The cursor ends at the end.
    """
    html_text = html_text.strip()  # a trailing newline would become a trailing space
    if not html_text:
        return
    doc = cursor.document()
    cursor.movePosition(QTextCursor.MoveOperation.End)
    if doc.characterCount() <= 1:  # an empty document: its one block takes the format
        cursor.insertHtml(html_text)
        return
    sentinel = QTextCursor(doc)
    if cursor.block().length() > 1:  # a block with text: the sentinel gets a block of its own
        cursor.insertBlock()
        start = cursor.position()
        cursor.insertHtml(_SENTINEL + html_text)
        sentinel.setPosition(start - 1)  # its separator too, so the block before is untouched
        sentinel.setPosition(start + 1, QTextCursor.MoveMode.KeepAnchor)
        sentinel.removeSelectedText()
    else:  # an empty block (the one after a table) stays empty, with its own format
        start = cursor.position()
        kept = (cursor.blockFormat(), cursor.blockCharFormat())
        cursor.insertHtml(_SENTINEL + html_text)  # an empty block takes the sentinel's format
        sentinel.setPosition(start)
        sentinel.setPosition(start + 1, QTextCursor.MoveMode.KeepAnchor)
        sentinel.removeSelectedText()
        sentinel.setBlockFormat(kept[0])
        sentinel.setBlockCharFormat(kept[1])
    cursor.movePosition(QTextCursor.MoveOperation.End)


def remove_to_end(cursor: QTextCursor) -> None:
    """Remove from the cursor to the end of the document. The block at the cursor
    keeps its format: removing a range makes it take the format of the range's
    last block (a paragraph's margins on the empty block after a table)."""
    kept = (cursor.blockFormat(), cursor.blockCharFormat())
    cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
    cursor.removeSelectedText()
    cursor.setBlockFormat(kept[0])
    cursor.setBlockCharFormat(kept[1])


def links_in(doc: QTextDocument) -> list[tuple[int, int, str]]:
    """Every link in the document: (start, end, href), in document order."""
    found: list[tuple[int, int, str]] = []
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            fmt = fragment.charFormat()
            if fmt.isAnchor() and fmt.anchorHref():
                start, end, href = (
                    fragment.position(),
                    fragment.position() + fragment.length(),
                    fmt.anchorHref(),
                )
                if found and found[-1][2] == href and found[-1][1] == start:
                    start = found.pop()[0]  # one link in several formats
                found.append((start, end, href))
            it += 1
        block = block.next()
    return found


class StreamState:
    """The state of the reply being streamed."""

    def __init__(self) -> None:
        self.text = ""
        self.thinking = ""
        self.splitter = BlockSplitter()
        self.rendered_closed = 0  # text[:rendered_closed] is committed to the document
        self.open_pos = 0  # document position where the open tail begins
        self.think_pos: int | None = None  # where the streaming thinking region begins
        self.think_started = 0.0
        self.pending: list[str] = []
        self.pending_thinking: list[str] = []
        # The reply's tool blocks: (document position, call, result or None).
        self.tool_calls: list[tuple[int, ToolCallPart, ToolResultPart | None]] = []

    def start_segment(self, pos: int) -> None:
        """The reply's text goes on after a tool block: a new stretch of Markdown."""
        self.text = ""
        self.splitter = BlockSplitter()
        self.rendered_closed = 0
        self.open_pos = pos
