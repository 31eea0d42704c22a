"""The command line: ``hearth chat`` streams one reply to stdout, saved like any
conversation, with the same folders, model, engine options and turn model as the
window (``engine.history.turns``: the chat's system prompt setting, its dropped
turns, the thinking switch). The model commands (``hearth models``/``pull``/
``import``/``rm``) are app/cli_models.py."""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli_crypt import open_chats
from app.cli_stream import ask_with_extras, stats_line
from app.doc_ingest import preview_prompt
from app.folders_at_start import chosen_folders
from app.paths import AppPaths
from engine.errors import KnownError
from engine.history.turns import (
    ChatSettings,
    PromptMessages,
    ThinkingMode,
    chat_settings,
    prompt_of,
    thinking_for,
)
from engine.types import (
    EngineOptions,
    Message,
    ModelInfo,
    SamplingParams,
    TextPart,
)

if TYPE_CHECKING:
    from engine.history.store import ChatStore
    from engine.inference.local import LocalBackend
    from engine.models.catalog import CatalogEntry
    from engine.settings import Settings


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

    chat = sub.add_parser(
        "chat",
        help="send one message and stream the reply to stdout",
        description="Send one message and stream the reply to stdout (the model's thinking "
        "goes to stderr). The chat is saved like one made in the window, and reads the "
        "same: the model, folders, engine options, sampling and thinking mode saved in "
        "Settings, the chat's own system prompt, and not the turns dropped from it.",
    )
    chat.add_argument("prompt", type=_prompt, help="the message to send")
    chat.add_argument(
        "--model",
        help="a GGUF file (default: the model chosen in Settings, else the starter); with "
        "--endpoint, the server's model",
    )
    _add_remote_options(chat)
    from app.cli_tools import add_tool_options

    add_tool_options(chat)
    chat.add_argument(
        "--max-tokens",
        type=bounded("generation.max_tokens", int, 1),
        metavar="N",
        help="the longest reply in tokens, thinking included: a model that thinks gets up "
        "to half of N to think (up to --max-thinking-tokens instead, if given, leaving at "
        "least one token) and the rest to answer (default: the longest reply and longest "
        "thinking set in Settings, counted apart, as in the window)",
    )
    chat.add_argument(
        "--max-thinking-tokens",
        type=bounded("generation.max_thinking_tokens", int, 0),
        metavar="N",
        help="the longest thinking, then the model must answer (within --max-tokens)",
    )
    chat.add_argument("--conversation", type=int, metavar="ID", help="continue this conversation")
    chat.add_argument(
        "--file",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="attach a document to the message (PDF, DOCX, HTML, Markdown, text, code, CSV; "
        "repeat for more): read whole when it fits in the context, else by the passages "
        "that answer the question, listed with the reply",
    )
    chat.add_argument(
        "--image", action="append", type=Path, default=[], metavar="FILE",
        help="show the model this image with the message (repeatable; a model with vision)",
    )  # fmt: skip
    chat.add_argument(
        "--system",
        help="this chat's system prompt (a new chat's default is the one in Settings; "
        "with --conversation it replaces that chat's, as in the window; '' for none)",
    )
    chat.add_argument(
        "--temperature",
        type=bounded("generation.temperature", float, 0),
        help="0 = always the likeliest token (default: as in Settings, else the model's)",
    )
    chat.add_argument("--seed", type=int, help="sampling seed, for repeatable replies")
    chat.add_argument(
        "--repeat-penalty",
        # llama.cpp divides by it: 0 would make every repeated token infinitely likely.
        type=_number(float, 0, above=True),
        help="1 = off (default: the model's recommended value)",
    )
    chat.add_argument(
        "--context",
        type=bounded("performance.n_ctx", int, 512),
        metavar="N",
        help="context length in tokens (default: as in Settings; Automatic: 16,384 or "
        "what memory allows)",
    )
    chat.add_argument(
        "--threads",
        type=bounded("performance.threads", int, 1),
        metavar="N",
        help="CPU threads (default: as in Settings, else the physical cores)",
    )
    chat.add_argument("--json", action="store_true", help="end with one JSON line of stats")
    chat.add_argument(
        "--show-prompt",
        action="store_true",
        help="print the prompt the model would read (its chat template applied) and exit "
        "without answering or saving anything",
    )
    think = chat.add_mutually_exclusive_group()
    think.add_argument(
        "--think",
        "--thinking",
        dest="thinking",
        action="store_true",
        default=None,
        help="let a reasoning model think first (its thinking goes to stderr; default: the "
        "chat's switch, else the thinking mode in Settings)",
    )
    think.add_argument(
        "--no-think",
        "--no-thinking",
        dest="thinking",
        action="store_false",
        help="answer without thinking",
    )


def run_chat(args: argparse.Namespace, paths: AppPaths) -> int:
    paths.ensure()
    try:
        store, notice = open_chats(paths, args)  # unlocked as held (issue 17)
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


