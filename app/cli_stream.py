"""A reply streamed to the terminal, the same for a local model and a server's:
the thinking on stderr (dim on a terminal), the answer on stdout, each piece saved
as it comes (no Qt here)."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from engine.errors import KnownError
from engine.history.turns import prompt_before, save_chat_settings, status_for, title_from
from engine.history.types import MessageStatus
from engine.types import (
    AttachmentPart,
    GenerationStats,
    ReplyDone,
    TextDelta,
    ThinkingDelta,
    ToolCallEvent,
    ToolResultEvent,
    Turn,
)

if TYPE_CHECKING:
    from app.cli_tools import ChatTools
    from app.paths import AppPaths
    from engine.history.recorder import ReplyRecorder
    from engine.history.store import ChatStore
    from engine.history.turns import ChatSettings
    from engine.history.types import Conversation
    from engine.inference.backend import ChatBackend
    from engine.types import AttachmentPart, SamplingParams


class ThinkingOutput:
    """The model's thinking on stderr, dim on a terminal, so stdout is the answer only."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._open = False

    def write(self, text: str) -> None:
        if not self._open:
            self._open = True
            self._stream.write("\x1b[2m" if self._tty else "[thinking] ")
        self._stream.write(text)
        self._stream.flush()

    def end(self) -> None:
        if self._open:
            self._open = False
            self._stream.write("\x1b[0m\n" if self._tty else "\n")
            self._stream.flush()


def stream_reply(
    backend: ChatBackend,
    turn: Turn,
    params: SamplingParams,
    *,
    stop: threading.Event,
    recorder: ReplyRecorder,
    tools: ChatTools | None = None,
) -> GenerationStats | None:
    """Stream ``backend``'s reply to ``turn`` to the terminal and into ``recorder``.

    Ctrl+C (KeyboardInterrupt) keeps what was written as a stopped reply and is
    raised on; a ``KnownError`` keeps it as a failed one and is raised on, so the
    caller says the sentence. Returns the reply's figures."""
    thinking_out = ThinkingOutput(sys.stderr)
    stats: GenerationStats | None = None
    try:
        events = (
            tools.stream(backend, turn, params, stop)
            if tools is not None
            else backend.stream(turn, params, stop=stop)
        )
        for event in events:
            if isinstance(event, ThinkingDelta):
                thinking_out.write(event.text)
                recorder.append_thinking(event.text)
            elif isinstance(event, TextDelta):
                thinking_out.end()
                sys.stdout.write(event.text)
                sys.stdout.flush()
                recorder.append(event.text)
            elif isinstance(event, ToolCallEvent):
                recorder.append_part(event.call)  # (tools.stream shows it on stderr)
            elif isinstance(event, ToolResultEvent):
                recorder.append_part(event.result)
            elif isinstance(event, ReplyDone):
                thinking_out.end()
                recorder.finish(status_for(event.reason))
                stats = event.stats
    except KeyboardInterrupt:
        recorder.finish(MessageStatus.STOPPED)
        raise
    except KnownError:
        thinking_out.end()
        recorder.finish(MessageStatus.FAILED)
        sys.stdout.write("\n")
        raise
    sys.stdout.write("\n")
    return stats


def ask(
    store: ChatStore,
    conv: Conversation | None,
    question: str,
    own: ChatSettings,
    *,
    save_settings: bool,
    backend: ChatBackend,
    thinking: bool | None,
    params: SamplingParams,
    stop: threading.Event,
    attachments: Sequence[AttachmentPart] = (),
    tools: ChatTools | None = None,
) -> tuple[Conversation, GenerationStats | None]:
    """Store ``question`` in ``conv`` (a new chat, titled by it, when None), then stream
    the reply into the store and the terminal. The model reads the chat as the window
    reads it (``prompt_before``); the reply records which model wrote it. A new chat,
    or ``save_settings``, stores ``own`` as the chat's settings. KeyboardInterrupt is
    raised on, with what was written kept as a stopped reply. ``attachments`` go with
    the question (documents: ``hearth chat --file``), read whole or by passages as the
    model's context allows; the passages given are kept with the reply and listed on
    stderr."""
    from engine.history.recorder import ReplyRecorder

    if conv is None:
        conv = store.create_conversation(title_from(question), title_is_auto=True)
        save_chat_settings(store, conv.id, own)
    elif save_settings:
        save_chat_settings(store, conv.id, own)
    store.add_message(conv.id, "user", question, attachments=tuple(attachments))
    reply = store.add_message(
        conv.id, "assistant", "", MessageStatus.STREAMING, model=backend.info.path
    )
    prompt = prompt_before(store, conv.id, reply.id, n_ctx=backend.info.n_ctx)
    store.set_citations(reply.id, prompt.citations)
    recorder = ReplyRecorder(store, reply.id)
    turn = Turn(
        messages=prompt.messages,
        thinking=thinking,
        cache_key=conv.id,
        tools=tools.specs if tools is not None else (),
    )
    stats = stream_reply(backend, turn, params, stop=stop, recorder=recorder, tools=tools)
    sources = store.sources([reply.id]).get(reply.id, ())
    if sources:
        listed = "\n".join(f"  [{n}] {label}" for n, label in sources)
        print(f"Sources (the passages the model was given):\n{listed}", file=sys.stderr)
    return conv, stats


def ask_with_extras(
    args: argparse.Namespace,
    paths: AppPaths,
    store: ChatStore,
    conv: Conversation | None,
    own: ChatSettings,
    *,
    backend: ChatBackend,
    thinking: bool | None,
    params: SamplingParams,
    stop: threading.Event,
    images: Sequence[AttachmentPart] = (),
) -> tuple[Conversation, GenerationStats | None] | int:
    """``hearth chat``'s question with what it brings besides, the same for a local and
    a remote model: the tools ``--tools``/``--mcp`` ask for (servers started, closed
    again at the end) and the documents ``--file`` names (read and indexed). An exit
    code when it could not ask (said on stderr) or the person pressed Ctrl+C."""
    from app.cli_tools import open_tools
    from app.doc_ingest import attach_files
    from engine.tools.mcp_client import McpError

    try:
        tools = open_tools(args, paths, chat=conv.id if conv else None)
    except (McpError, ValueError) as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            documents = attach_files(store, args.file)
        except KnownError as exc:
            print(f"hearth: {exc}", file=sys.stderr)
            return 2
        return ask(
            store,
            conv,
            args.prompt,
            own,
            save_settings=args.system is not None,
            backend=backend,
            thinking=thinking,
            params=params,
            stop=stop,
            attachments=(*images, *documents),
            tools=tools,
        )
    except KeyboardInterrupt:
        print("\n[stopped]", file=sys.stderr)
        return 130
    finally:
        if tools is not None:
            tools.close()


def stats_line(conv: Conversation, model: str, stats: GenerationStats) -> dict[str, object]:
    """``--json``'s figures of a reply, for a local and a remote model alike."""
    return {
        "conversation_id": conv.id,
        "model": model,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "thinking_tokens": stats.thinking_tokens,
        "ttft_s": round(stats.ttft_s, 4),
        "tokens_per_s": round(stats.tokens_per_s, 2),
    }
