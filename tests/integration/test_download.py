"""Model downloads against a Hub-protocol server on 127.0.0.1 (tests/hubserver.py).

The real Hugging Face Hub cannot be reached here; everything else is real:
huggingface_hub's HTTP client, sockets, files, sha256, a killed process.
Only a full disk is faked (``shutil.disk_usage``), since one cannot be made here.
A mirror that lies (altered bytes, altered metadata) is the loopback server told to lie.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import namedtuple
from dataclasses import replace
from pathlib import Path

import filelock
import pytest

from engine.errors import DownloadError, KnownError
from engine.models.catalog import (
    CatalogEntry,
    catalog_entry,
    installed_path,
    remember_verified,
    sha256_file,
    sidecar_path,
    verified_record,
    verified_revision,
)
from engine.models.download import Download, DownloadCancelled, RetryPolicy, partial_path
from engine.models.download_errors import ChecksumMismatchError, TamperedFileError
from engine.models.types import DownloadProgress, DownloadState
from tests.hubserver import HubServer
from tests.integration.conftest import CHUNK, FILE, REPO, SIZE

FAST = RetryPolicy(attempts=3, first_delay_s=0.01)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def entry(payload: bytes) -> CatalogEntry:
    """The catalog's Q4_K_M entry, as the refresh script would leave it for this file."""
    import hashlib

    return replace(
        catalog_entry("qwen3.5-9b-q4_k_m"),
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        size_estimated=False,
    )


def run(entry: CatalogEntry, folder: Path, hub: HubServer, **kwargs: object) -> Path:
    kwargs.setdefault("retry", FAST)
    return Download(entry, folder, endpoint=hub.endpoint, **kwargs).run()  # type: ignore[arg-type]


def file_gets(hub: HubServer) -> list[int | None]:
    """Range start of every GET of the file's bytes (None: no Range), oldest first."""
    return [r.range_start for r in hub.gets(FILE)]


