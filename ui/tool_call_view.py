"""A tool call in a reply, as the chat view shows it: one block per call with the
tool, its server, how long it ran and how it ended; its arguments and result when
opened (``hearth-tool:toggle/<call key>``), a long result folded.

Everything here is escaped text: a tool's output can hold HTML or Markdown made to
load images or open links, and none of it is rendered (the view fetches nothing
either: ``ChatView.loadResource``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence

from PySide6.QtGui import QTextCursor, QTextDocument

from engine.history.types import StoredMessage
from engine.types import Part, TextPart, ToolCallPart, ToolResultPart
from ui.chat_document import StreamState, insert_blocks, remove_to_end
from ui.markdown import Palette

__all__ = [
    "TOOL_SCHEME",
    "ToolBlocks",
    "open_keys",
    "parts_html",
    "place_tool_part",
    "tool_block_html",
]

TOOL_SCHEME = "hearth-tool"
# A result longer than this is shown folded to it, with "show all".
FOLD_CHARS = 1200
_FOLD_LINES = 16


def _pre(text: str, border: str, bg: str) -> str:
    body = html.escape(text).replace("\n", "<br>").replace("  ", "&nbsp; ")
    return (
        f'<table width="100%" cellpadding="6" cellspacing="0" bgcolor="{bg}" '
        f'style="border: 1px solid {border}; margin-top:2px; margin-bottom:4px">'
        f'<tr><td><span style="font-family: monospace">{body}</span></td></tr></table>'
    )


def _folded(text: str, full: bool) -> tuple[str, int]:
    """The result as shown and how many characters are left out."""
    if full:
        return text, 0
    lines = text.split("\n")
    cut = text if len(lines) <= _FOLD_LINES else "\n".join(lines[:_FOLD_LINES])
    cut = cut[:FOLD_CHARS]
    return cut, len(text) - len(cut)


def tool_block_html(
    call: ToolCallPart,
    result: ToolResultPart | None,
    *,
    key: str,
    expanded: bool,
    full: bool,
    muted: str,
    border: str,
    bg: str,
) -> str:
    """One call's block. ``result`` None: still running (or asking)."""
    where = f" · {html.escape(call.server)}" if call.server else " · built in"
    if result is None:
        state = "waiting or running…"
    elif result.ok:
        state = f"{result.duration_ms} ms · done"
    else:
        state = f"{result.duration_ms} ms · not run or failed" if result.duration_ms else "not run"
    toggle = "Hide details" if expanded else "Show details"
    head = (
        f'<p style="margin-top:6px; margin-bottom:2px">'
        f"<b>Tool: {html.escape(call.name)}</b>"
        f'<span style="color:{muted}">{where} · {state}</span>'
        f' &nbsp;<a href="{TOOL_SCHEME}:toggle/{html.escape(key)}">{toggle}</a></p>'
    )
    if not expanded:
        return head
    args = json.dumps(call.plain_arguments(), ensure_ascii=False, indent=2)
    parts = [
        head,
        f'<p style="color:{muted}; margin:0">Arguments</p>',
        _pre(args, border, bg),
    ]
    if result is not None:
        shown, left = _folded(result.content, full)
        label = "Result" if result.ok else "What the model was told"
        parts.append(f'<p style="color:{muted}; margin:0">{label}</p>')
        parts.append(_pre(shown, border, bg))
        if left:
            parts.append(
                f'<p style="color:{muted}; margin-top:0">{left:,} more characters '
                f'<a href="{TOOL_SCHEME}:full/{html.escape(key)}">Show all</a></p>'
            )
    return "".join(parts)


def parts_html(
    msg_id: int,
    parts: Sequence[Part],
    render_text: Callable[[str], str],
    *,
    expanded: set[str],
    full: set[str],
    muted: str,
    border: str,
    bg: str,
) -> str:
    """A reply's text (Markdown, via ``render_text``) and its tool blocks in order."""
    results = {p.call_id: p for p in parts if isinstance(p, ToolResultPart)}
    out: list[str] = []
    for part in parts:
        if isinstance(part, TextPart):
            if part.text.strip():
                out.append(render_text(part.text))
        elif isinstance(part, ToolCallPart):
            key = f"{msg_id}:{part.id}"
            out.append(
                tool_block_html(
                    part,
                    results.get(part.id),
                    key=key,
                    expanded=key in expanded,
                    full=key in full,
                    muted=muted,
                    border=border,
                    bg=bg,
                )
            )
    return "".join(out)


def open_keys(msg: StoredMessage, opened: set[str], full: set[str]) -> tuple[str, ...]:
    """Which of ``msg``'s tool blocks are open or whole (part of its cached HTML's key)."""
    if not msg.parts:
        return ()
    prefix = f"{msg.id}:"
    return tuple(
        sorted([k for k in opened if k.startswith(prefix)])
        + sorted([f"+{k}" for k in full if k.startswith(prefix)])
    )


def place_tool_part(
    document: QTextDocument,
    stream: StreamState,
    part: ToolCallPart | ToolResultPart,
    html_of: Callable[[ToolCallPart, ToolResultPart | None], str],
) -> None:
    """Show a streaming reply's call (running) or its result (the block drawn again,
    finished), then start the reply's next stretch of text below the blocks."""
    calls = stream.tool_calls
    if isinstance(part, ToolCallPart):
        calls.append((0, part, None))  # (its position is set where it is drawn)
        first = len(calls) - 1
    else:
        first = next((i for i, (_, c, _r) in enumerate(calls) if c.id == part.call_id), -1)
        if first < 0:
            return
        pos, call, _ = calls[first]
        calls[first] = (pos, call, part)
    # Redraw from the block that changed: the results of a round come after all its calls.
    cursor = QTextCursor(document)
    if isinstance(part, ToolCallPart):
        cursor.movePosition(QTextCursor.MoveOperation.End)
    else:
        cursor.setPosition(calls[first][0])
        remove_to_end(cursor)
    for i, (_, call, result) in enumerate(calls[first:], start=first):
        calls[i] = (cursor.position(), call, result)
        insert_blocks(cursor, html_of(call, result))
    stream.start_segment(cursor.position())


class ToolBlocks:
    """The chat view's tool blocks: which are open or shown whole, and their HTML."""

    def __init__(self, palette: Callable[[], Palette], render_text: Callable[[str], str]):
        self._palette, self._render_text = palette, render_text
        self.opened: set[str] = set()  # "<message id>:<call id>", "live:<call id>"
        self.full: set[str] = set()

    def keys_of(self, msg: StoredMessage) -> tuple[str, ...]:
        return open_keys(msg, self.opened, self.full)

    def message_html(self, msg: StoredMessage) -> str:
        pal = self._palette()
        return parts_html(
            msg.id, msg.parts, self._render_text, expanded=self.opened, full=self.full,
            muted=pal.muted, border=pal.code_border, bg=pal.code_bg,
        )  # fmt: skip

    def live_html(self, call: ToolCallPart, result: ToolResultPart | None) -> str:
        pal, key = self._palette(), f"live:{call.id}"
        return tool_block_html(
            call, result, key=key, expanded=key in self.opened, full=key in self.full,
            muted=pal.muted, border=pal.code_border, bg=pal.code_bg,
        )  # fmt: skip

    def toggle(self, path: str) -> None:
        """A ``hearth-tool:`` link's path: ``toggle/<key>`` or ``full/<key>``."""
        what, _, key = path.partition("/")
        (self.full if what == "full" else self.opened).symmetric_difference_update({key})
