"""Hearth's entry point: ``hearth`` opens the window; ``hearth chat``, ``models``, ``pull``,
``import``, ``rm``, ``endpoints`` and ``serve`` are the command line (app/cli.py,
app/cli_models.py, app/cli_remote.py, app/cli_serve.py)."""

from __future__ import annotations

import argparse
import os
import sys

from app.paths import resolve_paths
from app.version import __version__


def build_parser() -> argparse.ArgumentParser:
    from app.cli import add_chat_parser
    from app.cli_crypt import add_crypt_parsers
    from app.cli_models import add_model_parsers
    from app.cli_remote import add_endpoints_parser
    from app.cli_serve import add_serve_parser
    from app.cli_tools import add_mcp_parser

    parser = argparse.ArgumentParser(
        prog="hearth", description="Private, offline chat with open language models."
    )
    parser.add_argument("--version", action="version", version=f"Hearth {__version__}")
    parser.add_argument("--data-dir", help="keep chats, models and settings in this folder")
    parser.add_argument("--model", dest="gui_model", help="open the window with this GGUF file")
    parser.add_argument(
        "--theme", choices=("system", "light", "dark"), help="color theme (default: as in Settings)"
    )
    parser.add_argument(
        "--catalog",
        dest="gui_catalog",
        help="offer the models of this catalog file instead of Hearth's own (a mirror's, "
        "a refreshed one); downloads go to HF_ENDPOINT if set",
    )
    sub = parser.add_subparsers(dest="command")
    add_chat_parser(sub)
    add_model_parsers(sub)
    add_endpoints_parser(sub)
    add_crypt_parsers(sub)  # after chat: adds its unlock options
    add_mcp_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    paths = resolve_paths(args.data_dir)
    if args.command in ("chat", "models", "pull", "import", "rm", "serve"):
        from app.cli import with_saved_models_dir

        paths = with_saved_models_dir(paths)
    if args.command == "chat":
        from app.cli import run_chat

        return run_chat(args, paths)
    if args.command in ("encrypt", "decrypt", "rekey"):
        from app.cli_crypt import run_crypt

        return run_crypt(args, paths)
    if args.command == "mcp":
        from app import cli_tools

        return cli_tools.run_mcp(args, paths)
    if args.command == "serve":
        from app.cli_serve import run_serve

        return run_serve(args, paths)
    if args.command == "endpoints":
        from app import cli_remote

        return cli_remote.run_endpoints(args, paths)
    if args.command in ("models", "pull", "import", "rm"):
        from app import cli_models
        from app.logs import setup_logging

        # Warnings (huggingface_hub's "trying to resume", retries) go to the log file:
        # the terminal gets the progress bar and one sentence per problem.
        setup_logging(paths.ensure().log_dir)
        cli_models.quiet_library_logs()

        runners = {
            "models": cli_models.run_models,
            "pull": cli_models.run_pull,
            "import": cli_models.run_import,
            "rm": cli_models.run_rm,
        }
        runner = runners[args.command]
        try:
            return runner(args, paths)
        except BrokenPipeError:  # `hearth models | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    from app.gui import run_gui

    return run_gui(
        paths, model_path=args.gui_model or "", theme=args.theme, catalog_path=args.gui_catalog
    )


if __name__ == "__main__":
    sys.exit(main())
