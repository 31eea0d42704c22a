"""The command line with a model on another server: ``hearth chat --endpoint NAME|URL``
and ``hearth endpoints add|list|remove|check``.

A chat through a server is stored like any other (app/cli.py's turn model: the chat's
system prompt, its dropped turns, the thinking switch), and each reply records which
model wrote it, and where (``StoredMessage.model``: the remote model's address).
Every such chat says on stderr where its messages go, every time; a plain ``http://``
address to another computer gets a warning first. API keys come from
``--api-key-file`` or, for a named connection, the system keyring
(engine.endpoints.keys); they are never written to a file or a log.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli_stream import ask_with_extras, stats_line
from app.paths import AppPaths
from engine.errors import KnownError
from engine.history.turns import (
    ThinkingMode,
    thinking_for,
)

if TYPE_CHECKING:
    from engine.history.store import ChatStore
    from engine.history.turns import ChatSettings
    from engine.inference.remote import RemoteBackend
    from engine.settings import Settings
    from engine.types import SamplingParams

__all__ = [
    "ChatParts",
    "add_endpoint_options",
    "add_endpoints_parser",
    "remote_chat",
    "run_endpoints",
]


@dataclass(frozen=True, slots=True)
class ChatParts:
    """What a remote chat shares with app/cli.py's local one, handed in by it (this
    module does not import app/cli.py, which imports it): the saved settings, a
    chat's own settings, and the sampling with the command line's choices on top."""

    settings: Settings
    chat_settings: Callable[[argparse.Namespace, ChatStore, int | None, Settings], ChatSettings]
    sampling: Callable[..., SamplingParams]  # (args, defaults, settings, *, thinks)


def connections_file(paths: AppPaths) -> Path:
    return paths.config_dir / "connections.json"


def add_endpoint_options(chat: argparse.ArgumentParser) -> None:
    chat.add_argument(
        "--endpoint",
        metavar="NAME|URL",
        help="chat with a model on an OpenAI-compatible server (vLLM, llama.cpp's server, "
        "Ollama, LM Studio, a hosted API): a connection's name (hearth endpoints add) or "
        "the server's address, like http://gpu-box:8000/v1; --model then names the "
        "server's model (default: the connection's, else the server's only one). "
        "The messages of the chat go to that server",
    )
    chat.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="with --endpoint: read the server's API key from FILE ('-': the first line "
        "of stdin; default: the key saved in the keyring for the connection, if any)",
    )


def _read_key(path: str) -> str:
    from engine.endpoints.keys import check_key

    try:
        text = sys.stdin.readline() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KnownError(
            f"The API key file {path} cannot be read ({exc.strerror or exc}). Check its path."
        ) from exc
    try:
        return check_key(text.splitlines()[0] if text.strip() else "")
    except ValueError as exc:
        raise KnownError(f"The API key file {path} holds no API key: {exc}") from exc


def _resolve(args: argparse.Namespace, paths: AppPaths) -> tuple[str, str | None, str | None]:
    """(base URL, model or None, API key or None) for ``--endpoint``/``--model``."""
    from engine.endpoints.keys import KeyStore
    from engine.endpoints.store import EndpointStore
    from engine.inference.endpoint import normalize_base_url

    target: str = args.endpoint.strip()
    key = _read_key(args.api_key_file) if args.api_key_file else None
    if "://" in target:
        return normalize_base_url(target), args.model, key
    endpoint = EndpointStore(connections_file(paths)).get(target)
    if endpoint is None:
        raise KnownError(
            f'There is no connection named "{target}". Add it with `hearth endpoints add '
            f"{target} URL`, or give the server's address (http://host:port/v1)."
        )
    if key is None:
        key = KeyStore().get(endpoint.name)
    return endpoint.base_url, args.model or endpoint.model or None, key


def _connect(args: argparse.Namespace, paths: AppPaths) -> RemoteBackend:
    from engine.inference.endpoint import plain_http_warning
    from engine.inference.remote import RemoteBackend

    base, model, key = _resolve(args, paths)
    warning = plain_http_warning(base)
    if warning:
        print(f"hearth: warning: {warning}", file=sys.stderr)
    return RemoteBackend.connect(base, model, api_key=key)


def remote_chat(
    args: argparse.Namespace, paths: AppPaths, store: ChatStore, parts: ChatParts
) -> int:
    """``hearth chat --endpoint``: as app/cli.py's local chat, through a server."""

    for flag, given in (
        ("--show-prompt", args.show_prompt),
        ("--context", args.context is not None),
        ("--threads", args.threads is not None),
    ):
        if given:
            print(
                f"hearth: {flag} is for a model on this computer; the server at --endpoint "
                "has its own.",
                file=sys.stderr,
            )
            return 2
    conv = None
    if args.conversation is not None:
        conv = store.conversation(args.conversation)
        if conv is None:
            print(f"hearth: there is no conversation {args.conversation}.", file=sys.stderr)
            return 2
    settings = parts.settings
    try:
        backend = _connect(args, paths)  # before anything is saved: a refusal leaves no chat
    except ValueError as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    try:
        info = backend.info
        own = parts.chat_settings(args, store, conv.id if conv else None, settings)
        thinking = args.thinking
        if thinking is None:
            thinking = thinking_for(own, ThinkingMode.of(settings["generation.thinking"]), info)
        try:
            params = parts.sampling(
                args, backend.default_sampling(thinking), settings, thinks=bool(thinking)
            )
        except ValueError as exc:
            print(f"hearth: {exc}.", file=sys.stderr)
            return 2
        print(f"hearth: this chat goes to {info.name} at {info.extra['where']}.", file=sys.stderr)
        asked = ask_with_extras(
            args, paths, store, conv, own, backend=backend, thinking=thinking, params=params,
            stop=stop,
        )  # fmt: skip
        if isinstance(asked, int):
            return asked
        conv, stats = asked
        if args.json and stats is not None:
            line = {
                **stats_line(conv, info.path, stats),
                "endpoint": info.extra["endpoint"],
            }
            sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return 0
    finally:
        backend.close()


