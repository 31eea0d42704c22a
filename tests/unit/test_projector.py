"""A model's vision file (issue 13): found beside it by width and name, brought along
by an import (or refused with a sentence), kept out of the model list, counted in the
download and the memory estimate. Real GGUF files built with the ``gguf`` package;
no llama.cpp (the load itself is tested in test_vision.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.gguf.projector import find_projector, model_width, projector_info
from engine.models.catalog import load_catalog
from engine.models.library import delete_model, import_gguf, installed_models
from engine.models.memory import estimate_for_options
from engine.types import EngineOptions
from tests.fixtures.mmproj import build_mmproj_gguf
from tests.fixtures.qwen35 import N_EMBD, build_qwen35_gguf


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("built")
    return {
        "model": build_qwen35_gguf(folder / "Tiny-Q8_0.gguf"),
        "fits": build_mmproj_gguf(folder / "mmproj-fits.gguf", n_embd_text=N_EMBD),
        "other": build_mmproj_gguf(folder / "mmproj-other.gguf", n_embd_text=N_EMBD * 2),
    }


def put(folder: Path, *files: tuple[Path, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for src, name in files:
        shutil.copyfile(src, folder / name)
    return folder


def test_a_projector_is_read_from_its_header(built: dict[str, Path]) -> None:
    info = projector_info(built["fits"])
    assert info is not None and (info.width, info.projector_type) == (N_EMBD, "qwen3vl_merger")
    assert projector_info(built["model"]) is None  # a text model is not a projector
    assert model_width(built["model"]) == N_EMBD


def test_the_projector_that_fits_is_found_beside_the_model(
    built: dict[str, Path], tmp_path: Path
) -> None:
    folder = put(
        tmp_path / "models",
        (built["model"], "Qwen3.5-9B-Q4_K_M.gguf"),
        (built["other"], "Qwen3.5-4B-mmproj-F16.gguf"),  # another model's: wrong width
        (built["fits"], "Other-mmproj-F16.gguf"),
        (built["fits"], "Qwen3.5-9B-mmproj-F16.gguf"),  # fits, and shares the name
    )
    found, misfit = find_projector(folder / "Qwen3.5-9B-Q4_K_M.gguf", N_EMBD)
    assert found is not None and found.path.name == "Qwen3.5-9B-mmproj-F16.gguf"
    assert misfit == ""
    # The model list shows models, not their vision files.
    assert [m.path.name for m in installed_models(folder, [])] == ["Qwen3.5-9B-Q4_K_M.gguf"]


def test_a_model_without_a_fitting_projector_has_none(
    built: dict[str, Path], tmp_path: Path
) -> None:
    folder = put(tmp_path / "m", (built["model"], "Tiny.gguf"), (built["other"], "mmproj.gguf"))
    found, misfit = find_projector(folder / "Tiny.gguf", N_EMBD)
    assert found is None
    assert misfit == (
        f"mmproj.gguf is a vision file for another model (it makes images {N_EMBD * 2} "
        f"wide; Tiny reads {N_EMBD}), so it was not used. Download the vision file made "
        "for Tiny."
    )


def test_an_import_brings_the_projector_beside_it(built: dict[str, Path], tmp_path: Path) -> None:
    downloads = put(
        tmp_path / "Downloads",
        (built["model"], "Tiny-Q8_0.gguf"),
        (built["fits"], "mmproj-F16.gguf"),
    )
    models = tmp_path / "models"
    model = import_gguf(downloads / "Tiny-Q8_0.gguf", models)
    assert model.note == "Its vision file mmproj-F16.gguf came along: it can see images."
    paired = models / "Tiny-Q8_0.mmproj.gguf"
    assert paired.read_bytes() == built["fits"].read_bytes()
    found, _ = find_projector(model.path, N_EMBD)
    assert found is not None and found.path == paired
    delete_model(model.path, models)  # its own vision file goes with it
    assert not paired.exists() and not model.path.exists()


def test_an_import_refuses_a_projector_of_another_model_with_a_sentence(
    built: dict[str, Path], tmp_path: Path
) -> None:
    downloads = put(
        tmp_path / "Downloads", (built["model"], "Tiny.gguf"), (built["other"], "mmproj-F16.gguf")
    )
    model = import_gguf(downloads / "Tiny.gguf", tmp_path / "models")
    assert "is a vision file for another model" in model.note
    assert model.path.exists()  # the model itself is imported
    assert not (tmp_path / "models" / "Tiny.mmproj.gguf").exists()


def test_the_catalog_pairs_qwen35_with_its_projector_in_size_and_memory() -> None:
    catalog = load_catalog()
    q4 = next(e for e in catalog if e.id == "qwen3.5-9b-q4_k_m")
    projector = q4.projector
    assert projector is not None
    assert (projector.filename, projector.remote_name) == (
        "Qwen3.5-9B-mmproj-F16.gguf", "mmproj-F16.gguf",
    )  # fmt: skip
    assert projector.repo == q4.repo and projector.size == 918_166_080
    assert q4.download_size == q4.size + projector.size
    assert q4.arch is not None and q4.arch.vision_bytes > projector.size
    estimate = estimate_for_options(q4.arch, EngineOptions(n_ctx=8192))
    assert estimate.vision == q4.arch.vision_bytes
    assert estimate.total > estimate.weights + estimate.vision
    smol = next(e for e in catalog if e.family == "smollm2-135m")
    assert smol.projector is None and smol.download_size == smol.size