@cache
def _saved_settings(config_dir: Path) -> Settings:
    """The settings the window saved, read once per run (nothing here writes them)."""
    from engine.settings import Settings

    return Settings(config_dir / "settings.json")


def with_saved_models_dir(paths: AppPaths) -> AppPaths:
    """``paths`` with the models and chats folders chosen in the app's Settings where
    they are there; a sentence on stderr for each one that is not (as the window
    says it), and the default folder meanwhile."""
    paths, notices = chosen_folders(paths, _saved_settings(paths.config_dir))
    for notice in notices:
        print(f"hearth: {notice}", file=sys.stderr)
    return paths


def _chosen_model(paths: AppPaths, catalog: list[CatalogEntry], options: EngineOptions) -> Path:
    """The model the person chose in the app (Settings → Model), else the starter model."""
    from engine.models.catalog import install_starter_model
    from engine.models.choice import startup_file
    from engine.models.hardware import probe
    from engine.settings import model_choice

    settings = _saved_settings(paths.config_dir)
    hw = probe(paths.models_dir, check_gpu=False)
    chosen = startup_file(model_choice(settings), catalog, paths.models_dir, hw, options)
    return Path(chosen) if chosen else install_starter_model(paths.models_dir)


def _engine_options(args: argparse.Namespace, settings: Settings) -> tuple[EngineOptions, bool]:
    """The Settings' engine options with ``--context``/``--threads`` on top, and whether
    the context is "Automatic" (to be fitted to the model and memory)."""
    from engine.settings import engine_options

    options = engine_options(settings)
    automatic = not isinstance(settings["performance.n_ctx"], int)
    if args.context is not None:
        options, automatic = replace(options, n_ctx=args.context), False
    if args.threads is not None:
        options = replace(options, n_threads=args.threads)
    return options, automatic


def _load(args: argparse.Namespace, paths: AppPaths, settings: Settings) -> LocalBackend:
    """The model loaded as the window loads it: the same file, options and presets."""
    from app.backends import LoadRequest, open_local
    from engine.inference.local import LocalBackend
    from engine.models.catalog import load_catalog
    from engine.models.choice import arch_of, load_options
    from engine.models.hardware import probe

    catalog = load_catalog()
    options, automatic = _engine_options(args, settings)
    model = Path(args.model) if args.model else _chosen_model(paths, catalog, options)
    options = load_options(
        options,
        automatic_context=automatic,
        arch=arch_of(model, catalog),
        hw=probe(paths.models_dir, check_gpu=False),
    )
    backend = open_local(LoadRequest(path=str(model), options=options, models_dir=paths.models_dir))
    assert isinstance(backend, LocalBackend)  # --show-prompt renders with its template
    return backend


def _add_remote_options(chat: argparse.ArgumentParser) -> None:
    """``--endpoint`` and ``--api-key-file``: the chat goes to a server (app/cli_remote.py)."""
    from app.cli_remote import add_endpoint_options

    add_endpoint_options(chat)


