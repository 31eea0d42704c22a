"""HTML documents with the standard library's parser: the text a browser shows, headings
kept as headings, scripts and styles dropped, each block numbered by its source line."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from engine.documents.types import Block, BlockKind

__all__ = ["html_blocks"]

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
_BLOCK = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "nav", "aside",
        "blockquote", "ul", "ol", "li", "dl", "dt", "dd", "table", "tr", "figure",
        "figcaption", "form", "fieldset", "address", "hr", "br", "details", "summary",
        "caption", "thead", "tbody", "tfoot",
    }
)  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_SPACE = re.compile(r"\s+")


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._text: list[str] = []
        self._line = 1
        self._skip = 0  # depth inside elements whose text is not shown
        self._pre = 0
        self._heading = 0
        self._title: list[str] | None = None
        self._title_line = 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._skip:
            self._title, self._title_line = [], self.getpos()[0]
            return
        if tag in _SKIP:
            self._skip += 1
            return
        if tag in _HEADINGS or tag in _BLOCK or tag == "pre":
            self._flush()
            self._line = self.getpos()[0]
        if tag in _HEADINGS:
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            self._pre += 1
        elif tag == "li":
            self._text.append("- ")
        elif tag in ("td", "th") and self._text:
            self._text.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            title = _SPACE.sub(" ", "".join(self._title)).strip()
            if title:
                self.blocks.append(Block(title, BlockKind.HEADING, line=self._title_line, level=1))
            self._title = None
            return
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if tag in _HEADINGS or tag in _BLOCK or tag == "pre":
            self._flush()
            self._heading = 0 if tag in _HEADINGS else self._heading
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        elif not self._skip:
            if not self._text and not data.strip():
                return
            if not self._text:
                self._line = self.getpos()[0]
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        raw = "".join(self._text)
        self._text = []
        if self._pre:
            text, kind, level = raw.strip("\n"), BlockKind.CODE, 0
        else:
            text = _SPACE.sub(" ", raw).strip()
            kind = BlockKind.HEADING if self._heading else BlockKind.PARAGRAPH
            level = self._heading
        if text.strip(" -|"):
            self.blocks.append(Block(text, kind, line=self._line, level=level))


def html_blocks(text: str) -> tuple[Block, ...]:
    reader = _Reader()
    reader.feed(text)
    reader.close()
    return tuple(reader.blocks)
