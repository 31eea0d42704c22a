"""The turn model: what the model reads of a chat, the same for the window and the CLI.

A chat's own settings (``ChatSettings``: its system prompt, its thinking switch,
the first message the model still reads) are stored with the conversation.
``prompt_of`` turns a stretch of the chat's active path into the messages the
model reads; ``thinking_for`` decides the thinking switch; ``status_for`` names
how a stored reply ended. Both front ends call these and nothing else, so a
chat started in the window and continued with ``hearth chat --conversation``
reads the same prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.history.doc_prompt import (
    DocMode,
    DocumentPrompt,
    VectorRanking,
    attached_documents,
    documents_prompt,
    render_whole,
)
from engine.history.types import CONTINUABLE, MessageStatus, StoredMessage
from engine.types import (
    AttachmentPart,
    DocumentPart,
    FinishReason,
    Message,
    ModelInfo,
    Part,
    TextPart,
    ThinkingMode,
)

if TYPE_CHECKING:
    from engine.history.store import ChatStore

__all__ = [
    "CONTEXT_FROM",
    "CONTINUABLE",
    "TITLE_CHARS",
    "ChatModel",
    "ChatSettings",
    "PromptMessages",
    "ThinkingMode",
    "chat_settings",
    "context_from_after",
    "prompt_before",
    "prompt_of",
    "prompt_with_documents",
    "save_chat_settings",
    "status_for",
    "thinking_for",
    "title_from",
]

TITLE_CHARS = 48


# NOTE: stored on disk (conversations.settings, JSON); keep the keys stable.
_SYSTEM_PROMPT = "system_prompt"
_THINKING = "thinking"
CONTEXT_FROM = "context_from"
_MODEL = "model"  # {"source": ..., "choice": ..., "name": ...}
_DOCUMENT_MODES = "document_modes"  # {sha256: "auto" | "whole" | "retrieve"}


@dataclass(frozen=True, slots=True)
class ChatModel:
    """The model a chat last used, as the window names a choice of model: ``source``
    (a catalog family, the person's own files, or a connection to a server) and
    ``choice`` within it (a quantization, a file's path, the server's model id);
    ``name`` is how it was shown, for a sentence when it is not there any more.
    History stores these as given; what they mean is the front end's business."""

    source: str
    choice: str
    name: str = ""

    @classmethod
    def from_json(cls, raw: object) -> ChatModel | None:
        if not isinstance(raw, Mapping):
            return None
        source, choice, name = raw.get("source"), raw.get("choice"), raw.get("name", "")
        if not isinstance(source, str) or not isinstance(choice, str) or not source:
            return None
        return cls(source, choice, name if isinstance(name, str) else "")

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "choice": self.choice, "name": self.name}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatSettings:
    """One chat's own settings, stored with it as JSON.

    ``system_prompt``: None when the chat has none of its own. ``thinking``: None
    follows the app's thinking mode. ``context_from``: the id of the first
    message the model still reads (the person chose to drop the turns before it;
    they stay in the store, shown and searchable). Keys this version does not
    know (from a newer Hearth) are kept in ``other`` and written back unchanged.
    ``model``: the model the chat last used (None: not recorded yet), so that opening
    it again can offer that model (issue 15: a chat can be on a server's model).
    """

    system_prompt: str | None = None
    thinking: bool | None = None
    context_from: int | None = None
    model: ChatModel | None = None
    # How the person chose to have each attached document read (by its file's sha256);
    # one not named here is AUTO (doc_prompt.plan_modes).
    document_modes: Mapping[str, DocMode] = field(default_factory=lambda: MappingProxyType({}))
    other: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ChatSettings:
        prompt = raw.get(_SYSTEM_PROMPT)
        thinking = raw.get(_THINKING)
        start = raw.get(CONTEXT_FROM)
        modes = raw.get(_DOCUMENT_MODES)
        known = (_SYSTEM_PROMPT, _THINKING, CONTEXT_FROM, _MODEL, _DOCUMENT_MODES)
        return cls(
            system_prompt=prompt if isinstance(prompt, str) else None,
            thinking=thinking if isinstance(thinking, bool) else None,
            context_from=start if isinstance(start, int) and not isinstance(start, bool) else None,
            model=ChatModel.from_json(raw.get(_MODEL)),
            document_modes=MappingProxyType(
                {
                    sha: DocMode(mode)
                    for sha, mode in (modes.items() if isinstance(modes, dict) else ())
                    if isinstance(sha, str) and mode in DocMode._value2member_map_
                }
            ),
            other=MappingProxyType({k: v for k, v in raw.items() if k not in known}),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.other)
        if self.system_prompt is not None:
            out[_SYSTEM_PROMPT] = self.system_prompt
        if self.thinking is not None:
            out[_THINKING] = self.thinking
        if self.context_from is not None:
            out[CONTEXT_FROM] = self.context_from
        if self.model is not None:
            out[_MODEL] = self.model.to_json()
        modes = {sha: m.value for sha, m in self.document_modes.items() if m is not DocMode.AUTO}
        if modes:
            out[_DOCUMENT_MODES] = modes
        return out

    def with_(self, **changes: Any) -> ChatSettings:
        return replace(self, **changes)


