"""The real window's start with an encrypted history against the plain one (issue 17):
fresh processes, interleaved, the same 500,000-message history (the files
``bench/encrypted_store.py`` made, copied into two data folders).

The key of the encrypted one is in a keyring (``tests/fakes/file_keyring.py``, a real
keyring backend in a file: this machine has no Secret Service), so it unlocks by
itself as it does for a person whose key is in the system keyring; what is timed is
``bench/store_scale.py``'s window harness: ``ready_ms`` (the first event-loop turn after
show) and ``painted_ms`` (the chat pane's first paint). No model file: both windows
start without one. Prints; never fails.

    .venv/bin/python bench/encrypted_store.py --runs 5      # makes the files first
    .venv/bin/python bench/encrypted_window.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from encrypted_store import KEY  # noqa: E402
from store_scale import window_ready_ms  # noqa: E402

from app.paths import resolve_paths  # noqa: E402
from engine.crypto import keys  # noqa: E402
from tests.fakes.file_keyring import ENV, FileKeyring  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "hearth-enc")
    args = parser.parse_args()
    sources = {
        "plain": args.db / f"plain-{args.messages}.sqlite3",
        "encrypted": args.db / f"encrypted-{args.messages}.sqlite3",
    }
    ring = args.db / "keyring.json"
    os.environ[ENV] = str(ring)
    os.environ["PYTHON_KEYRING_BACKEND"] = "tests.fakes.file_keyring.FileKeyring"
    folders = {}
    for name, source in sources.items():
        data = args.db / f"window-{name}"
        db = resolve_paths(data).ensure().db_path
        if not db.exists():
            shutil.copyfile(source, db)
        folders[name] = data
    enc_db = resolve_paths(folders["encrypted"]).db_path
    keys.write_keyfile(keys.keyfile_path(enc_db), keys.in_keyring(KEY))
    FileKeyring(ring).set_password(keys.SERVICE, keys.key_id(KEY), KEY.hex())
    got: dict[str, dict[str, list[float]]] = {"plain": {}, "encrypted": {}}
    rows = {}
    for run in range(args.runs + 1):  # run 0 warms up
        order = list(folders.items())
        for name, data in order if run % 2 == 0 else order[::-1]:
            one = window_ready_ms(data)
            rows[name] = int(one["rows"])
            for k in ("ready_ms", "painted_ms") if run else ():
                got[name].setdefault(k, []).append(one[k])
    print(f"window, ms from start, median of {args.runs} fresh processes each")
    for k in ("ready_ms", "painted_ms"):
        enc, plain = got["encrypted"][k], got["plain"][k]
        pairs = statistics.median(a / b for a, b in zip(enc, plain, strict=True))
        e50, p50 = statistics.median(enc), statistics.median(plain)
        print(
            f"  {k:12} encrypted {e50:6.0f}  plain {p50:6.0f}  {e50 / p50:5.2f}x"
            f" (median per-run ratio {pairs:.2f}x)"
        )
    print(f"  rows listed: encrypted {rows['encrypted']}, plain {rows['plain']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
