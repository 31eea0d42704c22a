"""Citations in a reply: "[2]" in the text becomes a link to the passage it names, and
a Sources line under the reply lists every passage the model was given."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence

from engine.history.types import StoredMessage
from engine.types import DocumentPart

__all__ = [
    "CITE_SCHEME",
    "DOC_SCHEME",
    "DocumentMarks",
    "document_link",
    "documents_html",
    "link_citations",
    "sources_html",
]

CITE_SCHEME = "hearth-cite"  # hearth-cite:<message id>/<number>
DOC_SCHEME = "hearth-doc"  # hearth-doc:<message id>/<sha256>: a document on a message

# "[3]" or "[1, 2]" / "[1][2]" in text, not inside a tag (the lookahead refuses a ">"
# before the next "<": we are inside a tag's attributes then).
_MARKER = re.compile(r"\[(\d{1,2}(?:\s*,\s*\d{1,2})*)\](?![^<]*>)")


def link_citations(body: str, msg_id: int, numbers: frozenset[int]) -> str:
    """``body`` (a reply's HTML) with each [n] of ``numbers`` a link to its passage."""
    if not numbers:
        return body

    def link(match: re.Match[str]) -> str:
        parts = [p.strip() for p in match.group(1).split(",")]
        if not all(int(p) in numbers for p in parts):
            return match.group(0)
        links = ", ".join(
            f'<a href="{CITE_SCHEME}:{msg_id}/{p}" title="Open passage {p}"'
            f' style="text-decoration:none">{p}</a>'
            for p in parts
        )
        return f"[{links}]"

    # Only in text between tags, never inside <pre> (code may hold "[1]").
    out: list[str] = []
    in_pre = False
    for piece in re.split(r"(<[^>]+>)", body):
        if piece.startswith("<"):
            lowered = piece.lower()
            in_pre = (in_pre or lowered.startswith("<pre")) and not lowered.startswith("</pre")
            out.append(piece)
        else:
            out.append(piece if in_pre else _MARKER.sub(link, piece))
    return "".join(out)


def sources_html(muted: str, msg_id: int, sources: Sequence[tuple[int, str]]) -> str:
    """ "Sources: [1] report.pdf, page 4 · [2] …" under a reply: (number, label) each."""
    if not sources:
        return ""
    links = " · ".join(
        f'<a href="{CITE_SCHEME}:{msg_id}/{n}" style="text-decoration:none">[{n}]</a>'
        f" {html.escape(label)}"
        for n, label in sources
    )
    return f'<p style="font-size:small; color:{muted}">Sources: {links}</p>'


def documents_html(muted: str, msg_id: int, documents: Sequence[tuple[str, str, str]]) -> str:
    """The documents a question carries, one line each: its name (a link: how it is
    read, open it) and "12 pages · 12.3k tokens · read whole". (sha256, name, detail)."""
    lines = [
        f'<a href="{DOC_SCHEME}:{msg_id}/{sha}" title="How the model reads {html.escape(name)}"'
        f' style="text-decoration:none">▤ {html.escape(name)}</a>'
        + (f" · {html.escape(detail)}" if detail else "")
        for sha, name, detail in documents
    ]
    return f'<p style="font-size:small; color:{muted}">{"<br>".join(lines)}</p>' if lines else ""


class DocumentMarks:
    """What the chat view adds to messages for documents: each question's documents
    (a line each) and each reply's cited passages (links and a Sources line)."""

    def __init__(self) -> None:
        self.sources: dict[int, tuple[tuple[int, str], ...]] = {}  # reply id -> passages
        self.details: dict[str, str] = {}  # sha256 -> "12 pages · ~4,100 tokens · Auto: whole"

    def update(
        self,
        sources: Mapping[int, tuple[tuple[int, str], ...]],
        details: Mapping[str, str] | None,
    ) -> bool:
        """Take new values; whether anything shown changed."""
        changed = dict(sources) != self.sources
        self.sources = dict(sources)
        if details is not None:
            changed |= dict(details) != self.details
            self.details = dict(details)
        return changed

    def _documents(self, msg: StoredMessage) -> tuple[tuple[str, str, str], ...]:
        return tuple(
            (a.sha256, a.name, self.details.get(a.sha256, ""))
            for a in msg.attachments
            if isinstance(a, DocumentPart)
        )

    def key(self, msg: StoredMessage) -> tuple[object, ...]:
        """What of this message's rendering depends on documents (for the view's cache)."""
        return (self.sources.get(msg.id, ()), self._documents(msg))

    def decorate(self, body: str, msg: StoredMessage, muted: str) -> str:
        documents, sources = self._documents(msg), self.sources.get(msg.id, ())
        if documents:  # before the question, as the model reads them
            body = documents_html(muted, msg.id, documents) + body
        if sources:
            body = link_citations(body, msg.id, frozenset(n for n, _ in sources))
            body += sources_html(muted, msg.id, sources)
        return body


def document_link(scheme: str, path: str) -> tuple[str, int, str] | None:
    """("cite", reply id, number) or ("doc", message id, sha256) for a link this module
    made; None for any other."""
    if scheme not in (CITE_SCHEME, DOC_SCHEME):
        return None
    msg_id, _, rest = path.partition("/")
    if not msg_id.isdigit() or not rest or (scheme == CITE_SCHEME and not rest.isdigit()):
        return None
    return ("cite" if scheme == CITE_SCHEME else "doc", int(msg_id), rest)
