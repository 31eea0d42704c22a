"""Markdown → the HTML subset QTextDocument understands.

CommonMark plus GitHub tables, strikethrough and task lists, with fenced code
highlighted by Pygments (inline styles: Qt has no stylesheet classes for
rich text). Safety and privacy:

- raw HTML in model output is escaped and shown as text (``html=False``);
- images are never fetched: they become a link with their alt text, and
  ``ChatView.loadResource`` refuses every remote resource as well;
- links are plain anchors; the view opens them only when clicked.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.util import ClassNotFound

RegisterCode = Callable[[str], int]

COPY_CODE_SCHEME = "hearth-copy-code"


@dataclass(frozen=True, slots=True)
class Palette:
    code_bg: str
    code_border: str
    muted: str
    pygments_style: str
    quote: str


LIGHT = Palette("#f4f1ec", "#e2dcd2", "#66615a", "friendly", "#6b645a")  # muted: ui.theme
DARK = Palette("#25272b", "#3a3d43", "#9a9ea6", "github-dark", "#a8acb3")  # (MUTED_*)

_TASK = re.compile(r"<li>(\n?<p>)?\[( |x|X)\] ")  # tight and loose lists
_TASK_LIST = re.compile(r"<ul>\n<li>(?=\n?(?:<p>)?[☐☑] )")


class MarkdownRenderer:
    def __init__(self, dark: bool = False) -> None:
        self.palette = DARK if dark else LIGHT
        self._formatter = HtmlFormatter(
            nowrap=True, noclasses=True, style=self.palette.pygments_style
        )
        md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        md.enable(["table", "strikethrough"])
        # markdown-it binds rules to its own renderer: pass closures over self.
        rules = {
            "fence": self._render_fence,
            "code_block": self._render_fence,
            "image": self._render_image,
            "table_open": self._render_table_open,
            "blockquote_open": self._render_quote_open,
            "blockquote_close": self._render_quote_close,
        }
        for name, rule in rules.items():
            md.add_render_rule(name, _unbound(rule))
        self._md = md

    def render(self, text: str, register_code: RegisterCode | None = None) -> str:
        env: dict[str, Any] = {"register_code": register_code}
        out: str = self._md.render(text, env)
        if "[" not in out:
            return out
        out = _TASK.sub(
            lambda m: f"<li>{m.group(1) or ''}{'☐' if m.group(2) == ' ' else '☑'} ", out
        )
        # A task list shows its boxes, not bullets as well.
        return _TASK_LIST.sub('<ul style="list-style-type:none">\n<li>', out)

    # --- render rules (signature fixed by markdown-it) ---------------------------
    def _render_fence(self, tokens: Sequence[Token], idx: int, _o: Any, env: dict[str, Any]) -> str:
        token = tokens[idx]
        code = token.content
        lang = (token.info or "").strip().split(" ")[0] if token.type == "fence" else ""
        register: RegisterCode | None = env.get("register_code")
        return self.code_block_html(code, lang, register(code) if register else None)

    def code_block_html(
        self, code: str, lang: str, copy_id: int | None, *, closed: bool = True
    ) -> str:
        """A code block: a one-cell table gives it a background and padding in Qt."""
        p = self.palette
        if closed:
            try:
                lexer = get_lexer_by_name(lang) if lang else TextLexer()
            except ClassNotFound:
                lexer = TextLexer()
            body = highlight(code, lexer, self._formatter).rstrip("\n")
        else:  # still streaming: plain text, highlighted once it closes
            body = html.escape(code.rstrip("\n"))
        label = html.escape(lang) if lang else "code"
        copy = (
            f'<a href="{COPY_CODE_SCHEME}:{copy_id}" style="text-decoration:none">Copy</a>'
            if copy_id is not None
            else ""
        )
        return (
            f'<table width="100%" cellspacing="0" cellpadding="8" border="0" '
            f'style="background-color:{p.code_bg}; border-color:{p.code_border}; '
            f'margin-top:6px; margin-bottom:6px;">'
            f'<tr><td style="color:{p.muted}; font-size:small">{label}</td>'
            f'<td align="right" style="font-size:small">{copy}</td></tr>'
            # pre-wrap: a long line wraps on screen (the text keeps it whole) instead
            # of widening the table and making the whole chat scroll sideways.
            f'<tr><td colspan="2"><pre style="font-family:monospace; margin:0; '
            f'white-space:pre-wrap">{body}</pre>'
            f"</td></tr></table>\n"
        )

    def _render_image(self, tokens: Sequence[Token], idx: int, _o: Any, _env: Any) -> str:
        token = tokens[idx]
        src = html.escape(str(token.attrGet("src") or ""), quote=True)
        alt = html.escape(token.content or "image")
        return f'<a href="{src}">[image: {alt}]</a>'

    def _render_table_open(self, *_args: Any) -> str:
        return (
            f'<table border="1" cellspacing="0" cellpadding="5" '
            f'style="border-color:{self.palette.code_border}; '
            f'margin-top:6px; margin-bottom:6px;">\n'
        )

    def _render_quote_open(self, *_args: Any) -> str:
        return (
            f'<table cellspacing="0" cellpadding="0" '
            f'style="margin-left:4px; margin-top:6px; margin-bottom:6px"><tr>'
            f'<td width="3" style="background-color:{self.palette.code_border}"></td>'
            f'<td style="padding-left:10px; color:{self.palette.quote}">'
        )

    def _render_quote_close(self, *_args: Any) -> str:
        return "</td></tr></table>\n"


def _unbound(rule: Callable[..., str]) -> Callable[..., str]:
    def call(_renderer: Any, *args: Any) -> str:
        return rule(*args)

    return call


# --- finding where the text can be cut into finished blocks -------------------------
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")  # a list item's first line


class BlockSplitter:
    """Tracks, across calls, how much of a growing Markdown text is made of
    finished blocks: text up to a blank line outside a code fence, or up to the
    end of a closing fence. Each call scans only the lines added since the last
    one, so the cost per call is independent of the length of the text.

    Inside a list a blank line does not finish anything yet: an indented line or
    another item may follow, and then the blank line was part of one (loose)
    list, which renders with other spacing than two lists would. The list is
    finished once a line starts at the margin with something else."""

    def __init__(self) -> None:
        self._scanned = 0  # offset of the first line not yet scanned
        self._fence: str | None = None  # the open fence's marker
        self._fence_start = 0  # offset where the open fence began
        self._in_list = False
        self._blank_after: int | None = None  # in a list: the end of its last blank line
        self.closed = 0  # text[:closed] is finished blocks

    def feed(self, text: str) -> int:
        pos = self._scanned
        while True:
            end = text.find("\n", pos)
            if end < 0:
                break
            self._line(text[pos:end], pos, end + 1)
            pos = end + 1
        self._scanned = pos
        return self.closed

    def _line(self, line: str, start: int, after: int) -> None:
        m = _FENCE.match(line)
        if self._fence is not None:
            if (
                m
                and m.group(1)[0] == self._fence[0]
                and len(m.group(1)) >= len(self._fence)
                and not line.strip()[len(m.group(1)) :].strip()
            ):
                self._fence = None
                if not self._in_list:
                    self.closed = after
            return
        blank = not line.strip()
        at_margin = not blank and not line[0].isspace() and not _ITEM.match(line)
        if self._in_list and at_margin and self._blank_after is not None:
            # Something at the margin after a blank line: a block of its own.
            self.closed = self._blank_after
            self._in_list = False
        if not blank:
            self._blank_after = None
        if m:
            self._fence = m.group(1)
            self._fence_start = start
        elif _ITEM.match(line):
            self._in_list = True
        elif blank:
            if self._in_list:
                self._blank_after = after
            else:
                self.closed = after

    @property
    def open_fence_start(self) -> int | None:
        """Where the still-open code fence starts, if one is open."""
        return self._fence_start if self._fence is not None else None
