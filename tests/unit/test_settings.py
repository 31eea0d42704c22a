"""The declared settings schema and its file: a bad file never stops Hearth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.settings import SCHEMA, SPECS, Appearance, Generation, Performance, Settings, Theme
from engine.types import ThinkingMode


def test_every_option_is_declared_with_a_valid_default_and_description() -> None:
    assert len({spec.key for spec in SCHEMA}) == len(SCHEMA)
    for spec in SCHEMA:
        assert spec.check(spec.default) == spec.default, spec.key
        assert spec.label and spec.description.endswith("."), spec.key
        assert spec.page in {"model", "generation", "performance", "storage", "appearance", "serve"}


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


def test_typed_options_read_and_write_their_own_type(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "settings.json")
    n_ctx: int | None = settings[Performance.N_CTX]  # mypy knows the type of each option
    assert n_ctx is None
    assert settings[Generation.THINKING] is ThinkingMode.MODEL
    assert settings.set(Generation.THINKING, ThinkingMode.OFF)
    assert settings.set(Appearance.THEME, Theme.DARK)
    again = Settings(tmp_path / "settings.json")  # saved as the enums' values, read as enums
    assert again[Generation.THINKING] is ThinkingMode.OFF and again[Appearance.THEME] is Theme.DARK
    saved = json.loads((tmp_path / "settings.json").read_text())["values"]
    assert saved["generation.thinking"] == "off"
    with pytest.raises(ValueError, match="must be a number"):
        settings.set(Performance.N_CTX, "4096")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one of model, on, off"):
        settings.set(Generation.THINKING, "sometimes")  # type: ignore[arg-type]
    assert settings[Performance.N_CTX] is None


def test_the_thinking_choices_are_the_turn_models_modes() -> None:
    assert Generation.THINKING.choices == tuple(mode.value for mode in ThinkingMode)


def test_mypy_catches_a_wrong_option_or_value(tmp_path: Path) -> None:
    """What the typed options are for: a typo in an option, or a value of the wrong type,
    fails the type check instead of failing at run time."""
    from mypy import api

    snippet = tmp_path / "wrong_settings.py"
    snippet.write_text(
        "from engine.settings import Performance, Settings\n"
        "def f(settings: Settings) -> str:\n"
        "    settings.set(Performance.N_CTX, 'large')\n"
        "    settings[Performance.N_CTXX]\n"
        "    return settings[Performance.N_CTX]\n",
        encoding="utf-8",
    )
    out, _err, status = api.run([str(snippet), "--no-error-summary", "--hide-error-context"])
    assert status == 1
    lines = out.splitlines()
    assert any(":3:" in line and "set" in line for line in lines), out  # value of the wrong type
    assert any(":4:" in line and "N_CTXX" in line for line in lines), out  # no such option
    assert any(":5:" in line and "int | None" in line for line in lines), out  # read as its type
