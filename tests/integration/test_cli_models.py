"""``hearth models`` / ``pull`` / ``import`` / ``rm``: the real CLI in a subprocess, against a
Hub-protocol server on 127.0.0.1 (tests/hubserver.py) and a real models folder.

Faked, because it cannot be real here: the Hugging Face Hub (the loopback server), and the
computer's memory size (``hearth models --assume-ram``, a documented option for asking
what another computer should get). The keyring is keyring's own ``null`` backend (no token
is saved), chosen through keyring's documented ``PYTHON_KEYRING_BACKEND`` variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.models.catalog import load_catalog, resources_dir
from engine.models.library import model_rows
from engine.models.memory import GIB, HardwareInfo
from tests.hubserver import HubServer
from tests.integration.conftest import CHUNK, FILE, PROJECTOR_LOCAL, REPO, SIZE

ID = "qwen3.5-9b-q4_k_m"
STARTER = "SmolLM2-135M-Instruct.Q4_1.gguf"
HEARTH = Path(sys.executable).parent / "hearth"


def hearth_cmd(*args: str) -> list[str]:
    """The installed ``hearth`` script, or the same entry point through ``-m app``."""
    return [str(HEARTH), *args] if HEARTH.exists() else [sys.executable, "-m", "app", *args]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    return {
        **{k: v for k, v in os.environ.items() if k != "HF_TOKEN"},  # set by the tests that want it
        "HF_HUB_CACHE": str(cache),  # an empty cache: never the person's own
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def hearth(
    data_dir: Path, *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hearth_cmd("--data-dir", str(data_dir), *args), capture_output=True, text=True,
        env=env, timeout=timeout, check=False,
    )  # fmt: skip


def models_json(data_dir: Path, *args: str, env: dict[str, str]) -> dict[str, Any]:
    result = hearth(data_dir, "models", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# -- hearth models ---------------------------------------------------------------------------


@pytest.mark.parametrize("gib", [8, 16, 24, 32])
def test_models_recommends_for_the_computer_it_is_told_about(
    data_dir: Path, env: dict[str, str], gib: int
) -> None:
    listed = models_json(data_dir, "--assume-ram", f"{gib}GB", env=env)
    assert listed["machine"]["assumed"] and listed["machine"]["total_ram"] == gib * GIB
    (pick,) = [m for m in listed["models"] if m["recommended"]]
    # The same answer engine.models.library gives the Models page for that machine.
    hw = HardwareInfo(
        total_ram=gib * GIB, available_ram=gib * GIB, physical_cores=1, logical_cores=1,
        disk_free=None, gpu_offload=False,
    )  # fmt: skip
    (expected,) = [r for r in model_rows(load_catalog(), data_dir / "models", hw) if r.recommended]
    assert pick["id"] == expected.entry.id
    assert pick["badge"] == "fits" and pick["memory"] == expected.memory
    # Nothing of better quality that may be recommended fits; nothing that fits is skipped.
    budget = gib * GIB - max(2 * GIB, gib * GIB // 5)
    assert pick["memory"] <= budget
    by_id = {e.id: e for e in load_catalog()}
    better = [
        m for m in listed["models"]
        if by_id[m["id"]].quality_rank > by_id[pick["id"]].quality_rank
        and by_id[m["id"]].recommendable
    ]  # fmt: skip
    assert all(m["badge"] != "fits" for m in better)
    if gib == 8:  # a 9B model at 4-bit K-quants does not fit next to the OS on 8 GB
        assert by_id[pick["id"]].quality_rank < by_id["qwen3.5-9b-q4_k_m"].quality_rank
    if gib >= 24:
        assert pick["id"].startswith("qwen3.5-9b-")


def test_models_estimates_speeds_and_says_where_each_would_run(
    data_dir: Path, env: dict[str, str]
) -> None:
    listed = models_json(data_dir, env=env)  # this machine: its memory speed is measured
    machine = listed["machine"]
    assert machine["ram_bandwidth"] > 0 and (data_dir / "bandwidth.json").is_file()
    assert machine["gpu"] is None and machine["gpu_offload"] is False  # this CPU build
    for m in listed["models"]:
        assert isinstance(m["tokens_per_s"], float) and m["tokens_per_s"] > 0
        assert m["gpu_memory"] is None and m["gpu_layers"] is None and m["offload_badge"] is None
        assert m["ram_memory"] == m["memory"]  # no GPU: all of it in RAM
    (pick,) = [m for m in listed["models"] if m["recommended"]]
    assert pick["reason"].startswith(f"{pick['name']} {pick['quantization']}: about ")
    assert all(m["reason"] is None for m in listed["models"] if not m["recommended"])
    # Measured once: the next listing reads the same figure back.
    again = models_json(data_dir, env=env)["machine"]["ram_bandwidth"]
    assert again == machine["ram_bandwidth"]
    # Another computer's memory: no speed is known for it, the pick is by memory.
    other = models_json(data_dir, "--assume-ram", "16GB", env=env)
    assert other["machine"]["ram_bandwidth"] is None
    assert all(m["tokens_per_s"] is None and m["reason"] is None for m in other["models"])
    table = hearth(data_dir, "models", env=env)
    assert table.returncode == 0, table.stderr
    assert "SPEED" in table.stdout and " tok/s" in table.stdout
    assert f"* {pick['reason']}" in table.stdout


def test_models_lists_installed_imported_and_hf_cached(
    data_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    mine = tmp_path / "my-model.gguf"
    mine.write_bytes((data_dir / "models" / STARTER).read_bytes())
    imported = hearth(data_dir, "import", str(mine), env=env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == str(data_dir.resolve() / "models" / "my-model.gguf")

    # Qwen3.5-0.8B Q4_K_M sits in the HF cache (the catalog has no hash for it yet, so the
    # same repo's file of that name is what counts).
    entry = next(e for e in load_catalog() if e.id == "qwen3.5-0.8b-q4_k_m")
    assert entry.repo is not None
    cache = Path(env["HF_HUB_CACHE"]) / ("models--" + entry.repo.replace("/", "--"))
    data = b"GGUF stand-in"
    sha = hashlib.sha256(data).hexdigest()
    (cache / "blobs").mkdir(parents=True)
    (cache / "blobs" / sha).write_bytes(data)
    (cache / "snapshots" / ("c" * 40)).mkdir(parents=True)
    (cache / "snapshots" / ("c" * 40) / entry.filename).symlink_to(f"../../blobs/{sha}")

    listed = models_json(data_dir, env=env)
    rows = {m["id"]: m for m in listed["models"]}
    starter = rows[load_catalog()[0].id]
    assert starter["installed"] and starter["path"].endswith(STARTER)
    assert rows[entry.id]["hf_cache_path"].endswith(entry.filename)
    assert not rows[entry.id]["installed"]
    (other,) = listed["other_models"]
    assert other["path"].endswith("my-model.gguf") and other["quantization"] == "Q4_1"
    assert other["verified"]

    table = hearth(data_dir, "models", env=env)
    assert table.returncode == 0, table.stderr
    assert "installed" in table.stdout and "in HF cache" in table.stdout
    assert "my-model.gguf" in table.stdout and "* = recommended" in table.stdout

    removed = hearth(data_dir, "rm", "my-model.gguf", env=env)
    assert removed.returncode == 0, removed.stderr
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == [STARTER, STARTER + ".sha256"]


def test_importing_a_bad_file_is_one_sentence(
    data_dir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    result = hearth(data_dir, "import", str(bad), env=env)
    assert result.returncode == 1
    assert result.stderr == (
        "hearth: notes.gguf is not a GGUF model file: Hearth runs .gguf files, such as the "
        "ones on Hugging Face marked GGUF.\n"
    )


# -- hearth pull -----------------------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path: Path, payload: bytes, projector_payload: bytes) -> Path:
    """Hearth's catalog with the Q4_K_M entry and its family's vision file pinned to the
    served files, as ``maint.catalog_refresh`` would leave them."""
    raw = json.loads((resources_dir() / "catalog.json").read_text())
    (entry,) = [m for m in raw["models"] if m["id"] == ID]
    entry.update(
        size=len(payload), size_source="test", sha256=hashlib.sha256(payload).hexdigest(),
        verified=True,
    )  # fmt: skip
    raw["families"]["qwen3.5-9b"]["vision"].update(
        size=len(projector_payload), size_source="test", verified=True,
        sha256=hashlib.sha256(projector_payload).hexdigest(),
    )  # fmt: skip
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(raw))
    return path


def pull_env(env: dict[str, str], hub: HubServer) -> dict[str, str]:
    return {**env, "HF_ENDPOINT": hub.endpoint, "PYTHONUNBUFFERED": "1"}


def part_of(data_dir: Path) -> list[Path]:
    return list((data_dir / "models" / ".downloads").glob(f"{FILE}.*.incomplete"))


def test_pull_survives_a_dropped_connection(
    data_dir: Path, env: dict[str, str], hub: HubServer, catalog: Path, payload: bytes,
    projector_payload: bytes,
) -> None:  # fmt: skip
    hub.drop_after(2 * CHUNK + 1000)  # the server cuts the connection mid-file
    result = hearth(data_dir, "pull", ID, "--catalog", str(catalog), env=pull_env(env, hub))
    assert result.returncode == 0, result.stderr
    target = data_dir / "models" / FILE
    assert result.stdout.strip() == str(target.resolve())  # the model's path only
    assert target.read_bytes() == payload
    assert "100% [########################]" in result.stderr
    # Its vision file came with it, under a name of its own (every repo calls it the same).
    assert (data_dir / "models" / PROJECTOR_LOCAL).read_bytes() == projector_payload
    assert "its vision file, Qwen3.5-9B-mmproj-F16.gguf" in result.stderr
    # The second request resumed from what was on disk, not from zero.
    sha = hashlib.sha256(payload).hexdigest()  # (the CDN serves the model under its hash)
    starts = [r.range_start for r in hub.gets(FILE) if r.path.endswith(FILE) or sha in r.path]
    assert starts[0] is None and starts[-1] is not None and starts[-1] >= 2 * CHUNK
    listed = models_json(data_dir, "--catalog", str(catalog), env=env)
    row = next(m for m in listed["models"] if m["id"] == ID)
    assert row["installed"]
    assert row["revision"] == hub.commit(REPO)  # the commit its bytes were checked against

    again = hearth(data_dir, "pull", ID, "--catalog", str(catalog), env=pull_env(env, hub))
    assert again.returncode == 0 and "already installed" in again.stderr


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_pull_killed_then_server_restarted_resumes(
    data_dir: Path, env: dict[str, str], hub: HubServer, catalog: Path, payload: bytes,
    how: signal.Signals,
) -> None:  # fmt: skip
    hub.rate = 2_000_000  # bytes/s: slow enough to stop it mid-file
    proc = subprocess.Popen(
        hearth_cmd("--data-dir", str(data_dir), "pull", ID, "--catalog", str(catalog)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=pull_env(env, hub),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (parts := part_of(data_dir)) or parts[0].stat().st_size < 2 * CHUNK:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the download wrote nothing"
            time.sleep(0.02)
        proc.send_signal(how)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    (part,) = part_of(data_dir)
    kept = part.stat().st_size
    assert 2 * CHUNK <= kept < SIZE
    assert not (data_dir / "models" / FILE).exists()
    if how is signal.SIGINT:
        assert proc.returncode == 130, err
        assert err.rstrip().endswith(
            f"hearth: stopped. The part downloaded so far is kept: run `hearth pull {ID}` again "
            "to resume."
        )
        assert "Traceback" not in err

    hub.restart()  # the server goes away and comes back between the attempts
    hub.rate = None
    hub.requests.clear()
    result = hearth(data_dir, "pull", ID, "--catalog", str(catalog), env=pull_env(env, hub))
    assert result.returncode == 0, result.stderr
    assert (data_dir / "models" / FILE).read_bytes() == payload
    assert f"resuming {FILE} at" in result.stderr
    sha = hashlib.sha256(payload).hexdigest()  # (the CDN serves the model under its hash)
    assert [r.range_start for r in hub.gets(FILE) if sha in r.path] == [kept]
    assert part_of(data_dir) == []


def test_pull_rejects_a_flipped_byte(
    data_dir: Path, env: dict[str, str], hub: HubServer, catalog: Path
) -> None:
    hub.flip_byte(SIZE // 2)
    result = hearth(data_dir, "pull", ID, "--catalog", str(catalog), env=pull_env(env, hub))
    assert result.returncode == 7
    assert result.stderr.rstrip().endswith(
        f"hearth: {FILE} arrived damaged (its checksum does not match) and was deleted. "
        "Download it again."
    )
    assert not (data_dir / "models" / FILE).exists() and part_of(data_dir) == []


@pytest.mark.parametrize(
    ("status", "code", "exit_code", "sentence"),
    [
        (401, "GatedRepo", 3, f"hearth: {REPO} is gated on Hugging Face: accept its terms"),
        (404, "EntryNotFound", 4, f"hearth: {FILE} is no longer on Hugging Face"),
    ],
)
def test_pull_refusals_are_exit_codes_and_sentences(
    data_dir: Path, env: dict[str, str], hub: HubServer, catalog: Path, status: int,
    code: str, exit_code: int, sentence: str,
) -> None:  # fmt: skip
    hub.fail(status, error_code=code, path=FILE, times=99)
    result = hearth(data_dir, "pull", ID, "--catalog", str(catalog), env=pull_env(env, hub))
    assert result.returncode == exit_code, result.stderr
    last = result.stderr.rstrip().split("\n")[-1]
    assert last.startswith(sentence) and "Traceback" not in result.stderr


def test_pull_a_gated_model_with_hf_token(
    data_dir: Path, env: dict[str, str], hub: HubServer, catalog: Path, payload: bytes
) -> None:
    """No keyring (the null backend): HF_TOKEN is how a gated model is fetched, and
    what to set is said when it is missing or wrong. The token is never printed."""
    token = "hf_GatedTokenNotReal0123456789"
    hub.gate(REPO, token)
    pull = ("pull", ID, "--catalog", str(catalog))

    missing = hearth(data_dir, *pull, env=pull_env(env, hub))
    assert missing.returncode == 3, missing.stderr
    assert missing.stderr.rstrip().split("\n")[-1] == (
        f"hearth: {REPO} is gated on Hugging Face: accept its terms on huggingface.co, then add "
        "your Hugging Face token in Settings. On the command line, set HF_TOKEN instead: "
        f"HF_TOKEN=hf_… hearth pull {ID}."
    )
    wrong = hearth(data_dir, *pull, env={**pull_env(env, hub), "HF_TOKEN": "hf_WrongNotReal"})
    assert wrong.returncode == 3, wrong.stderr
    assert wrong.stderr.rstrip().endswith(
        "The token came from HF_TOKEN: check that it is right and has access."
    )
    assert "hf_WrongNotReal" not in wrong.stderr + wrong.stdout

    right = hearth(data_dir, *pull, env={**pull_env(env, hub), "HF_TOKEN": token})
    assert right.returncode == 0, right.stderr
    assert (data_dir / "models" / FILE).read_bytes() == payload
    assert token not in right.stderr + right.stdout
    log = "".join(p.read_text() for p in data_dir.rglob("*.log*") if p.is_file())
    assert token not in log


def test_pull_an_unknown_model(data_dir: Path, env: dict[str, str]) -> None:
    result = hearth(data_dir, "pull", "no-such-model", env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "hearth: Hearth's catalog has no model 'no-such-model': `hearth models` lists them.\n"
    )


def test_pull_uses_the_hf_cache_without_connecting(
    data_dir: Path, env: dict[str, str], hub: HubServer, catalog: Path, payload: bytes
) -> None:
    cache = Path(env["HF_HUB_CACHE"]) / ("models--" + REPO.replace("/", "--"))
    sha = hashlib.sha256(payload).hexdigest()
    (cache / "blobs").mkdir(parents=True)
    (cache / "blobs" / sha).write_bytes(payload)
    (cache / "snapshots" / ("d" * 40)).mkdir(parents=True)
    (cache / "snapshots" / ("d" * 40) / FILE).symlink_to(f"../../blobs/{sha}")
    result = hearth(
        data_dir, "pull", ID, "--no-vision", "--catalog", str(catalog), env=pull_env(env, hub)
    )
    assert result.returncode == 0, result.stderr
    assert "using the copy in the Hugging Face cache" in result.stderr
    assert hub.requests == []
    assert (data_dir / "models" / FILE).read_bytes() == payload


def test_pull_offline_is_a_sentence_after_retries(
    data_dir: Path, env: dict[str, str], catalog: Path
) -> None:
    with HubServer() as gone:
        endpoint = gone.endpoint  # nobody listens there once it stops
    result = hearth(
        data_dir, "pull", ID, "--catalog", str(catalog), env={**env, "HF_ENDPOINT": endpoint}
    )  # retries with backoff first (1 + 2 + 4 + 8 s): Download's own policy
    assert result.returncode == 5, result.stderr
    assert result.stderr.rstrip().split("\n")[-1] == (
        "hearth: Hearth could not reach Hugging Face: check your internet connection and try "
        "again. The part downloaded so far is kept; the download resumes from there."
    )
    assert "retrying (attempt 2)" in result.stderr
