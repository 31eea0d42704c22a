"""The declared settings schema and its file: a bad file never stops Hearth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.settings import SCHEMA, SPECS, Settings


def test_every_option_is_declared_with_a_valid_default_and_description() -> None:
    assert len({spec.key for spec in SCHEMA}) == len(SCHEMA)
    for spec in SCHEMA:
        assert spec.check(spec.default) == spec.default, spec.key
        assert spec.label and spec.description.endswith("."), spec.key
        assert spec.page in {"model", "generation", "performance", "storage", "appearance"}


def test_defaults_without_a_file_then_changes_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings(path)
    assert settings["appearance.theme"] == "system" and settings.problems == []
    assert not path.exists()  # nothing written until something changes
    assert settings.set("appearance.theme", "dark")
    assert not settings.set("appearance.theme", "dark")  # no change, no write
    assert settings.update({"performance.n_ctx": 16384, "generation.temperature": None}) == [
        "performance.n_ctx"
    ]
    again = Settings(path)
    assert again["appearance.theme"] == "dark" and again["performance.n_ctx"] == 16384
    assert again.problems == []
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temp files left


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("performance.n_ctx", 100, "at least 512"),
        ("performance.n_ctx", 10.5, "whole number"),
        ("appearance.theme", "purple", "one of"),
        ("generation.temperature", "hot", "number"),
        ("performance.flash_attention", 1, "true or false"),
        ("generation.max_tokens", None, "empty"),
    ],
)
def test_bad_values_are_refused_with_a_reason(
    tmp_path: Path, key: str, value: object, why: str
) -> None:
    settings = Settings(tmp_path / "settings.json")
    with pytest.raises(ValueError, match=why):
        settings.set(key, value)  # type: ignore[arg-type]
    assert settings[key] == SPECS[key].default


def test_a_file_that_is_not_json_is_kept_aside_and_defaults_used(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{ this is not json", encoding="utf-8")
    settings = Settings(path)
    assert settings["appearance.theme"] == "system"
    assert settings.backup is not None and settings.backup.read_text() == "{ this is not json"
    (problem,) = settings.problems
    assert "could not be read" in problem and str(settings.backup) in problem


def test_hand_edited_bad_values_reset_only_those_keys(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    original = {
        "version": 1,
        "values": {
            "appearance.theme": "dark",  # fine: kept
            "performance.n_ctx": -5,  # out of bounds
            "generation.top_k": "twenty",  # wrong type
            "some.future_option": 3,  # unknown: ignored
        },
    }
    path.write_text(json.dumps(original), encoding="utf-8")
    settings = Settings(path)
    assert settings["appearance.theme"] == "dark"
    assert settings["performance.n_ctx"] is None and settings["generation.top_k"] is None
    (problem,) = settings.problems
    assert "Context length" in problem and "Top-k" in problem and "Theme" not in problem
    assert settings.backup is not None
    assert json.loads(settings.backup.read_text()) == original  # the original, untouched
    assert json.loads(path.read_text())["values"]["performance.n_ctx"] is None  # cleaned file
