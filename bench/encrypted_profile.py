"""Where the encrypted store's extra time goes (issue 17): the same history read three
ways, interleaved in one run, so the SQLite build, the adapter and the cipher each show:

- plain/stdlib: the stdlib ``sqlite3`` on the plain file (what a plain history uses),
- plain/apsw: ``engine.history.cipher.Connection`` on the plain file, no key: the other
  SQLite build (3.54, sqlite3mc) and the Python adapter, without decryption,
- encrypted/apsw: the same adapter on the encrypted copy: adds the cipher.

For each: the store_scale searches (``engine.history.search.search``, p50 wall and
CPU), and the list of the first 200 chats, on connections opened once (warm cache) and
afresh each time (cold cache). Prints; never fails.

    .venv/bin/python bench/encrypted_profile.py [--messages 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from store_scale import generate, queries, vocabulary  # noqa: E402

from engine.history import cipher, migrate  # noqa: E402
from engine.history.search import search  # noqa: E402

KEY = bytes(range(32))
LIST = (
    "SELECT id, title, created_at, updated_at, pinned, title_is_auto, deleted_at "
    "FROM conversations WHERE deleted_at IS NULL ORDER BY pinned DESC, updated_at DESC LIMIT 200"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=2_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "hearth-prof")
    args = parser.parse_args()
    args.db.mkdir(parents=True, exist_ok=True)
    plain = args.db / f"plain-{args.messages}.sqlite3"
    enc = args.db / f"encrypted-{args.messages}.sqlite3"
    if plain.exists() and enc.exists():
        vocab = vocabulary(random.Random(1), 30_000)
    else:
        for p in args.db.glob("*"):
            p.unlink()
        vocab = generate(plain, args.conversations, args.messages)["vocab"]  # type: ignore[assignment]
        import shutil

        shutil.copyfile(plain, enc)
        migrate.convert(enc, migrate.Op.ENCRYPT, old_key=None, new_key=KEY)
    ways: dict[str, Callable[[], cipher.Database]] = {
        "plain/stdlib": lambda: sqlite3.connect(plain, isolation_level=None),
        "plain/apsw": lambda: cipher.connect(plain, None),
        "encrypted/apsw": lambda: cipher.connect(enc, KEY),
    }
    qs = list(queries(vocab).values())
    wall: dict[str, list[float]] = {k: [] for k in ways}
    cpu: dict[str, list[float]] = {k: [] for k in ways}
    cold: dict[str, list[float]] = {k: [] for k in ways}
    listing: dict[str, list[float]] = {k: [] for k in ways}
    warm = {k: f() for k, f in ways.items()}
    for run in range(args.runs + 1):
        names = list(ways) if run % 2 == 0 else list(ways)[::-1]
        for name in names:
            db = warm[name]
            for q in qs:
                s, c = time.perf_counter(), time.thread_time()
                search(db, q, 50)
                if run:
                    wall[name].append((time.perf_counter() - s) * 1000)
                    cpu[name].append((time.thread_time() - c) * 1000)
            s = time.perf_counter()
            fresh = ways[name]()
            fresh.execute(LIST).fetchall()
            for q in qs:
                search(fresh, q, 50)
            fresh.close()
            if run:
                cold[name].append((time.perf_counter() - s) * 1000)
            s = time.perf_counter()
            db.execute(LIST).fetchall()
            if run:
                listing[name].append((time.perf_counter() - s) * 1000)
    size = plain.stat().st_size / 1e6
    print(f"{args.messages} messages, {size:.0f} MB; ms, p50 of {args.runs} runs")
    heads = ("search wall", "search cpu", "list 200", "cold: open+list+searches")
    print(f"{'':16} " + " ".join(f"{h:>14}" for h in heads))
    base = next(iter(ways))
    for name in ways:
        row = [statistics.median(x[name]) for x in (wall, cpu, listing, cold)]
        ref = [statistics.median(x[base]) for x in (wall, cpu, listing, cold)]
        print(
            f"{name:16} "
            + " ".join(f"{v:7.2f}({v / r:4.2f}x)" for v, r in zip(row, ref, strict=True))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
