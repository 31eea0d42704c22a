"""The chat history's data: conversations, stored messages, search hits (the UI reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.types import AttachmentPart, Part, Role, TextPart, ToolResultPart


class MessageStatus(StrEnum):
    """How a stored message ended.

    # NOTE: stored on disk (messages.status); keep values stable.
    """

    COMPLETE = "complete"
    STREAMING = "streaming"  # being written right now
    STOPPED = "stopped"  # the person pressed Stop
    LENGTH = "length"  # cut off by the reply length limit
    CONTEXT = "context"  # cut off: the conversation filled the model's context window
    FAILED = "failed"  # generation failed; the partial text is kept
    INTERRUPTED = "interrupted"  # the app ended while the reply streamed


# Replies that can be continued: cut at the length limit, by a full context window
# (the context question comes first), by Stop, or by the app ending.
CONTINUABLE = frozenset(
    {
        MessageStatus.LENGTH,
        MessageStatus.CONTEXT,
        MessageStatus.STOPPED,
        MessageStatus.INTERRUPTED,
    }
)


class DocMode(StrEnum):
    """How the person wants an attached document read (engine.history.doc_prompt).

    # NOTE: stored on disk (ChatSettings.document_modes); keep values stable.
    """

    AUTO = "auto"  # whole when it fits, else passages
    WHOLE = "whole"
    RETRIEVE = "retrieve"


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    title: str
    created_at: float
    updated_at: float
    pinned: bool = False  # listed before the others
    title_is_auto: bool = False  # made by Hearth, not the person: an auto title may replace it
    deleted_at: float | None = None  # set while a deleted conversation can still be undone


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: Role
    content: str  # the answer only
    status: MessageStatus
    created_at: float
    thinking: str = ""  # the model's thinking, kept apart from the answer
    thinking_ms: int = 0  # how long it thought ("Thought for 12 s")
    parent_id: int | None = None  # the message before it (None: the first one)
    # Versions of this turn (regenerated replies, edited messages) share a parent:
    # this is version variant_index + 1 of variant_count, oldest first.
    variant_index: int = 0
    variant_count: int = 1
    active: bool = True  # the version shown (on the active path if its parent is)
    # Which model wrote it (a reply): its ModelInfo.path, a file or a remote model's
    # address; "" when not known (replies from before the store kept it).
    model: str = ""
    # Its images and documents, in the order attached, described without their bytes
    # (``data`` is b""; ChatStore.with_data reads them). The model reads them before
    # the text.
    attachments: tuple[AttachmentPart, ...] = ()
    # A reply that called tools: its text, calls and results in order; () when the
    # message is text only (``content``).
    parts: tuple[Part, ...] = ()

    def tool_results_parts(self) -> tuple[ToolResultPart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolResultPart))

    def all_parts(self) -> tuple[Part, ...]:
        """What the model reads of it: its parts, or its text as one part."""
        return self.parts or (TextPart(self.content),)


# Search snippets mark the matched words with these two control characters, which
# no markup language uses, so a UI can escape the text and then add its highlight.
HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"


@dataclass(frozen=True, slots=True)
class SearchHit:
    conversation_id: int
    message_id: int
    title: str  # of the conversation
    snippet: str  # a few words around the match, matches between HIGHLIGHT_START/END
    rank: float  # bm25 (lower is better) for a ranked search; 0.0 when newest first
    role: Role = "assistant"
    created_at: float = 0.0
    # Found in a document the message carries (issue 14): its name and where the
    # snippet's passage is ("manual.pdf, page 12"); "" for the message's own text.
    source: str = ""

    def parts(self) -> list[tuple[str, bool]]:
        """The snippet as (text, is_match) pieces, for a UI to escape and highlight."""
        pieces: list[tuple[str, bool]] = []
        for i, chunk in enumerate(self.snippet.split(HIGHLIGHT_START)):
            match, sep, rest = chunk.partition(HIGHLIGHT_END)
            if i == 0 or not sep:  # text before the first match, or a stray marker
                pieces.append((chunk.replace(HIGHLIGHT_END, ""), False))
                continue
            pieces.append((match, True))
            if rest:
                pieces.append((rest.replace(HIGHLIGHT_END, ""), False))
        return [(text, hit) for text, hit in pieces if text]