def test_downloads_verifies_and_installs(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    reports: list[DownloadProgress] = []
    download = Download(
        entry, tmp_path, endpoint=hub.endpoint, on_progress=reports.append,
        progress_interval_s=0, retry=FAST,
    )  # fmt: skip
    path = download.run()
    assert path == tmp_path / FILE
    assert path.read_bytes() == payload
    assert installed_path(entry, tmp_path) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads", FILE, FILE + ".sha256"]
    assert list((tmp_path / ".downloads").iterdir()) == []  # no part, no lock left
    states = [r.state for r in reports]
    assert states[0] is DownloadState.CONNECTING
    assert states[-2:] == [DownloadState.VERIFYING, DownloadState.DONE]
    done = [r.done for r in reports if r.state is DownloadState.DOWNLOADING]
    assert done == sorted(done) and done[-1] == SIZE
    assert all(r.total == SIZE for r in reports[1:])
    # The metadata HEAD names the commit; the repository's record of the file at that commit
    # (the API) says what the bytes must hash to; the token-less GET went to the "CDN" the
    # Hub redirected to, not to the Hub.
    commit = hub.commit(REPO)
    assert [(r.server, r.method, r.path.split("?")[0]) for r in hub.requests] == [
        ("hub", "HEAD", f"/{REPO}/resolve/main/{FILE}"),
        ("hub", "POST", f"/api/models/{REPO}/paths-info/{commit}"),
        ("cdn", "GET", f"/{REPO}/{entry.sha256}"),
    ]
    # The record pins the commit the file was verified at.
    assert download.revision == commit
    assert verified_revision(path) == commit
    record = json.loads(sidecar_path(path).read_text())
    assert (record["sha256"], record["revision"]) == (entry.sha256, commit)


def test_an_installed_file_is_not_fetched_again(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry
) -> None:
    run(entry, tmp_path, hub)
    hub.requests.clear()
    reports: list[DownloadProgress] = []
    run(entry, tmp_path, hub, on_progress=reports.append)
    assert hub.requests == []
    assert [r.state for r in reports] == [DownloadState.DONE]


def test_resumes_after_a_dropped_connection(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    hub.drop_after(2 * CHUNK + 500_000)  # the server cuts the connection mid-body
    path = run(entry, tmp_path, hub)
    assert path.read_bytes() == payload
    # The second request asked for the rest, from the last byte received: every piece is
    # written as it arrives (no re-chunking), so nothing received is fetched twice.
    assert file_gets(hub) == [None, 2 * CHUNK + 500_000]


def test_cancel_keeps_the_part_and_a_restart_resumes_it(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    hub.rate = 4_000_000  # bytes/s: slow enough to cancel mid-file
    download: Download

    def cancel_after_two_mib(report: DownloadProgress) -> None:
        if report.done >= 2 * CHUNK:
            download.cancel()

    download = Download(
        entry, tmp_path, endpoint=hub.endpoint, on_progress=cancel_after_two_mib,
        progress_interval_s=0, retry=FAST,
    )  # fmt: skip
    with pytest.raises(DownloadCancelled):
        download.run()
    assert entry.sha256 is not None
    part = partial_path(tmp_path, FILE, entry.sha256)
    kept = part.stat().st_size
    assert kept >= 2 * CHUNK and kept < SIZE
    assert not (tmp_path / FILE).exists()

    hub.restart()  # the server goes away and comes back between the attempts
    hub.rate = None
    path = run(entry, tmp_path, hub)
    assert path.read_bytes() == payload
    assert file_gets(hub)[-1] == kept
    assert not part.exists()
    assert verified_revision(path) == hub.commit(REPO)


def test_resumes_after_the_process_is_killed(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    hub.rate = 2_000_000
    assert entry.sha256 is not None
    part = partial_path(tmp_path, FILE, entry.sha256)
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from dataclasses import replace
        from pathlib import Path
        from engine.models.download import Download
        from engine.models.catalog import catalog_entry
        entry = replace(catalog_entry("qwen3.5-9b-q4_k_m"), size={SIZE},
                        sha256={entry.sha256!r}, size_estimated=False)
        Download(entry, Path({str(tmp_path)!r}), endpoint={hub.endpoint!r}).run()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size >= 2 * CHUNK):
            assert proc.poll() is None, "the download process ended early"
            assert time.monotonic() < deadline, "the download process wrote nothing"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no goodbye: like a crash or a power cut
    finally:
        proc.wait(timeout=30)
    kept = part.stat().st_size
    assert 2 * CHUNK <= kept < SIZE

    hub.rate = None
    hub.requests.clear()
    path = run(entry, tmp_path, hub)
    assert path.read_bytes() == payload
    assert file_gets(hub) == [kept]


def test_a_server_that_ignores_range_gets_the_whole_file_again(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    assert entry.sha256 is not None
    part = partial_path(tmp_path, FILE, entry.sha256)
    part.parent.mkdir()
    part.write_bytes(payload[: 3 * CHUNK])
    hub.ignore_range()
    path = run(entry, tmp_path, hub)
    assert path.read_bytes() == payload
    assert sha256_file(path) == entry.sha256


def test_a_flipped_byte_is_rejected_and_deleted(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    hub.flip_byte(SIZE // 2)
    with pytest.raises(DownloadError) as info:
        run(entry, tmp_path, hub)
    assert str(info.value) == (
        f"{FILE} arrived damaged (its checksum does not match) and was deleted. Download it again."
    )
    assert not (tmp_path / FILE).exists()
    assert list((tmp_path / ".downloads").glob("*.incomplete")) == []
    assert installed_path(entry, tmp_path) is None
    assert run(entry, tmp_path, hub).read_bytes() == payload  # a clean second try works


def test_without_a_catalog_hash_the_hubs_lfs_hash_is_checked(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    unrefreshed = replace(entry, sha256=None, size=5_870_000_000, size_estimated=True)
    hub.flip_byte(10)
    with pytest.raises(DownloadError, match="arrived damaged"):
        run(unrefreshed, tmp_path, hub)
    path = run(unrefreshed, tmp_path, hub)
    assert path.read_bytes() == payload
    assert installed_path(unrefreshed, tmp_path) == path


def test_a_file_replaced_upstream_is_refused_before_downloading(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry
) -> None:
    with pytest.raises(DownloadError, match="replaced upstream"):
        run(replace(entry, sha256="0" * 64), tmp_path, hub)
    assert file_gets(hub) == []


def test_gated_repo_needs_the_token_and_the_token_stays_on_the_hub(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    hub.gate(REPO, "hf_right")
    with pytest.raises(DownloadError) as info:
        run(entry, tmp_path, hub)
    assert str(info.value) == (
        f"{REPO} is gated on Hugging Face: accept its terms on huggingface.co, then add your "
        "Hugging Face token in Settings."
    )
    with pytest.raises(DownloadError, match="is gated"):
        run(entry, tmp_path, hub, token="hf_wrong")  # 403
    assert run(entry, tmp_path, hub, token="hf_right").read_bytes() == payload
    heads = [r for r in hub.requests if r.server == "hub"]
    assert heads[-1].headers.get("authorization") == "Bearer hf_right"
    assert all("authorization" not in r.headers for r in hub.requests if r.server == "cdn")


@pytest.mark.parametrize(
    ("status", "code", "sentence"),
    [
        (404, "EntryNotFound", f"{FILE} is no longer on Hugging Face where Hearth's catalog says"),
        (404, "RevisionNotFound", f"{FILE} is no longer on Hugging Face"),
        (401, "RepoNotFound", f"Hugging Face did not let Hearth see {REPO}"),
        (403, None, f"Hugging Face refused to send {FILE} (403): add your Hugging Face token"),
        (500, None, "Hugging Face is not answering properly right now (error 500)."),
    ],
)
def test_http_errors_become_sentences(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, status: int, code: str | None,
    sentence: str,
) -> None:  # fmt: skip
    hub.fail(status, error_code=code, path=FILE, times=99)
    with pytest.raises(DownloadError) as info:
        run(entry, tmp_path, hub)
    assert str(info.value).startswith(sentence)
    assert isinstance(info.value, KnownError)
    assert file_gets(hub) == []


def test_transient_errors_are_retried_with_backoff(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    hub.fail(503, method="HEAD", times=1)
    hub.fail(500, method="GET", times=1)
    reports: list[DownloadProgress] = []
    path = run(entry, tmp_path, hub, on_progress=reports.append)
    assert path.read_bytes() == payload
    retries = [r for r in reports if r.state is DownloadState.RETRYING]
    assert [r.attempt for r in retries] == [1, 2]
    assert "error 503" in retries[0].note and "error 500" in retries[1].note


def test_offline_is_a_sentence(tmp_path: Path, entry: CatalogEntry) -> None:
    with HubServer() as gone:
        endpoint = gone.endpoint  # a port nobody listens on once it stops
    with pytest.raises(DownloadError) as info:
        Download(entry, tmp_path, endpoint=endpoint, retry=FAST).run()
    assert str(info.value).startswith(
        "Hearth could not reach Hugging Face: check your internet connection and try again."
    )


def test_not_enough_disk_is_checked_before_downloading(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**10, 10**10 - 10**6, 10**6))
    with pytest.raises(DownloadError) as info:
        run(entry, tmp_path, hub)
    assert str(info.value).startswith(f"Not enough free disk space to download {FILE}: it needs")
    assert file_gets(hub) == []


def test_a_second_download_of_the_same_file_is_refused(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry
) -> None:
    assert entry.sha256 is not None
    part = partial_path(tmp_path, FILE, entry.sha256)
    part.parent.mkdir()
    with filelock.FileLock(str(part) + ".lock"), pytest.raises(DownloadError) as info:
        run(entry, tmp_path, hub)
    assert str(info.value) == f"{FILE} is already being downloaded by another Hearth window."


def test_progress_reports_speed_and_eta_and_is_throttled(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry
) -> None:
    hub.rate = 8_000_000
    every: list[DownloadProgress] = []
    run(entry, tmp_path / "a", hub, on_progress=every.append, progress_interval_s=0)
    moving = [r for r in every if r.state is DownloadState.DOWNLOADING]
    assert any(r.speed > 0 and r.eta_s is not None for r in moving)
    assert moving[-1].eta_s == 0
    throttled: list[DownloadProgress] = []
    run(entry, tmp_path / "b", hub, on_progress=throttled.append, progress_interval_s=3600)
    # Within an hour only the state changes and the last byte are reported.
    assert [r.state for r in throttled] == [
        DownloadState.CONNECTING, DownloadState.DOWNLOADING,
        DownloadState.VERIFYING, DownloadState.DONE,
    ]  # fmt: skip
    assert throttled[1].done == SIZE


def test_catalog_refresh_pins_sizes_hashes_revisions_and_architecture(
    tmp_path: Path, hub: HubServer, payload: bytes
) -> None:
    """maint.catalog_refresh against the loopback Hub, then a download with what it wrote."""
    import gguf
    import numpy as np

    from engine.models.catalog import load_catalog, resources_dir
    from maint.catalog_refresh import main as refresh

    header = tmp_path / "q8.gguf"
    writer = gguf.GGUFWriter(str(header), "qwen35")
    for key, value in {"block_count": 32, "context_length": 262144, "embedding_length": 4096,
                       "feed_forward_length": 12288, "attention.head_count": 16,
                       "attention.head_count_kv": 4, "attention.key_length": 256,
                       "attention.value_length": 256, "full_attention_interval": 4,
                       "ssm.conv_kernel": 4, "ssm.inner_size": 4096, "ssm.state_size": 128,
                       "ssm.group_count": 16}.items():  # fmt: skip
        writer.add_uint32(f"qwen35.{key}", value)
    writer.add_token_list([f"t{i}" for i in range(300)])
    writer.add_tensor("token_embd.weight", np.zeros((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    commit, q8_sha = hub.add_file(
        REPO, "Qwen3.5-9B-Q8_0.gguf", header.read_bytes(), commit="c" * 40
    )

    catalog = tmp_path / "catalog.json"
    catalog.write_text((resources_dir() / "catalog.json").read_text())
    assert refresh(["--catalog", str(catalog), "--endpoint", hub.endpoint, "--arch"]) == 1
    entries = {e.id: e for e in load_catalog(catalog)}
    q4, q8 = entries["qwen3.5-9b-q4_k_m"], entries["qwen3.5-9b-q8_0"]
    assert (q4.revision, q4.size, q4.verified, q4.size_estimated) == (commit, SIZE, True, False)
    assert q8.sha256 == q8_sha and q8.size == header.stat().st_size
    missing = entries["qwen3.5-9b-q6_k"]  # not on this Hub: left as it was, and reported
    assert (missing.sha256, missing.verified, missing.revision) == (None, False, None)
    raw = json.loads(catalog.read_text())
    arch = raw["families"]["qwen3.5-9b"]["architecture"]
    assert arch["source"] == f"GGUF header of {REPO}/Qwen3.5-9B-Q8_0.gguf"  # Q4_K_M: no GGUF
    assert (arch["attention_layers"], arch["recurrent_layers"], arch["n_vocab"]) == (8, 24, 300)
    assert raw["families"]["qwen3.5-4b"]["architecture"]["estimated_fields"] == ["ssm", "n_merges"]

    path = run(q4, tmp_path / "models", hub)  # the pinned commit and hash are what is fetched
    assert path.read_bytes() == payload
    assert hub.gets(FILE) and any(f"/resolve/{commit}/" in r.path for r in hub.requests)


# -- the repository's word, not the response's -------------------------------------------------


def altered(payload: bytes) -> bytes:
    """The file with a stretch in the middle replaced: same name, same length, other bytes."""
    middle = len(payload) // 2
    return (
        payload[:middle]
        + bytes(b ^ 0x5A for b in payload[middle : middle + 4096])
        + (payload[middle + 4096 :])
    )


def assert_nothing_installed(folder: Path, entry: CatalogEntry) -> None:
    """No model file, no verified record, no part left: the folder holds at most the empty
    downloads folder."""
    assert not (folder / FILE).exists()
    assert not sidecar_path(folder / FILE).exists()
    assert installed_path(entry, folder) is None
    leftovers = sorted(p.relative_to(folder) for p in folder.rglob("*")) if folder.exists() else []
    assert leftovers in ([], [Path(".downloads")]), leftovers


# What a person is told to do when a server other than huggingface.co lies.
MIRROR_ADVICE = (
    "The server may be altering files: download from huggingface.co instead (remove the "
    "HF_ENDPOINT setting) and try again."
)


@pytest.mark.parametrize("pinned", [True, False], ids=["catalog-pin", "no-catalog-hash"])
def test_a_mirror_serving_altered_bytes_under_matching_headers_is_refused(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes, pinned: bool
) -> None:
    """The response is consistent with itself (its ETag and size are those of the altered
    bytes); only the repository's record of the file at the commit shows it is not the file."""
    if not pinned:  # the response's ETag alone used to be trusted here
        entry = replace(entry, sha256=None, size=5_870_000_000, size_estimated=True)
    hub.tamper(REPO, FILE, altered(payload))
    models = tmp_path / "models"
    with pytest.raises(TamperedFileError) as info:
        run(entry, models, hub)
    host = hub.endpoint.removeprefix("http://")
    assert str(info.value) == (
        f"{host} offered a {FILE} that is not the file {REPO} records at revision "
        f"{hub.commit(REPO)[:12]} (its checksum differs), so Hearth refused it and nothing was "
        f"installed. {MIRROR_ADVICE}"
    )
    assert isinstance(info.value, ChecksumMismatchError)  # `hearth pull` exits "damaged"
    assert file_gets(hub) == []  # refused before a byte of it was fetched
    assert_nothing_installed(models, entry)

    hub.tamper(REPO, FILE, altered(payload)[:-1000])  # other bytes, other length: the same
    with pytest.raises(TamperedFileError):
        run(entry, models, hub)
    assert_nothing_installed(models, entry)

    hub.tamper(REPO, FILE, None)  # the mirror serves the real file again
    assert run(entry, models, hub).read_bytes() == payload


@pytest.mark.parametrize("pinned", [True, False], ids=["catalog-pin", "no-catalog-hash"])
def test_altered_bytes_under_the_real_files_headers_are_deleted(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes, pinned: bool
) -> None:
    """A mirror that copies the real file's headers but sends other bytes: downloaded,
    checked against the repository's sha256, deleted."""
    if not pinned:
        entry = replace(entry, sha256=None, size=5_870_000_000, size_estimated=True)
    hub.tamper(REPO, FILE, altered(payload), headers=False)
    with pytest.raises(ChecksumMismatchError) as info:
        run(entry, tmp_path, hub)
    assert str(info.value) == (
        f"{FILE} arrived damaged (its checksum does not match) and was deleted. Download it again."
    )
    assert file_gets(hub) == [None]  # fetched once, whole
    assert_nothing_installed(tmp_path, entry)


@pytest.mark.parametrize("revision_pinned", [True, False], ids=["at-commit", "at-main"])
def test_metadata_that_disagrees_with_the_catalog_pin_is_refused(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes, revision_pinned: bool
) -> None:
    """The server's API records another sha256 than the catalog for the file (the bytes and
    the response's headers are the real file's): the catalog's pin wins, nothing is fetched."""
    if revision_pinned:
        entry = replace(entry, revision=hub.commit(REPO))
    hub.misreport(REPO, FILE, "e" * 64)
    with pytest.raises(DownloadError) as info:
        run(entry, tmp_path, hub)
    host = hub.endpoint.removeprefix("http://")
    if revision_pinned:  # a commit cannot change: the server is not telling the truth
        assert str(info.value) == (
            f"{host} records {FILE} at the revision Hearth's catalog pins with another "
            "checksum than the catalog, so it was not downloaded and nothing was installed. "
            f"{MIRROR_ADVICE} If that does not help, update Hearth."
        )
    else:
        assert str(info.value) == (
            f"{FILE} on Hugging Face is not the file Hearth's catalog lists (it was replaced "
            "upstream). Update Hearth to get the new catalog."
        )
    assert file_gets(hub) == []
    assert_nothing_installed(tmp_path, entry)


def test_without_a_catalog_hash_metadata_and_response_must_agree(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry
) -> None:
    """No pin: the API's record and the response's headers disagree, so neither is trusted."""
    unrefreshed = replace(entry, sha256=None, size=5_870_000_000, size_estimated=True)
    hub.misreport(REPO, FILE, "e" * 64)
    with pytest.raises(TamperedFileError, match="that is not the file"):
        run(unrefreshed, tmp_path, hub)
    assert file_gets(hub) == []
    assert_nothing_installed(tmp_path, unrefreshed)


def test_without_x_repo_commit_the_api_names_the_commit(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry, payload: bytes
) -> None:
    hub.commit_header = False  # some mirrors leave it out
    path = run(entry, tmp_path, hub)
    assert path.read_bytes() == payload
    commit = hub.commit(REPO)
    assert verified_revision(path) == commit
    api = [(r.method, r.path.split("?")[0]) for r in hub.requests if "/api/" in r.path]
    assert api == [
        ("GET", f"/api/models/{REPO}/revision/main"),
        ("POST", f"/api/models/{REPO}/paths-info/{commit}"),
    ]


def test_a_record_from_before_revisions_still_counts_and_a_rehash_keeps_the_revision(
    tmp_path: Path, hub: HubServer, entry: CatalogEntry
) -> None:
    assert entry.sha256 is not None
    path = run(entry, tmp_path, hub)
    commit = hub.commit(REPO)
    # A record as Hearth wrote it before it pinned revisions: still a verified install.
    st = path.stat()
    sidecar_path(path).write_text(
        json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": entry.sha256})
    )
    assert installed_path(entry, tmp_path) == path
    assert verified_revision(path) is None
    hub.requests.clear()
    assert run(entry, tmp_path, hub) == path and hub.requests == []  # not fetched again
    # Re-recorded without a revision (a re-hash after a touch): the same bytes keep theirs.
    remember_verified(path, entry.sha256, revision=commit)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert verified_record(path, sha256=entry.sha256) is None  # changed since: not trusted
    assert verified_revision(path) is None
    assert installed_path(entry, tmp_path) == path  # re-hashed, re-recorded
    assert verified_revision(path) == commit
