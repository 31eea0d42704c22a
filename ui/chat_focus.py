"""Keyboard focus on the links of the chat view, and where a message lies in it.

Tab and Shift+Tab move through the links under the messages (QTextBrowser's own
stepping); these helpers land that focus where a person expects it (the first
link in sight, the same link after a rebuild), draw a clear ring around it, and
find a message's span for search hits. They work on any QTextBrowser, so the
view (``ui/chat_view.py``) keeps only the rendering.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QPainter, QPalette, QPen, QTextCursor, QTextDocument
from PySide6.QtWidgets import QTextBrowser

from ui.chat_document import links_in

Link = tuple[int, int, str]  # start, end, href


def focus_first_in_sight(view: QTextBrowser, forward: bool) -> None:
    """Tabbing in lands on the first (Shift+Tab: last) link in sight, not on
    nothing: QTextBrowser would otherwise search from wherever its cursor was,
    and Shift+Tab from the top would leave at once, past every link."""
    links = links_in(view.document())
    if not links:
        return
    # By block geometry, which lays the document out as far as needed (a hit
    # test at the viewport's corner can answer "the end" before the first paint).
    layout, doc = view.document().documentLayout(), view.document()
    top = view.verticalScrollBar().value()
    bottom = top + view.viewport().height()
    for link in links if forward else reversed(links):
        rect = layout.blockBoundingRect(doc.findBlock(link[0]))
        if (rect.bottom() > top) if forward else (rect.top() < bottom):
            focus_link(view, links, link, forward)
            return
    focus_link(view, links, links[-1] if forward else links[0], forward)


def focus_link(view: QTextBrowser, links: list[Link], target: Link, forward: bool) -> None:
    """Give ``target`` (one of ``links``) the keyboard focus."""
    cursor = QTextCursor(view.document())
    # Select the character just outside the link, then take QTextBrowser's own step
    # onto it: the same focus (and frame) as a Tab press. (It steps from a
    # selection only; with none it starts over from the document's start or end,
    # which is right for the first and the last link.)
    if forward and target is not links[0]:
        cursor.setPosition(target[0] - 1)
        cursor.setPosition(target[0], QTextCursor.MoveMode.KeepAnchor)
    elif not forward and target is not links[-1]:
        cursor.setPosition(target[1])
        cursor.setPosition(target[1] + 1, QTextCursor.MoveMode.KeepAnchor)
    view.setTextCursor(cursor)
    view.focusNextPrevChild(forward)


def focused_link(view: QTextBrowser) -> tuple[int, str] | None:
    """(position, href) of the link that has keyboard focus, if one has."""
    cursor = view.textCursor()
    if not cursor.hasSelection():
        return None
    probe = QTextCursor(view.document())
    probe.setPosition(cursor.selectionStart() + 1)
    href = probe.charFormat().anchorHref()
    return (cursor.selectionStart(), href) if href else None


def refocus(view: QTextBrowser, pos: int, href: str, *, nearest: bool = True) -> None:
    """After a rebuild: the same link again, else (``nearest``) the same action
    nearest to where it was, else the next link."""
    links = links_in(view.document())
    if not links:
        return
    action = href.rpartition("/")[0]
    same = [link for link in links if link[2] == href]
    if not same and not nearest:
        return
    same = same or [link for link in links if action and link[2].rpartition("/")[0] == action]
    if same:
        target = min(same, key=lambda link: abs(link[0] - pos))
    else:
        target = next((link for link in links if link[1] > pos), links[-1])
    focus_link(view, links, target, True)


def paint_focus_ring(view: QTextBrowser) -> None:
    """A clear ring around the link in keyboard focus (Qt's own is a faint dotted line)."""
    if not view.hasFocus() or focused_link(view) is None:
        return
    cursor = view.textCursor()
    start, end = QTextCursor(cursor), QTextCursor(cursor)
    start.setPosition(cursor.selectionStart())
    end.setPosition(cursor.selectionEnd())
    left, right = view.cursorRect(start), view.cursorRect(end)
    if left.top() != right.top():  # a link broken over two lines: Qt's frame will do
        return
    ring = QRect(QPoint(left.left(), left.top()), QPoint(right.right(), right.bottom()))
    painter = QPainter(view.viewport())
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(view.palette().color(QPalette.ColorRole.Highlight), 2))
    painter.drawRoundedRect(ring.adjusted(-3, -1, 3, 1), 3, 3)
    painter.end()


def message_span(doc: QTextDocument, msg_id: int) -> tuple[int, int] | None:
    """Where message ``msg_id`` (its ``m<id>`` anchor) starts and ends in ``doc``
    (None: not shown)."""
    starts: dict[str, int] = {}
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fragment = it.fragment()
            for name in fragment.charFormat().anchorNames():
                starts.setdefault(name, fragment.position())
            it += 1
        block = block.next()
    start = starts.get(f"m{msg_id}")
    if start is None:
        return None
    later = [pos for name, pos in starts.items() if name.startswith("m") and pos > start]
    return start, min(later, default=doc.characterCount())