def chat_settings(store: ChatStore, conv_id: int) -> ChatSettings:
    return ChatSettings.from_json(store.conversation_settings(conv_id))


def save_chat_settings(store: ChatStore, conv_id: int, settings: ChatSettings) -> None:
    store.set_conversation_settings(conv_id, settings.to_json())


@dataclass(frozen=True, slots=True)
class PromptMessages:
    """What the model reads of a stretch of a chat, and the stored id of each message
    (None for the system prompt, which is a setting, not a message)."""

    messages: tuple[Message, ...]
    ids: tuple[int | None, ...]
    # The chunk id of each passage the model was given, in citation order ([1] first):
    # the reply keeps them (ChatStore.set_citations) so its [n] open the passage.
    citations: tuple[int, ...] = ()

    @property
    def n_system(self) -> int:
        """How many system messages lead: they are kept when older turns are dropped."""
        return next(
            (i for i, m in enumerate(self.messages) if m.role != "system"), len(self.messages)
        )


def prompt_of(
    messages: Sequence[StoredMessage],
    settings: ChatSettings,
    data: Callable[[tuple[AttachmentPart, ...]], tuple[AttachmentPart, ...]] | None = None,
    documents: DocumentPrompt | None = None,
) -> PromptMessages:
    """The messages the model reads of ``messages`` (a stretch of a chat's active path
    from its start): the chat's system prompt, then every message from the first one
    it still reads (``context_from``) that has something to read (an empty reply is
    left out; an empty question is not).

    A chat made by an older ``hearth chat`` stored its system prompt as a leading
    ``system`` message: that message is read as the system prompt (also when older
    turns are dropped) unless the chat has a system prompt setting of its own,
    which takes its place ("" for none).

    A message's attachments come before its text. ``data`` (``ChatStore.with_data``)
    reads their bytes, which the model needs; without it they are described only.
    A document is read as text: whole, or as a note that its passages come with the
    question, as ``documents`` (doc_prompt.documents_prompt) says; without it, whole.
    Retrieved passages go before the last question's own text.
    """
    lead = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    stored_system = [] if settings.system_prompt is not None else list(messages[:lead])
    start = next((i for i, m in enumerate(messages) if m.id == settings.context_from), 0)
    out: list[Message] = []
    ids: list[int | None] = []
    read = [*stored_system, *messages[max(start, lead) :]]
    kept = [m for m in read if m.content or m.parts or m.role == "user"]
    last_question = max((i for i, m in enumerate(kept) if m.role == "user"), default=None)
    passages = documents.passages if documents is not None else ""
    for i, m in enumerate(kept):
        # Documents' bytes are not read: the model reads their text.
        images = tuple(a for a in m.attachments if not isinstance(a, DocumentPart))
        loaded = iter(data(images) if data and images else images)
        parts: list[Part] = []
        for a in m.attachments:
            if isinstance(a, DocumentPart):
                parts.append(TextPart(_document_text(m.id, a, documents)))
            else:
                parts.append(next(loaded))
        if i == last_question and passages:
            # after everything that stays the same turn after turn (the prompt cache)
            parts.append(TextPart(passages + "\n\n"))
        if m.parts:  # a reply that called tools: its text, calls and results, in order
            content: str | tuple[Part, ...] = (*parts, *m.parts)
        else:
            content = (*parts, TextPart(m.content)) if parts else m.content
        out.append(Message(m.role, content, m.thinking))
        ids.append(m.id)
    prompt = (settings.system_prompt or "").strip()
    if prompt:
        out.insert(0, Message("system", prompt))
        ids.insert(0, None)
    citations = documents.citations if documents is not None else ()
    return PromptMessages(tuple(out), tuple(ids), citations)