# -- hearth endpoints ----------------------------------------------------------------------------


def add_endpoints_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    endpoints = sub.add_parser(
        "endpoints",
        help="name the OpenAI-compatible servers to chat through",
        description="Name OpenAI-compatible servers (vLLM, llama.cpp's server, Ollama, LM "
        "Studio, hosted APIs) for `hearth chat --endpoint NAME`. Names and addresses are "
        "kept in connections.json; API keys in the system keyring, never in a file.",
    )
    actions = endpoints.add_subparsers(dest="endpoints_action", required=True)
    add = actions.add_parser("add", help="add a connection (or replace one with that name)")
    add.add_argument("name", help="what to call it, like gpu-box")
    add.add_argument("url", help="the server's address, like http://gpu-box:8000/v1")
    add.add_argument("--model", default="", help="the model to use when none is named")
    add.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="save the API key in FILE ('-': stdin) in the system keyring",
    )
    listing = actions.add_parser("list", help="list the connections")
    listing.add_argument("--json", action="store_true", help="as JSON")
    remove = actions.add_parser("remove", help="forget a connection and its key")
    remove.add_argument("name")
    check = actions.add_parser("check", help="ask a server for its models: one sentence")
    check.add_argument("target", metavar="NAME|URL")
    check.add_argument("--model", help="check that the server has this model")
    check.add_argument("--api-key-file", metavar="FILE")


def run_endpoints(args: argparse.Namespace, paths: AppPaths) -> int:
    from engine.endpoints.keys import KeyStore
    from engine.endpoints.store import Endpoint, EndpointStore, check_name
    from engine.inference.endpoint import check_connection, normalize_base_url, plain_http_warning

    store = EndpointStore(connections_file(paths))
    try:
        if args.endpoints_action == "add":
            name, base = check_name(args.name), normalize_base_url(args.url)
            key = _read_key(args.api_key_file) if args.api_key_file else None
            store.put(Endpoint(name=name, base_url=base, model=args.model.strip()))
            keys = KeyStore()
            if key:
                keys.set(name, key)
                if not keys.kept:
                    print(
                        f"hearth: {keys.note} Pass --api-key-file with each chat.", file=sys.stderr
                    )
            print(f"Added {name}: {base}" + (" (with an API key)" if key else ""))
            if warning := plain_http_warning(base):
                print(f"hearth: warning: {warning}", file=sys.stderr)
            return 0
        if args.endpoints_action == "list":
            endpoints = store.all()
            if args.json:
                rows = [
                    {"name": e.name, "base_url": e.base_url, "model": e.model} for e in endpoints
                ]
                print(json.dumps(rows))
            elif not endpoints:
                print("No connections. Add one with: hearth endpoints add NAME URL")
            for e in [] if args.json else endpoints:
                print(f"{e.name}\t{e.base_url}" + (f"\t{e.model}" if e.model else ""))
            return 0
        if args.endpoints_action == "remove":
            if not store.remove(args.name):
                print(f'hearth: there is no connection named "{args.name}".', file=sys.stderr)
                return 1
            KeyStore().forget(args.name)
            print(f"Removed {args.name.strip()}.")
            return 0
        # check
        chat_args = argparse.Namespace(
            endpoint=args.target, model=args.model, api_key_file=args.api_key_file
        )
        base, model, key = _resolve(chat_args, paths)
        print(check_connection(base, key, model=model))
        return 0
    except ValueError as exc:
        print(f"hearth: {exc}", file=sys.stderr)
        return 2
    except KnownError as exc:
        print(f"hearth: {exc.message}", file=sys.stderr)
        return 1
