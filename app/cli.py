"""The command line: ``hearth chat`` streams one reply to stdout, saved like any
conversation, with the same folders and model as the window. The model commands
(``hearth models``/``pull``/``import``/``rm``) are app/cli_models.py."""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from app.paths import AppPaths
from engine.errors import KnownError
from engine.history.opening import open_store
from engine.history.turns import title_from
from engine.history.types import MessageStatus
from engine.types import (
    EngineOptions,
    FinishReason,
    GenerationStats,
    Message,
    ReplyDone,
    SamplingParams,
    TextDelta,
    ThinkingDelta,
)

_STATUS = {
    FinishReason.STOP: MessageStatus.COMPLETE,
    FinishReason.LENGTH: MessageStatus.LENGTH,
    FinishReason.CANCELLED: MessageStatus.STOPPED,
    FinishReason.CONTEXT: MessageStatus.CONTEXT,
}


def peak_rss_bytes() -> int:
    try:
        import resource

        # ru_maxrss is KiB on Linux, bytes on macOS.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except ImportError:  # Windows
        import psutil

        return int(getattr(psutil.Process().memory_info(), "peak_wset", 0))


def _number(
    kind: type[int] | type[float], low: float, high: float | None = None, *, above: bool = False
) -> Callable[[str], int | float]:
    """An argparse ``type=`` for a number in a range: one outside it is refused with
    one sentence (exit 2) before anything is loaded or saved. ``above``: greater
    than ``low``, not equal to it."""
    noun = "whole number" if kind is int else "number"
    if above:
        span = f"greater than {low:g}"
    elif high is None:
        span = f"at least {low:g}"
    else:
        span = f"from {low:g} to {high:g}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (
            math.isfinite(value)
            and (value > low if above else value >= low)
            and (high is None or value <= high)
        ):
            raise argparse.ArgumentTypeError(f"must be a {noun} {span}, not {text!r}.")
        return value

    return parse


