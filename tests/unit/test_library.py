"""engine.models.library, engine.gguf.validate and engine.models.hf_cache on real GGUF files:
the starter model, damaged copies of it, GGUFs written with the ``gguf`` package, and a Hugging Face
cache laid out in tmp (``HF_HUB_CACHE``).

Faked, because it cannot be made here: a full disk (``shutil.disk_usage`` and an ENOSPC
from ``os.fsync``, as in test_models.py) and the machine's RAM (a ``HardwareInfo``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import struct
import threading
from collections import namedtuple
from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.errors import KnownError, ModelInstallError
from engine.gguf.validate import (
    NOT_FOR_CHAT,
    SUPPORTED_ARCHITECTURES,
    DamagedModelFile,
    NotAModelFile,
    UnsupportedArchitecture,
    UnsupportedGGUFVersion,
    validate_gguf,
)
from engine.models.catalog import (
    CatalogEntry,
    catalog_entry,
    installed_path,
    load_catalog,
    remember_verified,
    sha256_file,
)
from engine.models.download import partial_path
from engine.models.hf_cache import find_in_hf_cache, scan_hf_cache
from engine.models.library import (
    ImportCancelled,
    adopt_from_cache,
    delete_model,
    import_gguf,
    installed_models,
    model_rows,
)
from engine.models.memory import GIB, FitBadge, HardwareInfo

STARTER = "SmolLM2-135M-Instruct.Q4_1.gguf"


def write_gguf(path: Path, arch: str, *, tensors: int = 2, name: str | None = None) -> Path:
    """A small, well-formed GGUF file of architecture ``arch`` (gguf's own writer)."""
    writer = gguf.GGUFWriter(str(path), arch)
    if name:
        writer.add_name(name)
    writer.add_uint32(f"{arch}.block_count", 1)
    writer.add_uint32(f"{arch}.context_length", 4096)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_token_list([f"t{i}" for i in range(32)])
    for i in range(tensors):
        writer.add_tensor(f"blk.0.w{i}", np.full((16, 16), i, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def machine(ram_gib: float) -> HardwareInfo:
    """A machine with ``ram_gib`` of RAM, all of it available (RAM cannot be changed here)."""
    ram = int(ram_gib * GIB)
    return HardwareInfo(
        total_ram=ram, available_ram=ram, physical_cores=4, logical_cores=8, disk_free=None,
        gpu_offload=False,
    )  # fmt: skip


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- validate_gguf ---------------------------------------------------------------------------


def test_the_starter_model_is_valid(starter_model_path: Path) -> None:
    info = validate_gguf(starter_model_path)
    assert (info.architecture, info.version, info.quantization) == ("llama", 3, "Q4_1")
    assert info.size == starter_model_path.stat().st_size
    assert info.n_tensors > 100 and info.context_length == 8192
    assert info.name  # general.name


def test_a_truncated_download_is_damaged(tmp_path: Path, starter_model_path: Path) -> None:
    data = starter_model_path.read_bytes()
    # Cut in the tensor data (the header is intact: only the tensors' offsets tell), a few
    # bytes short of the end, and inside the header itself.
    for cut in (len(data) // 2, len(data) - 7, 5000):
        bad = tmp_path / f"cut-{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(DamagedModelFile) as info:
            validate_gguf(bad)
        assert str(info.value) == (
            f"{bad.name} is damaged or incomplete (perhaps an unfinished download): download "
            "or copy it again."
        )


def test_not_a_gguf_file(tmp_path: Path) -> None:
    for name, content in [("notes.gguf", b"hello, I am text"), ("empty.gguf", b"")]:
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(NotAModelFile) as info:
            validate_gguf(bad)
        assert str(info.value).startswith(f"{name} is not a GGUF model file:")
    with pytest.raises(NotAModelFile, match="does not exist"):
        validate_gguf(tmp_path / "missing.gguf")
    with pytest.raises(NotAModelFile, match="is a folder"):
        validate_gguf(tmp_path)


@pytest.mark.parametrize("version", [1, 4, 0x33465547])
def test_unsupported_gguf_versions(tmp_path: Path, starter_model_path: Path, version: int) -> None:
    data = bytearray(starter_model_path.read_bytes()[:4096])
    data[4:8] = struct.pack("<I", version)
    bad = tmp_path / "v.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(UnsupportedGGUFVersion) as info:
        validate_gguf(bad)
    assert f"GGUF version {version}, which this version of Hearth cannot read" in str(info.value)


@pytest.mark.parametrize("arch", ["gptj", "clip", "not-a-real-arch"])
def test_an_architecture_llama_cpp_cannot_run(tmp_path: Path, arch: str) -> None:
    # gptj has a name in llama.cpp but no implementation; clip is a vision projector.
    path = write_gguf(tmp_path / "m.gguf", arch)
    with pytest.raises(UnsupportedArchitecture) as info:
        validate_gguf(path)
    assert str(info.value).startswith(
        f"m.gguf is a model of type {arch!r}, which this version of Hearth cannot run:"
    )
    assert isinstance(info.value, KnownError)


def test_an_embedding_model_is_not_for_chat(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "embed.gguf", "bert")
    with pytest.raises(UnsupportedArchitecture) as info:
        validate_gguf(path)
    assert str(info.value) == (
        "embed.gguf is an embedding model (it turns text into vectors, it cannot write "
        "replies): pick a chat or instruct model instead."
    )


def test_a_small_valid_gguf_written_by_the_gguf_package(tmp_path: Path) -> None:
    info = validate_gguf(write_gguf(tmp_path / "q.gguf", "qwen35", name="Tiny"))
    assert (info.architecture, info.name, info.quantization) == ("qwen35", "Tiny", "ALL_F32")


def test_the_architecture_list_matches_this_llama_cpp_build() -> None:
    """Every name Hearth accepts is an architecture name compiled into the libllama it runs.

    (The list itself comes from llama.cpp's source: see engine/gguf/validate.py.)
    """
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    data = b"".join(p.read_bytes() for p in lib.glob("libllama*") if p.is_file())
    assert data, f"no libllama in {lib}"
    # Only the end is anchored: the linker may store "bert" as the tail of "nomic-bert".
    missing = [a for a in SUPPORTED_ARCHITECTURES if a.encode() + b"\0" not in data]
    assert missing == []
    assert {"llama", "qwen35", "gemma3", "qwen3"} <= SUPPORTED_ARCHITECTURES
    assert set(NOT_FOR_CHAT) - {"clip"} <= SUPPORTED_ARCHITECTURES


# -- import, list, delete ----------------------------------------------------------------------


def test_import_copies_verifies_and_lists(tmp_path: Path, starter_model_path: Path) -> None:
    src = tmp_path / "mine" / "my-model.gguf"
    src.parent.mkdir()
    shutil.copyfile(starter_model_path, src)
    models = tmp_path / "models"
    seen: list[tuple[int, int]] = []
    imported = import_gguf(
        src, models, catalog=load_catalog(), on_progress=lambda *a: seen.append(a)
    )
    assert imported.path == models / "my-model.gguf" and imported.entry is None
    assert imported.quantization == "Q4_1" and imported.verified
    assert sha256_file(imported.path) == sha256_file(src)
    assert listing(models) == ["my-model.gguf", "my-model.gguf.sha256"]
    assert seen[-1] == (src.stat().st_size, src.stat().st_size)

    (listed,) = installed_models(models, load_catalog())
    assert listed == imported
    # Again: the same bytes under the same name are not copied twice.
    assert import_gguf(src, models).path == imported.path
    assert listing(models) == ["my-model.gguf", "my-model.gguf.sha256"]


def test_import_never_overwrites_a_different_file(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = import_gguf(write_gguf(tmp_path / "a" / "m.gguf", "llama", tensors=1), models)
    second = import_gguf(write_gguf(tmp_path / "b" / "m.gguf", "llama", tensors=3), models)
    assert first.path.name == "m.gguf" and second.path.name == "m (2).gguf"
    assert [m.path.name for m in installed_models(models, [])] == ["m (2).gguf", "m.gguf"]


def test_a_file_named_like_a_catalog_model_counts_only_with_its_hash(
    tmp_path: Path, starter_model_path: Path
) -> None:
    catalog = load_catalog()
    models = tmp_path / "models"
    real = import_gguf(starter_model_path, models, catalog=catalog)
    assert real.entry is not None and real.entry.id == catalog[0].id and real.is_starter
    fake_src = tmp_path / "elsewhere" / STARTER
    fake_src.parent.mkdir()
    write_gguf(fake_src, "llama")
    fake = import_gguf(fake_src, models, catalog=catalog)
    assert fake.entry is None and fake.path.name == "SmolLM2-135M-Instruct.Q4_1 (2).gguf"
    assert installed_path(catalog[0], models) == real.path


def test_a_bad_file_is_refused_before_anything_is_copied(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    write_gguf(bad, "gptj")
    models = tmp_path / "models"
    with pytest.raises(UnsupportedArchitecture):
        import_gguf(bad, models)
    assert not models.exists()


def test_import_with_no_free_space_says_so(
    tmp_path: Path, starter_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(ModelInstallError) as info:
        import_gguf(starter_model_path, models)
    assert str(info.value) == (
        f"Not enough free disk space to copy {STARTER} into the models folder: it needs 98 MB "
        f"and 1 MB is free in {models}. Free some space or choose another models folder in "
        "Settings."
    )
    assert listing(models) == []


def test_a_disk_that_fills_up_mid_copy_leaves_nothing(
    tmp_path: Path, starter_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    models = tmp_path / "models"
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ModelInstallError, match=r"^Not enough free disk space to copy"):
        import_gguf(starter_model_path, models)
    assert listing(models) == []


def test_a_cancelled_import_leaves_nothing(tmp_path: Path, starter_model_path: Path) -> None:
    cancel = threading.Event()
    models = tmp_path / "models"

    def stop_half_way(done: int, total: int) -> None:
        if done > total // 2:
            cancel.set()

    with pytest.raises(ImportCancelled):
        import_gguf(starter_model_path, models, on_progress=stop_half_way, cancel=cancel)
    assert listing(models) == []


def test_installed_models_lists_catalog_and_imported_without_hashing(
    tmp_path: Path, starter_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = load_catalog()
    models = tmp_path / "models"
    import_gguf(starter_model_path, models, catalog=catalog)
    write_gguf(models / "dropped-in.gguf", "llama", name="By hand")  # no record: not verified
    (models / "notes.txt").write_text("not a model")
    monkeypatch.setattr(hashlib, "sha256", None)  # listing must not hash anything
    found = installed_models(models, catalog)
    assert [(m.path.name, m.entry is not None, m.verified) for m in found] == [
        (STARTER, True, True),
        ("dropped-in.gguf", False, False),
    ]
    assert found[1].name == "By hand"


def test_delete_removes_the_record_and_unfinished_parts(tmp_path: Path) -> None:
    models = tmp_path / "models"
    imported = import_gguf(write_gguf(tmp_path / "m.gguf", "llama"), models)
    part = partial_path(models, "m.gguf", "ab" * 32)
    part.parent.mkdir()
    part.write_bytes(b"half")
    (models / ".m.gguf.123.tmp").write_bytes(b"half a copy")
    delete_model(imported.path, models)
    assert listing(models) == [".downloads"]
    assert listing(models / ".downloads") == []
    delete_model(imported.path, models)  # already gone: fine


def test_delete_refuses_the_starters_package_and_files_elsewhere(
    tmp_path: Path, starter_model_path: Path
) -> None:
    models = tmp_path / "models"
    with pytest.raises(ModelInstallError) as info:
        delete_model(starter_model_path, models)
    assert "is the starter model Hearth installs from; it is not deleted" in str(info.value)
    assert starter_model_path.is_file()
    mine = write_gguf(tmp_path / "mine.gguf", "llama")
    with pytest.raises(ModelInstallError, match="is not in Hearth's models folder"):
        delete_model(mine, models)
    assert mine.is_file()


# -- the Hugging Face cache -------------------------------------------------------------------


def hf_cache_file(cache: Path, repo: str, filename: str, data: bytes, commit: str) -> Path:
    """Lay ``data`` out the way huggingface_hub's cache does (blobs, snapshots, refs)."""
    root = cache / ("models--" + repo.replace("/", "--"))
    sha = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / sha).write_bytes(data)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).symlink_to(Path("..", "..", "blobs", sha))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return snapshot / filename


@pytest.fixture
def tiny_entry(tmp_path: Path) -> tuple[CatalogEntry, bytes]:
    """The catalog's Qwen3.5-0.8B Q4_K_M entry, for a small GGUF standing in for its file."""
    data = write_gguf(tmp_path / "tiny.gguf", "qwen35").read_bytes()
    entry = replace(
        catalog_entry("qwen3.5-0.8b-q4_k_m"), size=len(data), size_estimated=False,
        sha256=hashlib.sha256(data).hexdigest(), revision="a" * 40,
    )  # fmt: skip
    return entry, data


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_finds_the_pinned_file_in_the_hf_cache(
    hf_cache: Path, tmp_path: Path, tiny_entry: tuple[CatalogEntry, bytes]
) -> None:
    entry, data = tiny_entry
    assert entry.repo is not None and entry.revision is not None
    path = hf_cache_file(hf_cache, entry.repo, entry.filename, data, entry.revision)
    found = find_in_hf_cache(entry)
    assert found is not None and found.path == path and found.sha256 == entry.sha256
    assert find_in_hf_cache(entry, cached=scan_hf_cache()) == found


def test_the_same_bytes_under_another_repo_and_revision_count(
    hf_cache: Path, tiny_entry: tuple[CatalogEntry, bytes]
) -> None:
    entry, data = tiny_entry
    path = hf_cache_file(hf_cache, "someone/mirror-GGUF", "renamed.gguf", data, "b" * 40)
    found = find_in_hf_cache(entry)
    assert found is not None and found.path == path
    # Without a catalog hash, only the same repo's file of that name is trusted.
    assert find_in_hf_cache(replace(entry, sha256=None)) is None


def test_other_files_do_not_match(
    hf_cache: Path, tmp_path: Path, tiny_entry: tuple[CatalogEntry, bytes]
) -> None:
    entry, data = tiny_entry
    assert entry.repo is not None and entry.revision is not None
    hf_cache_file(hf_cache, entry.repo, entry.filename, data + b"x", entry.revision)
    assert find_in_hf_cache(entry) is None
    assert find_in_hf_cache(replace(entry, size=len(data) + 1, sha256=None)) is not None


def test_no_cache_folder_finds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_entry: tuple[CatalogEntry, bytes]
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "none"))
    assert find_in_hf_cache(tiny_entry[0]) is None
    assert scan_hf_cache() == []


def test_adopt_links_verifies_and_installs(
    hf_cache: Path, tmp_path: Path, tiny_entry: tuple[CatalogEntry, bytes]
) -> None:
    entry, data = tiny_entry
    assert entry.repo is not None and entry.revision is not None
    cached = hf_cache_file(hf_cache, entry.repo, entry.filename, data, entry.revision)
    models = tmp_path / "models"
    path = adopt_from_cache(entry, models)
    assert path == models / entry.filename and installed_path(entry, models) == path
    assert os.path.samefile(path, cached.resolve())  # a hard link: no second copy
    assert listing(models) == [entry.filename, entry.filename + ".sha256"]
    delete_model(path, models)  # deleting Hearth's name keeps the cache's
    assert cached.read_bytes() == data


def test_a_damaged_cache_blob_is_not_used(
    hf_cache: Path, tmp_path: Path, tiny_entry: tuple[CatalogEntry, bytes]
) -> None:
    entry, data = tiny_entry
    assert entry.repo is not None and entry.revision is not None
    cached = hf_cache_file(hf_cache, entry.repo, entry.filename, data, entry.revision)
    damaged = bytearray(data)
    damaged[-1] ^= 0xFF
    cached.resolve().write_bytes(bytes(damaged))  # bit rot under the right name
    models = tmp_path / "models"
    with pytest.raises(ModelInstallError) as info:
        adopt_from_cache(entry, models)
    assert str(info.value).startswith(
        f"The copy of {entry.filename} in the Hugging Face cache ({cached}) is damaged"
    )
    assert listing(models) == []


# -- the Models page's rows ---------------------------------------------------------------------


def test_rows_recommend_by_machine_and_show_installed_and_cached(
    hf_cache: Path, tmp_path: Path, starter_model_path: Path,
    tiny_entry: tuple[CatalogEntry, bytes], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    tiny, data = tiny_entry
    catalog = [tiny if e.id == tiny.id else e for e in load_catalog()]
    models = tmp_path / "models"
    import_gguf(starter_model_path, models, catalog=catalog)
    assert tiny.repo is not None and tiny.revision is not None
    hf_cache_file(hf_cache, tiny.repo, tiny.filename, data, tiny.revision)

    monkeypatch.setattr(hashlib, "sha256", None)  # rows must not hash anything
    rows = {r.entry.id: r for r in model_rows(catalog, models, machine(8))}
    assert rows[catalog[0].id].installed == models / STARTER
    assert rows[tiny.id].installed is None and rows[tiny.id].cached is not None
    (best,) = [r for r in rows.values() if r.recommended]
    assert best.badge is FitBadge.FITS
    # On 8 GB, a 9B model at 8-bit is too large; the pick is the best that fits.
    assert rows["qwen3.5-9b-q8_0"].badge is not FitBadge.FITS
    better = [r for r in rows.values() if r.entry.quality_rank > best.entry.quality_rank]
    assert all(r.badge is not FitBadge.FITS or not r.entry.recommendable for r in better)

    big = [r for r in model_rows(catalog, models, machine(32), hf_cache=False) if r.recommended]
    assert big[0].entry.family == "qwen3.5-9b"
    assert big[0].entry.quality_rank > best.entry.quality_rank


def test_a_file_changed_since_verified_is_not_installed(
    tmp_path: Path, tiny_entry: tuple[CatalogEntry, bytes]
) -> None:
    entry, data = tiny_entry
    models = tmp_path / "models"
    models.mkdir()
    target = models / entry.filename
    target.write_bytes(data)
    assert entry.sha256 is not None
    remember_verified(target, entry.sha256)
    (row,) = [r for r in model_rows([entry], models, machine(16), hf_cache=False)]
    assert row.installed == target
    with target.open("r+b") as f:
        f.write(b"X")
    (row,) = model_rows([entry], models, machine(16), hf_cache=False)
    assert row.installed is None


def test_rows_show_an_unfinished_download(
    tmp_path: Path, tiny_entry: tuple[CatalogEntry, bytes]
) -> None:
    entry, data = tiny_entry
    models = tmp_path / "models"
    assert entry.sha256 is not None
    part = partial_path(models, entry.filename, entry.sha256)
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100])
    (row,) = model_rows([entry], models, machine(16), hf_cache=False)
    assert (row.installed, row.partial) == (None, 100)
    delete_model(models / entry.filename, models)  # "delete" also drops what was begun
    (row,) = model_rows([entry], models, machine(16), hf_cache=False)
    assert row.partial == 0
