"""Per-model sampling defaults (engine.inference.sampling), on real models where a model matters."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from app.worker import LoadRequest, open_local
from engine.inference.sampling import QWEN35_INSTRUCT, QWEN35_THINKING, default_sampling
from engine.inference.session import ChatSession
from engine.models import catalog
from engine.models.catalog import SamplingPreset
from engine.types import EngineOptions, Message, SamplingParams, TextDelta
from tests.fixtures.qwen35 import build_qwen35_gguf


def fields_of(params: SamplingParams) -> dict[str, float]:
    return {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "min_p": params.min_p,
        "presence_penalty": params.presence_penalty,
        "repeat_penalty": params.repeat_penalty,
    }


@pytest.mark.model
class TestModels:
    def test_qwen35_published_presets(self, qwen35_session: ChatSession) -> None:
        assert fields_of(qwen35_session.default_sampling(True)) == QWEN35_THINKING
        assert fields_of(qwen35_session.default_sampling(False)) == QWEN35_INSTRUCT
        # The model's default mode is thinking.
        assert qwen35_session.default_sampling() == qwen35_session.default_sampling(True)
        assert QWEN35_THINKING == {
            "temperature": 1.0,
            "top_p": 0.95,
            "top_k": 20,
            "min_p": 0.0,
            "presence_penalty": 1.5,
            "repeat_penalty": 1.0,
        }
        assert QWEN35_INSTRUCT["temperature"] == 0.7 and QWEN35_INSTRUCT["top_p"] == 0.8

    def test_gguf_metadata_is_read(self, tmp_path: Path) -> None:
        # The family preset wins over the file's one set of values for the fields it
        # names; the file's other fields (none here) would stay.
        path = build_qwen35_gguf(tmp_path / "q.gguf", sampling={"temp": 0.25, "top_k": 7})
        with ChatSession(path, EngineOptions(n_ctx=512)) as session:
            assert session._metadata["general.sampling.temp"] in ("0.25", "0.250000")
            assert session.default_sampling(False).temperature == 0.7

    def test_starter_model_gets_the_small_model_defaults(self, smol_session: ChatSession) -> None:
        params = smol_session.default_sampling()
        assert (params.temperature, params.repeat_penalty) == (0.3, 1.1)
        assert params == smol_session.default_sampling(True)  # it cannot think

    def test_open_local_gives_the_starter_its_catalog_name_and_preset(self, data_dir: Path) -> None:
        # The path the window takes on first launch: "" installs the starter model.
        request = LoadRequest(
            path="", options=EngineOptions(n_ctx=512), models_dir=data_dir / "models"
        )
        entry = catalog.starter_entry()
        preset = entry.sampling_for(thinking=False)
        assert preset == SamplingPreset(temperature=0.3, top_p=0.9, repeat_penalty=1.1)
        backend = open_local(request)
        try:
            assert backend.info.name == entry.name == "SmolLM2 135M Instruct"
            params = backend.default_sampling(None)
            assert (params.temperature, params.top_p, params.repeat_penalty) == (0.3, 0.9, 1.1)
        finally:
            backend.close()

    def test_open_local_applies_whatever_preset_the_catalog_has(
        self, starter_model_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The starter's preset happens to equal Hearth's small-model default, so a
        catalog whose preset differs shows that it is the catalog's that applies
        (until the presets were handed to the session, they were silently lost)."""
        real = catalog.load_catalog

        def edited(path: Path | None = None) -> list[catalog.CatalogEntry]:
            starter, *rest = real(path)
            model_card = {"default": SamplingPreset(temperature=0.2, top_k=7, min_p=0.1)}
            return [replace(starter, sampling=model_card), *rest]

        monkeypatch.setattr(catalog, "load_catalog", edited)
        request = LoadRequest(
            path=str(starter_model_path), options=EngineOptions(n_ctx=512), models_dir=Path()
        )
        backend = open_local(request)
        try:
            params = backend.default_sampling(None)
            assert (params.temperature, params.top_k, params.min_p) == (0.2, 7, 0.1)
            assert params.repeat_penalty == 1.1  # the small-model default, not named there
        finally:
            backend.close()

    def test_starter_defaults_do_not_loop(self, smol_session: ChatSession) -> None:
        """At 0.7 without a repeat penalty SmolLM2 repeats one line forever."""
        chat = [Message("user", "Write a short poem about a lighthouse.")]

        def loopiness(params: SamplingParams) -> int:
            """How often the most repeated 5-word sequence of a reply occurs."""
            events = smol_session.stream(chat, replace(params, max_tokens=120, seed=1))
            words = "".join(e.text for e in events if isinstance(e, TextDelta)).split()
            grams = Counter(zip(*(words[i:] for i in range(5)), strict=False))
            return max(grams.values(), default=0)

        defaults = smol_session.default_sampling()
        old = replace(defaults, temperature=0.7, top_p=0.8, top_k=20, min_p=0.0)
        old = replace(old, repeat_penalty=1.0)
        assert loopiness(defaults) <= 3
        assert loopiness(old) >= 6


class TestLayers:
    def test_generic_default_for_an_unknown_model(self) -> None:
        params = default_sampling(
            architecture="mistral", metadata={}, n_params=7_000_000_000, thinking=False
        )
        assert fields_of(params) == {
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 40,
            "min_p": 0.05,
            "presence_penalty": 0.0,
            "repeat_penalty": 1.0,
        }

    def test_gguf_keys_override_the_generic_default(self) -> None:
        metadata = {
            "general.sampling.temp": "0.6",
            "general.sampling.top_k": "30",
            "general.sampling.top_p": "0.85",
            "general.sampling.penalty_repeat": "1.05",
            "general.sampling.mirostat": "0",  # not something Hearth sets: ignored
        }
        params = default_sampling(
            architecture="llama", metadata=metadata, n_params=8_000_000_000, thinking=False
        )
        assert (params.temperature, params.top_k, params.top_p) == (0.6, 30, 0.85)
        assert params.repeat_penalty == 1.05

    def test_catalog_wins_over_everything(self) -> None:
        params = default_sampling(
            architecture="qwen35",
            metadata={"general.sampling.temp": "0.6"},
            n_params=9_000_000_000,
            thinking=True,
            catalog={"temperature": 0.9, "presence_penalty": 1.0, "top_k": 40},
        )
        assert (params.temperature, params.presence_penalty, params.top_k) == (0.9, 1.0, 40)
        assert params.top_p == 0.95  # the rest from the Qwen3.5 thinking preset

    def test_bad_values_in_files_are_skipped(self, caplog: pytest.LogCaptureFixture) -> None:
        params = default_sampling(
            architecture="llama",
            metadata={"general.sampling.temp": "warm"},
            n_params=8_000_000_000,
            thinking=False,
            catalog={"top_p": 0.0},  # out of range: the whole set falls back
        )
        assert params.temperature == 0.7 and params.top_p == 0.9
        assert "warm" in caplog.text and "rejected" in caplog.text

    def test_every_field_is_set_and_max_tokens_untouched(self) -> None:
        params = default_sampling(architecture="x", metadata={}, n_params=0, thinking=False)
        assert params.max_tokens == SamplingParams().max_tokens
        assert params.seed is None