def _prompt(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the message is empty; write something to send.")
    return text


def add_chat_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from engine.settings import SPECS

    def bounded(key: str, kind: type[int] | type[float], low: float) -> Callable[[str], object]:
        # The hard floor is SamplingParams' check (engine/types.py); the ceiling is the
        # Settings window's (engine/settings.py), so the CLI takes what the window does.
        return _number(kind, low, SPECS[key].maximum)

    chat = sub.add_parser("chat", help="send one message and stream the reply to stdout")
    chat.add_argument("prompt", type=_prompt, help="the message to send")
    chat.add_argument(
        "--model", help="a GGUF file (default: the model chosen in Settings, else the starter)"
    )
    chat.add_argument(
        "--max-tokens",
        type=bounded("generation.max_tokens", int, 1),
        default=1024,
        help="longest answer in tokens",
    )
    chat.add_argument(
        "--max-thinking-tokens",
        type=bounded("generation.max_thinking_tokens", int, 0),
        help="longest thinking, then the model must answer",
    )
    chat.add_argument("--conversation", type=int, help="continue this conversation id")
    chat.add_argument("--system", help="a system prompt for a new conversation")
    chat.add_argument(
        "--temperature",
        type=bounded("generation.temperature", float, 0),
        help="0 = always the likeliest token",
    )
    chat.add_argument("--seed", type=int, help="sampling seed, for repeatable replies")
    chat.add_argument(
        "--repeat-penalty",
        # llama.cpp divides by it: 0 would make every repeated token infinitely likely.
        type=_number(float, 0, above=True),
        help="1 = off (default: the model's recommended value)",
    )
    chat.add_argument("--json", action="store_true", help="end with one JSON line of stats")
    think = chat.add_mutually_exclusive_group()
    think.add_argument(
        "--think",
        dest="thinking",
        action="store_true",
        default=None,
        help="let a reasoning model think first (its thinking goes to stderr)",
    )
    think.add_argument(
        "--no-think", dest="thinking", action="store_false", help="answer without thinking"
    )


def run_chat(args: argparse.Namespace, paths: AppPaths) -> int:
    paths.ensure()
    try:
        store, notice = open_store(paths.db_path)
    except KnownError as exc:  # a newer Hearth's file, a lock, a full disk: left as it is
        print(f"hearth: {exc.message}", file=sys.stderr)
        return 1
    if notice:
        print(notice, file=sys.stderr)
    try:
        return _chat(args, paths, store)
    except KnownError as exc:
        print(f"hearth: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()


def with_saved_models_dir(paths: AppPaths) -> AppPaths:
    """``paths`` with the models folder chosen in the app's Settings, if it is there."""
    from engine.settings import Settings

    chosen = str(Settings(paths.config_dir / "settings.json")["storage.models_dir"] or "")
    if chosen and Path(chosen).is_dir():
        paths = paths.with_models_dir(chosen)
    chats = str(Settings(paths.config_dir / "settings.json")["storage.chats_dir"] or "")
    return paths.with_chats_dir(chats) if chats and Path(chats).is_dir() else paths


def _chosen_model(paths: AppPaths) -> Path:
    """The model the person chose in the app (Settings → Model), else the starter model."""
    from engine.models.catalog import install_starter_model, load_catalog
    from engine.models.choice import startup_file
    from engine.models.hardware import probe
    from engine.settings import Settings, model_choice

    settings = Settings(paths.config_dir / "settings.json")
    chosen = startup_file(
        model_choice(settings),
        load_catalog(),
        paths.models_dir,
        probe(paths.models_dir),
        EngineOptions(),
    )
    return Path(chosen) if chosen else install_starter_model(paths.models_dir)


def _chat(args: argparse.Namespace, paths: AppPaths, store: object) -> int:
    from engine.history.recorder import ReplyRecorder
    from engine.history.store import ChatStore
    from engine.inference.session import ChatSession

    assert isinstance(store, ChatStore)
    if not args.prompt.strip():  # the parser refuses it too; nothing is saved either way
        print("hearth: the message is empty; write something to send.", file=sys.stderr)
        return 2
    conv = None
    if args.conversation is not None:
        conv = store.conversation(args.conversation)
        if conv is None:
            print(f"hearth: there is no conversation {args.conversation}.", file=sys.stderr)
            return 2
    model = Path(args.model) if args.model else _chosen_model(paths)
    # Loaded before anything is saved: a bad file (checked by engine.gguf.validate before
    # llama.cpp sees it) gets its sentence and leaves no empty conversation behind.
    session = ChatSession(model, EngineOptions())
    stop = threading.Event()
    try:
        # Checked before anything is saved, too: a value SamplingParams refuses
        # leaves no conversation with an empty reply behind.
        try:
            params = _sampling(args, session.default_sampling(args.thinking))
        except ValueError as exc:
            print(f"hearth: {exc}.", file=sys.stderr)
            return 2
        if conv is None:
            conv = store.create_conversation(title_from(args.prompt))
            if args.system:
                store.add_message(conv.id, "system", args.system)
        store.add_message(conv.id, "user", args.prompt)
        history = [
            Message(m.role, m.content, thinking=m.thinking)
            for m in store.messages(conv.id)
            if m.content
        ]
        reply = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
        recorder = ReplyRecorder(store, reply.id)
        stats: GenerationStats | None = None
        try:
            thinking_out = _ThinkingOutput(sys.stderr)
            for event in session.stream(history, params, stop=stop, thinking=args.thinking):
                if isinstance(event, ThinkingDelta):
                    thinking_out.write(event.text)
                    recorder.append_thinking(event.text)
                elif isinstance(event, TextDelta):
                    thinking_out.end()
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                    recorder.append(event.text)
                elif isinstance(event, ReplyDone):
                    thinking_out.end()
                    recorder.finish(_STATUS[event.reason])
                    stats = event.stats
        except KeyboardInterrupt:
            recorder.finish(MessageStatus.STOPPED)
            print("\n[stopped]", file=sys.stderr)
            return 130
        except KnownError:
            recorder.finish(MessageStatus.FAILED)
            raise
        sys.stdout.write("\n")
        if args.json and stats is not None:
            line = {
                "conversation_id": conv.id,
                "model": str(model),
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "thinking_tokens": stats.thinking_tokens,
                "ttft_s": round(stats.ttft_s, 4),
                "tokens_per_s": round(stats.tokens_per_s, 2),
                "peak_rss_bytes": peak_rss_bytes(),
            }
            sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return 0
    finally:
        session.close()


def _sampling(args: argparse.Namespace, defaults: SamplingParams) -> SamplingParams:
    """The model's recommended sampling with what the command line set; ValueError
    (from SamplingParams' own checks) for a value out of range."""
    chosen = {"max_tokens": args.max_tokens, "seed": args.seed}
    for name in ("temperature", "repeat_penalty", "max_thinking_tokens"):
        if getattr(args, name) is not None:
            chosen[name] = getattr(args, name)
    if chosen.get("repeat_penalty", 1.0) <= 0:  # SamplingParams does not check this one
        raise ValueError("repeat_penalty must be greater than 0")
    return replace(defaults, **chosen)


class _ThinkingOutput:
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