def _chat(args: argparse.Namespace, paths: AppPaths, store: ChatStore) -> int:
    if getattr(args, "endpoint", None) is not None:  # a model on a server
        from app.cli_remote import ChatParts, remote_chat

        if args.image:
            print(
                "hearth: sending images to a model on a server is not supported yet; "
                "ask a local model that can see (without --endpoint).",
                file=sys.stderr,
            )
            return 2

        parts = ChatParts(
            settings=_saved_settings(paths.config_dir),
            chat_settings=_chat_settings,
            sampling=_sampling,
        )
        return remote_chat(args, paths, store, parts)
    from engine.inference.thinking import prompt_opens_thinking

    if not args.prompt.strip():  # the parser refuses it too; nothing is saved either way
        print("hearth: the message is empty; write something to send.", file=sys.stderr)
        return 2
    from engine.errors import KnownError
    from engine.images import read_image_file

    try:  # read and checked before the model loads: a bad file costs nothing
        images = tuple(read_image_file(path) for path in args.image)
    except KnownError as exc:
        print(f"hearth: {exc.message}", file=sys.stderr)
        return 2
    conv = None
    if args.conversation is not None:
        conv = store.conversation(args.conversation)
        if conv is None:
            print(f"hearth: there is no conversation {args.conversation}.", file=sys.stderr)
            return 2
    settings = _saved_settings(paths.config_dir)
    # Loaded before anything is saved: a bad file (checked by engine.gguf.validate before
    # llama.cpp sees it) gets its sentence and leaves no empty conversation behind.
    backend = _load(args, paths, settings)
    if images and not backend.info.vision:
        from engine.inference.vision import refuse_images

        print(f"hearth: {refuse_images(backend.info.name).message}", file=sys.stderr)
        backend.close()
        return 2
    stop = threading.Event()
    try:
        own = _chat_settings(args, store, conv.id if conv else None, settings)
        thinking = args.thinking
        if thinking is None:
            mode = ThinkingMode.of(settings["generation.thinking"])
            thinking = thinking_for(own, mode, backend.info)
        # What the model will read: the same turn model as the window's, with the
        # new question after the chat so far.
        so_far = prompt_of(store.messages(conv.id), own) if conv else prompt_of([], own)
        expected = PromptMessages(
            (*so_far.messages, Message("user", (*images, TextPart(args.prompt)))),
            (*so_far.ids, None),
        )
        rendered = backend.session.render_prompt(expected.messages, thinking=thinking)
        thinks = prompt_opens_thinking(rendered) or _thinking_on(backend.info, thinking)
        # Checked before anything is saved, too: a value SamplingParams refuses
        # leaves no conversation with an empty reply behind.
        try:
            params = _sampling(args, backend.default_sampling(thinking), settings, thinks=thinks)
        except ValueError as exc:
            print(f"hearth: {exc}.", file=sys.stderr)
            return 2
        if args.show_prompt and args.file:
            # The documents as a turn reads them (whole or by passages), worked out on a
            # scratch copy: showing the prompt writes nothing to the chats.
            try:
                preview = preview_prompt(
                    store, conv.id if conv else None, args.prompt, own, args.file,
                    n_ctx=backend.info.n_ctx,
                )  # fmt: skip
            except KnownError as exc:
                print(f"hearth: {exc}", file=sys.stderr)
                return 2
            rendered = backend.session.render_prompt(preview.messages, thinking=thinking)
        if args.show_prompt:
            sys.stdout.write(rendered)
            sys.stdout.flush()
            return 0
        asked = ask_with_extras(
            args, paths, store, conv, own, backend=backend, thinking=thinking, params=params,
            stop=stop, images=images,
        )  # fmt: skip
        if isinstance(asked, int):
            return asked
        conv, stats = asked
        if args.json and stats is not None:
            line = {
                **stats_line(conv, backend.info.path, stats),
                "n_ctx": backend.info.n_ctx,
                "peak_rss_bytes": peak_rss_bytes(),
            }
            sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return 0
    finally:
        backend.close()


def _chat_settings(
    args: argparse.Namespace, store: ChatStore, conv_id: int | None, settings: Settings
) -> ChatSettings:
    """The chat's own settings: a new chat starts, as in the window, with the system
    prompt set in Settings (or ``--system``); ``--system`` replaces an existing chat's."""
    if conv_id is None:
        default = settings["generation.system_prompt"] if args.system is None else args.system
        return ChatSettings(system_prompt=str(default or "").strip() or None)
    own = chat_settings(store, conv_id)
    return own if args.system is None else own.with_(system_prompt=args.system.strip())


def _thinking_on(info: ModelInfo, thinking: bool | None) -> bool:
    """Whether the model is asked to think (None: as its makers default it)."""
    return info.supports_thinking and (info.thinking_default if thinking is None else thinking)


def _sampling(
    args: argparse.Namespace, defaults: SamplingParams, settings: Settings, *, thinks: bool
) -> SamplingParams:
    """The model's recommended sampling, with what Settings and then the command line
    set; ValueError (from SamplingParams' own checks) for a value out of range."""
    from engine.settings import sampling_overrides

    overrides: dict[str, Any] = dict(sampling_overrides(settings))
    base = replace(defaults, **overrides)
    chosen: dict[str, Any] = {}
    for name in ("temperature", "repeat_penalty", "seed"):
        if getattr(args, name) is not None:
            chosen[name] = getattr(args, name)
    if chosen.get("repeat_penalty", 1.0) <= 0:  # SamplingParams does not check this one
        raise ValueError("repeat_penalty must be greater than 0")
    answer, thought = reply_budgets(args.max_tokens, args.max_thinking_tokens, base, thinks=thinks)
    return replace(base, max_tokens=answer, max_thinking_tokens=thought, **chosen)


def reply_budgets(
    total: int | None, thinking: int | None, base: SamplingParams, *, thinks: bool
) -> tuple[int, int]:
    """(answer, thinking) token budgets for one reply.

    ``total`` (``--max-tokens``) bounds the whole reply, which is what the person
    waits for: a reply that thinks gets ``thinking`` (``--max-thinking-tokens``, else
    the Settings' budget) but at most half of ``total`` (at most all but one token
    when ``thinking`` was given), and its answer what is left. The engine counts the
    two apart (``SamplingParams``), so the split is made here, before the reply.
    ``total`` None: the two budgets of ``base``, counted apart, as in the window.
    """
    if thinking is not None and thinking < 0:  # (the parser refuses it too)
        raise ValueError("max_thinking_tokens cannot be negative")
    if total is None:
        return base.max_tokens, base.max_thinking_tokens if thinking is None else thinking
    if not thinks:
        return total, 0
    if thinking is None:
        thought = min(base.max_thinking_tokens, total // 2)
    else:
        thought = min(thinking, max(total - 1, 0))
    return total - thought, thought
