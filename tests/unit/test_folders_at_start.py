"""The chats and models folders chosen in Settings, opened the same way by the window
and the command line (app/folders_at_start.py), on real folders."""

from __future__ import annotations

import json
from pathlib import Path

from app.folders_at_start import chosen_folders
from app.paths import resolve_paths
from engine.settings import Settings


def _settings(config: Path, values: dict[str, str]) -> Settings:
    config.mkdir(parents=True, exist_ok=True)
    (config / "settings.json").write_text(json.dumps({"version": 1, "values": values}))
    return Settings(config / "settings.json")


def test_chosen_folders_that_are_there_are_used_silently(tmp_path: Path) -> None:
    paths = resolve_paths(tmp_path / "data")
    models, chats = tmp_path / "disk" / "models", tmp_path / "disk" / "chats"
    models.mkdir(parents=True)
    chats.mkdir()
    settings = _settings(
        paths.config_dir, {"storage.models_dir": str(models), "storage.chats_dir": str(chats)}
    )
    chosen, notices = chosen_folders(paths, settings)
    assert (chosen.models_dir, chosen.chats_dir, notices) == (models, chats, ())


def test_a_missing_folder_is_not_recreated_and_gets_a_sentence(tmp_path: Path) -> None:
    paths = resolve_paths(tmp_path / "data")
    gone = tmp_path / "unplugged"
    settings = _settings(
        paths.config_dir,
        {"storage.models_dir": str(gone / "models"), "storage.chats_dir": str(gone / "chats")},
    )
    chosen, notices = chosen_folders(paths, settings)
    assert (chosen.models_dir, chosen.chats_dir) == (paths.models_dir, paths.chats_dir)
    models_notice, chats_notice = notices
    assert str(gone / "models") in models_notice and str(paths.models_dir) in models_notice
    assert "is not available (is its disk connected?)" in models_notice
    assert str(gone / "chats") in chats_notice and "untouched" in chats_notice
    assert not gone.exists()


def test_no_folder_chosen_means_the_defaults(tmp_path: Path) -> None:
    paths = resolve_paths(tmp_path / "data")
    assert chosen_folders(paths, _settings(paths.config_dir, {})) == (paths, ())
