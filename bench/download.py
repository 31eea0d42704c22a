"""Download throughput: Hearth's ``engine.models.download.Download`` vs a plain HTTP GET.

The same file (random bytes, ``--size-mb``) is served by tests/hubserver.py (the Hub
protocol: HEAD with size and sha256, a redirect to a second "CDN" port, Range) running in
a separate process, so the server does not share this process' GIL. Two clients, runs
interleaved, each into a fresh folder on the same disk:

- ``plain GET``: ``http.client`` straight to the CDN URL, 1 MiB reads written to a file;
  no hashing, no fsync: the least any Python client can do here;
- ``httpx GET``: the same through httpx2, the HTTP client huggingface_hub uses (64 KiB
  reads, as received): what Hearth's own work (hashing, progress, resume, fsync) is
  measured against;
- ``hearth``: ``Download(...).run()``: metadata HEAD, redirect, GET through
  huggingface_hub's ``http_get``, sha256 while writing, fsync, rename, sha256 record.

Prints each run, the medians and the ratios (goal: hearth >= 0.9x httpx GET). The machine is
shared, so runs are interleaved and medians reported.

    .venv/bin/python bench/download.py [--size-mb 256] [--runs 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.models.catalog import catalog_entry  # noqa: E402
from engine.models.download import Download  # noqa: E402

HUB_REPO = "unsloth/Qwen3.5-9B-GGUF"
FILE = "Qwen3.5-9B-Q4_K_M.gguf"
ENTRY_ID = "qwen3.5-9b-q4_k_m"
_READ = 1 << 20

# The server process: publish SIZE random bytes, print "endpoint cdn sha256", serve until
# stdin closes.
SERVER = """
import hashlib, os, sys
sys.path.insert(0, {repo!r})
from tests.hubserver import HubServer
data = os.urandom({size})
hub = HubServer().start()
commit, sha = hub.add_file({hub_repo!r}, {file!r}, data)
print(hub.endpoint, hub.cdn_endpoint, sha, flush=True)
sys.stdin.read()
hub.stop()
"""


def plain_get(url: str, target: Path) -> int:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
    response = conn.getresponse()
    assert response.status == 200, response.status
    n = 0
    with target.open("wb") as f:
        while block := response.read(_READ):
            f.write(block)
            n += len(block)
    conn.close()
    return n


def httpx_get(url: str, target: Path) -> int:
    """The same GET through httpx2, the HTTP client huggingface_hub uses, as it arrives."""
    import httpx2

    n = 0
    with (
        httpx2.Client() as client,
        client.stream("GET", url) as response,
        target.open("wb") as f,
    ):
        assert response.status_code == 200, response.status_code
        for block in response.iter_bytes():
            f.write(block)
            n += len(block)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one Hearth run")
    parser.add_argument(
        "--dir", type=Path, help="download into this folder (default: the temp folder's disk; "
        "/dev/shm takes the disk out of the figures)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    size = args.size_mb << 20

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(repo=str(REPO), size=size, hub_repo=HUB_REPO,
                                             file=FILE)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    endpoint, cdn, sha = server.stdout.readline().split()
    entry = replace(catalog_entry(ENTRY_ID), size=size, sha256=sha, size_estimated=False)
    cdn_url = f"{cdn}/{HUB_REPO}/{sha}?sig=x"
    work = Path(tempfile.mkdtemp(prefix="hearth-bench-download-", dir=args.dir))
    results: dict[str, list[float]] = {"plain GET": [], "httpx GET": [], "hearth": []}
    try:
        print(
            f"file: {args.size_mb} MiB into {work.parent}, {args.runs} runs each, interleaved; "
            "MB = 10^6 bytes"
        )
        for run in range(args.runs + 1):  # run 0 warms up (page cache, imports)
            for name, figures in results.items():
                folder = work / f"{name.split()[0]}-{run}"
                folder.mkdir()
                start = time.perf_counter()
                if name == "hearth":
                    path = Download(entry, folder, endpoint=endpoint).run()
                    assert path.stat().st_size == size
                elif name == "httpx GET":
                    assert httpx_get(cdn_url, folder / FILE) == size
                else:
                    assert plain_get(cdn_url, folder / FILE) == size
                elapsed = time.perf_counter() - start
                shutil.rmtree(folder)
                if run:
                    figures.append(size / elapsed / 1e6)
                    print(f"  run {run}  {name:10s} {size / elapsed / 1e6:8.0f} MB/s")
        medians = {name: statistics.median(figures) for name, figures in results.items()}
        for name, figures in results.items():
            print(f"{name:10s}  median {medians[name]:6.0f} MB/s  (best {max(figures):.0f})")
        h = medians["hearth"]
        print(f"ratio hearth/plain GET {h / medians['plain GET']:.2f}x")
        print(f"ratio hearth/httpx GET {h / medians['httpx GET']:.2f}x (goal >= 0.9x)")
        if args.profile:
            folder = work / "profile"
            folder.mkdir()
            profiler = cProfile.Profile()
            profiler.enable()
            Download(entry, folder, endpoint=endpoint).run()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
