"""The chats and models folders the person chose in Settings, as every front end opens them.

A chosen folder that is not there (a disk that is not plugged in, say) is not
recreated empty: Hearth uses its default folder meanwhile and says so in one
sentence, and the chosen one is used again once it is back. The window shows
the sentences; ``hearth`` on the command line prints them to stderr. No Qt here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.paths import AppPaths
from engine.settings import Settings

__all__ = ["chats_folder", "chosen_folders", "models_folder"]


def chosen_folders(paths: AppPaths, settings: Settings) -> tuple[AppPaths, tuple[str, ...]]:
    """``paths`` with the models and chats folders saved in ``settings`` where they are
    there, and a sentence for each one that is not."""
    paths, models_notice = models_folder(paths, str(settings["storage.models_dir"] or ""))
    paths, chats_notice = chats_folder(paths, str(settings["storage.chats_dir"] or ""))
    return paths, tuple(n for n in (models_notice, chats_notice) if n)


def chats_folder(paths: AppPaths, chosen: str) -> tuple[AppPaths, str]:
    """The paths with the chats folder the person chose, if it is there; else the default
    and a sentence (the chats there are untouched and used again once it is back)."""
    return _chosen_folder(
        paths,
        chosen,
        paths.with_chats_dir,
        lambda folder: (
            f"Your chats folder {folder} is not available (is its disk "
            f"connected?). Hearth opened the chats in {paths.chats_dir} meanwhile; the chats in "
            f"{folder} are untouched and open again once it is back."
        ),
    )


def models_folder(paths: AppPaths, chosen: str) -> tuple[AppPaths, str]:
    """The paths with the models folder the person chose, if it is there (a disk that is
    not plugged in, say, is not recreated empty); else the default, and a sentence."""
    return _chosen_folder(
        paths,
        chosen,
        paths.with_models_dir,
        lambda folder: (
            f"The models folder {folder} is not available (is its disk "
            f"connected?). Hearth uses {paths.models_dir} until it is back."
        ),
    )


def _chosen_folder(
    paths: AppPaths,
    chosen: str,
    use: Callable[[Path], AppPaths],
    missing: Callable[[Path], str],
) -> tuple[AppPaths, str]:
    if not chosen:
        return paths, ""
    folder = Path(chosen).expanduser()
    return (use(folder), "") if folder.is_dir() else (paths, missing(folder))
