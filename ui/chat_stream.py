"""Drawing a reply as it streams into the chat view's document.

The view's 30 Hz timer hands what arrived to these: thinking is appended as
plain italic text and folds into a "Thought for N s" line when the answer
starts; the answer's finished blocks (``BlockSplitter``) are rendered once and
only the block still open is drawn again, so the work per frame does not grow
with the length of the reply. Kept apart from ``ui.chat_view``, which decides
when to draw and where to scroll.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtGui import QColor, QTextCursor, QTextDocument

from ui.chat_document import StreamState, insert_blocks, remove_to_end
from ui.markdown import MarkdownRenderer


def append_thinking(
    doc: QTextDocument, stream: StreamState, text: str, *, muted: str, color: QColor
) -> None:
    """Thinking text at the end: after a "Thinking…" line the first time."""
    cursor = QTextCursor(doc)
    cursor.movePosition(QTextCursor.MoveOperation.End)
    if stream.think_pos is None:
        stream.think_pos = cursor.position()
        stream.think_started = time.monotonic()
        insert_blocks(cursor, f'<p style="color:{muted}"><i>Thinking…</i></p>')
        cursor.insertBlock()
    fmt = cursor.charFormat()
    fmt.setForeground(color)
    fmt.setFontItalic(True)
    cursor.insertText(text, fmt)
    stream.thinking += text


def fold_thinking(doc: QTextDocument, stream: StreamState, *, muted: str) -> None:
    """The answer started: replace the streamed thinking with a folded line."""
    assert stream.think_pos is not None
    thinking_s = time.monotonic() - stream.think_started
    cursor = QTextCursor(doc)
    cursor.setPosition(stream.think_pos)
    remove_to_end(cursor)
    seconds = f" for {thinking_s:.0f} s" if thinking_s >= 1 else ""
    insert_blocks(cursor, f'<p style="color:{muted}"><i>Thought{seconds}</i></p>')
    stream.think_pos = None
    stream.open_pos = cursor.position()


def render_answer(
    doc: QTextDocument,
    stream: StreamState,
    renderer: MarkdownRenderer,
    register_code: Callable[[str], int],
    final: bool,
) -> None:
    """Draw the answer so far: newly finished blocks once, the open one again."""
    text = stream.text
    closed = len(text) if final else stream.splitter.feed(text)
    cursor = QTextCursor(doc)
    cursor.setPosition(stream.open_pos)
    remove_to_end(cursor)
    if closed > stream.rendered_closed:
        chunk = text[stream.rendered_closed : closed]
        insert_blocks(cursor, renderer.render(chunk, register_code))
        stream.rendered_closed = closed
        stream.open_pos = cursor.position()
    tail = text[closed:]
    if tail:
        fence = stream.splitter.open_fence_start
        if fence is not None and fence >= closed:
            # An open code fence: shown plain until it closes (no re-highlighting per frame).
            header, _, code = text[fence:].partition("\n")
            lang = header.strip().lstrip("`~").strip().split(" ")[0]
            pre = renderer.render(text[closed:fence]) if fence > closed else ""
            block = renderer.code_block_html(code, lang, None, closed=False)
            insert_blocks(cursor, pre + block)
        else:
            insert_blocks(cursor, renderer.render(tail))