def _document_text(msg_id: int, part: DocumentPart, documents: DocumentPrompt | None) -> str:
    rendered = documents.rendered.get((msg_id, part.sha256)) if documents is not None else None
    return (rendered if rendered is not None else render_whole(part.name, part.text)) + "\n\n"


def prompt_with_documents(
    store: ChatStore,
    messages: Sequence[StoredMessage],
    settings: ChatSettings,
    *,
    n_ctx: int,
    data: Callable[[tuple[AttachmentPart, ...]], tuple[AttachmentPart, ...]] | None = None,
    vector_ranking: VectorRanking | None = None,
) -> PromptMessages:
    """``prompt_of`` with the documents attached to these messages read whole when they
    fit in ``n_ctx``, else by the passages that answer the conversation's last question
    (doc_prompt), in the mode the person chose for each (``settings.document_modes``)."""
    attached = attached_documents(store, messages, settings.document_modes)
    if not attached:
        return prompt_of(messages, settings, data)
    documents = documents_prompt(
        store, messages, attached, n_ctx=n_ctx, vector_ranking=vector_ranking
    )
    return prompt_of(messages, settings, data, documents)


def prompt_before(
    store: ChatStore, conv_id: int, reply_id: int | None = None, *, n_ctx: int | None = None
) -> PromptMessages:
    """What the model reads to write reply ``reply_id`` (a message on the chat's active
    path): ``prompt_of`` everything before it, with the chat's settings. None: the
    whole active path (to measure it, say). ``n_ctx``: the model's context window, by
    which attached documents are read whole or by passages (None: whole)."""
    messages = store.messages(conv_id)
    if reply_id is not None:
        messages = messages[: next(i for i, m in enumerate(messages) if m.id == reply_id)]
    settings = chat_settings(store, conv_id)
    if n_ctx is not None:
        return prompt_with_documents(store, messages, settings, n_ctx=n_ctx, data=store.with_data)
    return prompt_of(messages, settings, store.with_data)


def context_from_after(prompt: PromptMessages, dropped: int) -> int:
    """The ``context_from`` that leaves out the ``dropped`` oldest messages of ``prompt``
    after its leading system messages (the person chose to drop the oldest turns):
    the id of the first message the model still reads."""
    first = prompt.ids[prompt.n_system + dropped]
    if first is None:  # only the system prompt has no id, and it leads
        raise ValueError("the first message kept is not a stored message")
    return first


def thinking_for(
    settings: ChatSettings, mode: ThinkingMode, model: ModelInfo | None
) -> bool | None:
    """The thinking switch for a chat's next reply: the chat's own choice, else the
    app's mode, else what the model's makers default it to (None: the model has no
    switch, so nothing is asked of its template)."""
    if settings.thinking is not None:
        return settings.thinking
    if mode is ThinkingMode.ON:
        return True
    if mode is ThinkingMode.OFF:
        return False
    if model is not None and model.supports_thinking:
        return model.thinking_default
    return None


_STATUS_FOR_REASON = {
    FinishReason.STOP: MessageStatus.COMPLETE,
    FinishReason.LENGTH: MessageStatus.LENGTH,
    FinishReason.CANCELLED: MessageStatus.STOPPED,
    FinishReason.CONTEXT: MessageStatus.CONTEXT,
}


def status_for(reason: FinishReason) -> MessageStatus:
    """How a reply that ended for ``reason`` is stored."""
    return _STATUS_FOR_REASON[reason]


def title_from(text: str) -> str:
    """A chat title from the first message: its first words, cut at a word."""
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line or "New chat"
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut + "…"
