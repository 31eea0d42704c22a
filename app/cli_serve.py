"""``hearth serve``: the loaded model as an OpenAI-compatible API for other programs on
this computer (app/serving), without the window. The model, folders and engine options
are the ones ``hearth chat`` uses (the model chosen in Settings, else the starter).
No Qt here (a contract says so)."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from app.paths import AppPaths
from engine.errors import KnownError

if TYPE_CHECKING:
    from engine.inference.backend import ChatBackend

__all__ = ["add_serve_parser", "read_or_make_key", "run_serve"]


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.serving.server import DEFAULT_PORT

    serve = sub.add_parser(
        "serve",
        help="let other programs use a model through an OpenAI-compatible API",
        description="Load a model and answer OpenAI-compatible requests (GET /v1/models, "
        "POST /v1/chat/completions, streamed or not) from other programs on this computer, "
        "one at a time. Stop it with Ctrl+C.",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the port to listen on (default {DEFAULT_PORT}; 0: any free one, printed)",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: only this computer). Another "
        "address lets other computers use the model: use it with --token-file",
    )
    serve.add_argument(
        "--model", help="a GGUF file (default: the model chosen in Settings, else the starter)"
    )
    serve.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="require the API key in FILE from every request (a new random key is written "
        "there if FILE does not exist)",
    )
    serve.add_argument("--context", type=int, metavar="N", help="context window in tokens")
    serve.add_argument("--threads", type=int, metavar="N", help="CPU threads for the model")


def read_or_make_key(path: Path) -> tuple[str, bool]:
    """The key in ``path``; a new one written there (readable by its owner only) if the
    file does not exist. (key, made). ``KnownError`` when it cannot be read or is empty."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(key + "\n")
        except OSError as exc:
            raise KnownError(
                f"Could not write a new API key to {path} ({exc.strerror or exc}). Choose a "
                "file in a folder you can write to."
            ) from exc
        return key, True
    except (OSError, UnicodeDecodeError) as exc:
        raise KnownError(f"Could not read the API key in {path} ({exc}).") from exc
    if not key or any(c.isspace() for c in key):
        raise KnownError(
            f"The API key file {path} is empty or has spaces in its key. Put one key in it, "
            "or name a file that does not exist to get a new key."
        )
    return key, False


def run_serve(args: argparse.Namespace, paths: AppPaths) -> int:
    from app.logs import setup_logging
    from app.serving.server import is_loopback

    paths.ensure()
    setup_logging(paths.log_dir)
    if not 0 <= args.port <= 65535:
        print(
            f"hearth: {args.port} is not a port; use 1 to 65535 (0: any free one).", file=sys.stderr
        )
        return 2
    key = None
    if args.token_file is not None:
        try:
            key, made = read_or_make_key(args.token_file)
        except KnownError as exc:
            print(f"hearth: {exc.message}", file=sys.stderr)
            return 1
        if made:
            print(f"A new API key is in {args.token_file}.", flush=True)
    if not is_loopback(args.host):
        print(
            f"hearth: warning: listening on {args.host} lets other computers that can reach "
            "this one use the model"
            + ("." if key else ", with no key: anyone on the network. Add --token-file FILE.")
            + " Requests and replies travel unencrypted (plain HTTP).",
            file=sys.stderr,
        )
    try:
        backend = _load(args, paths)
    except KnownError as exc:
        print(f"hearth: {exc.message}", file=sys.stderr)
        return 1
    return _serve(backend, args, key)


def _load(args: argparse.Namespace, paths: AppPaths) -> ChatBackend:
    """The model, loaded as ``hearth chat`` loads it."""
    from app.cli import _load as load_like_chat
    from app.cli import _saved_settings

    return load_like_chat(args, paths, _saved_settings(paths.config_dir))


def _serve(backend: ChatBackend, args: argparse.Namespace, key: str | None) -> int:
    from app.serving.engine_queue import ThreadRunner
    from app.serving.server import ApiServer, model_id

    runner = ThreadRunner(backend)
    try:
        server = ApiServer(runner, host=args.host, port=args.port, api_key=key)
    except OSError as exc:
        runner.close()
        reason = "it is in use by another program" if exc.errno in (98, 48, 10048) else exc
        print(
            f"hearth: could not listen on {args.host}:{args.port} ({reason}). Choose another "
            "port with --port, or 0 for any free one.",
            file=sys.stderr,
        )
        return 1
    name = model_id(backend.info)
    key_arg = "open('" + str(args.token_file) + "').read().strip()" if key else '"none"'
    print(
        f'Hearth serves {backend.info.name} at {server.url} (model name "{name}").\n'
        "Other programs on this computer can use it like any OpenAI-compatible API, e.g.:\n"
        f"  from openai import OpenAI\n"
        f'  client = OpenAI(base_url="{server.url}", api_key={key_arg})\n'
        f'  client.chat.completions.create(model="{name}", '
        'messages=[{"role": "user", "content": "Hello"}])\n'
        "Requests are answered one at a time. Press Ctrl+C to stop.",
        flush=True,
    )

    def terminate(signum: int, frame: FrameType | None) -> None:
        # Once: a second TERM (a supervisor and its child both sent one) must not cut
        # the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        runner.close()
    served = server.served
    print(f"Stopped; {served} request{'' if served == 1 else 's'} served.", flush=True)
    return 0
