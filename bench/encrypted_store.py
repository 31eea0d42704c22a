"""The encrypted chat store against the plain one, same history, same run (issue 17).

Generates a plain history with ``bench/store_scale.py``'s generator, encrypts a copy
with the real migration (``engine.history.migrate.convert``: VACUUM INTO, checks,
rename; timed), then measures both files interleaved (plain, encrypted, encrypted,
plain, ...) and prints medians and ratios:

- start: opening the store (``ChatStore(path[, key])``) and listing the first 200 chats,
- search: store_scale's queries (newest first), p50 and max over all of them,
- a streaming save: a reply saved as it streams (``ReplyRecorder``, 40 saves of a
  growing reply, then its final save, which indexes it), per save.

Goals (the issue): search and start <= 1.2x plain; migration of the 500,000-message
history <= 2 minutes. Prints; never fails.

    .venv/bin/python bench/encrypted_store.py [--messages 500000] [--runs 9]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from store_scale import generate, queries, vocabulary  # noqa: E402

from engine.history import migrate  # noqa: E402
from engine.history.recorder import ReplyRecorder  # noqa: E402
from engine.history.store import ChatStore, MessageStatus  # noqa: E402

KEY = bytes(range(32))


def one_run(path: Path, key: bytes | None, vocab: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    store = ChatStore(path, key=key)
    opened = time.perf_counter()
    store.list_conversations(limit=200)
    listed = time.perf_counter()
    out["start: open"] = [(opened - t0) * 1000]
    out["start: open + first 200 chats"] = [(listed - t0) * 1000]
    try:
        for q in queries(vocab).values():
            s, c = time.perf_counter(), time.thread_time()
            store.search(q, 50)
            out.setdefault("search", []).append((time.perf_counter() - s) * 1000)
            # CPU time of this thread: what the work costs, without waiting for a core
            # on a shared machine.
            out.setdefault("search (cpu)", []).append((time.thread_time() - c) * 1000)
        conv = store.create_conversation("bench")
        store.add_message(conv.id, "user", "A question " + " ".join(vocab[:30]))
        reply = store.add_message(conv.id, "assistant", "", MessageStatus.STREAMING)
        rec = ReplyRecorder(store, reply.id, interval=0.0)  # every append saves
        for i in range(40):
            s = time.perf_counter()
            rec.append(" ".join(vocab[i * 10 : i * 10 + 10]) + " ")
            out.setdefault("streaming save", []).append((time.perf_counter() - s) * 1000)
        s = time.perf_counter()
        rec.finish(MessageStatus.COMPLETE)
        out["final save (indexed)"] = [(time.perf_counter() - s) * 1000]
        store.purge_deleted()
        store.delete_conversation(conv.id)
        store.purge_deleted()
    finally:
        store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "hearth-enc")
    parser.add_argument("--reuse", action="store_true", help="the files of an earlier run")
    args = parser.parse_args()
    args.db.mkdir(parents=True, exist_ok=True)
    plain = args.db / f"plain-{args.messages}.sqlite3"
    enc = args.db / f"encrypted-{args.messages}.sqlite3"
    if args.reuse and plain.exists() and enc.exists():
        vocab = vocabulary(random.Random(1), 30_000)  # generate()'s first draw
    else:
        for p in args.db.glob("*"):
            p.unlink()
        facts = generate(plain, args.conversations, args.messages)
        vocab = facts["vocab"]  # type: ignore[assignment]
        shutil.copyfile(plain, enc)
        seen: list[float] = []
        done = migrate.convert(enc, migrate.Op.ENCRYPT, old_key=None, new_key=KEY,
                               progress=seen.append)  # fmt: skip
        print(
            f"migration (encrypt: copy, integrity_check, counts, searches, rename): "
            f"{done.seconds:.1f} s, {len(seen)} progress reports; goal <= 120 s"
        )
    size = plain.stat().st_size
    print(f"history: {args.conversations} chats, {args.messages} messages, {size / 1e6:.0f} MB")
    samples: dict[str, dict[str, list[float]]] = {"plain": {}, "encrypted": {}}
    for run in range(args.runs + 1):  # run 0 warms the OS page cache
        order = [("plain", plain, None), ("encrypted", enc, KEY)]
        for name, path, key in order if run % 2 == 0 else order[::-1]:
            result = one_run(path, key, vocab)
            if run:
                for k, v in result.items():
                    samples[name].setdefault(k, []).extend(v)
    print(f"\nmilliseconds over {args.runs} interleaved runs: p50 (max)")
    print(f"{'measurement':32} {'plain':>18} {'encrypted':>18} {'ratio p50':>10}")
    for key, values in samples["plain"].items():
        e = samples["encrypted"][key]
        p50, e50 = statistics.median(values), statistics.median(e)
        print(
            f"{key:32} {p50:9.2f} ({max(values):6.2f}) {e50:9.2f} ({max(e):6.2f}) "
            f"{e50 / p50 if p50 else float('nan'):10.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
