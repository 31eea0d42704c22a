"""How the chat store behaves with a large history: 10,000 chats, 500,000 messages.

Generates the history with the real schema (``ChatStore`` creates the file;
rows go in with executemany in one transaction, the FTS triggers included),
then measures, against an empty history on the same machine in the same run:

- opening the store (``ChatStore(path)``: migrations check, crash recovery, purge),
- loading the chat list (all rows, and the first page of 200),
- opening a 500-message chat (``messages(conv_id)``: the active path),
- full-text searches (several queries: p50 and max per query),
- ``check_integrity`` (quick and full) once, to decide whether open can afford it,
- with ``--window``: start-to-window-ready of the real window (``app.gui.HearthApp``,
  offscreen), empty vs large history, in fresh processes.

Runs are interleaved (large, empty, large, ...) and reported as medians: the
machine is shared. Prints ratios; it never fails.

    .venv/bin/python bench/store_scale.py [--window] [--runs 15] [--db DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.history.store import ChatStore  # noqa: E402

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["qu", "sh", "th", "ch"]
LONG_CHAT_MESSAGES = 500


def vocabulary(rng: random.Random, size: int) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def texts(rng: random.Random, vocab: list[str], count: int, words: tuple[int, int]) -> list[str]:
    """Zipf-distributed words (weight 1/rank), sentences of 8-20 words."""
    cum: list[float] = []
    total = 0.0
    for rank in range(len(vocab)):
        total += 1.0 / (rank + 1)
        cum.append(total)
    out = []
    for _ in range(count):
        n = rng.randint(*words)
        picked = rng.choices(vocab, cum_weights=cum, k=n)
        sentences, i = [], 0
        while i < n:
            k = rng.randint(8, 20)
            sentence = " ".join(picked[i : i + k])
            sentences.append(sentence[:1].upper() + sentence[1:] + ".")
            i += k
        out.append(" ".join(sentences))
    return out


def generate(path: Path, n_conv: int, n_msg: int, seed: int = 1) -> dict[str, object]:
    """Fill a new store at ``path``; returns facts the measurements need."""
    started = time.perf_counter()
    rng = random.Random(seed)
    vocab = vocabulary(rng, 30_000)
    user_pool = texts(rng, vocab, 20_000, (5, 40))
    reply_pool = texts(rng, vocab, 40_000, (40, 220))
    thinking_pool = texts(rng, vocab, 8_000, (60, 300))
    ChatStore(path).close()  # the real schema, at the current version

    # Message counts per chat: one chat of exactly 500, the rest 2..98, summing to n_msg.
    sizes = [LONG_CHAT_MESSAGES] + [2] * (n_conv - 1)
    while sum(sizes) < n_msg:
        i = rng.randrange(1, n_conv)
        if sizes[i] < 98:
            sizes[i] += 1
    now = time.time()
    span = 3 * 365 * 86400.0
    # Each message gets a time; ids follow time across all chats, so a chat's rows
    # are scattered through the file as in a real history (the long chat spans a year).
    stamped: list[tuple[float, int, int]] = []  # (time, conv index, position)
    for c, size in enumerate(sizes):
        start = now - span + rng.random() * (span - 400 * 86400.0)
        length = 365 * 86400.0 if c == 0 else rng.random() * 20 * 86400.0
        for k, t in enumerate(sorted(start + rng.random() * length for _ in range(size))):
            stamped.append((t, c, k))
    stamped.sort()
    conv_rows = []
    last: dict[int, tuple[int, float]] = {}  # conv index -> (last message id, time)
    first: dict[int, float] = {}
    msg_rows = []
    for mid, (t, c, k) in enumerate(stamped, start=1):
        role = "user" if k % 2 == 0 else "assistant"
        parent = last.get(c, (None, 0.0))[0]
        if role == "user":
            content, thinking, thinking_ms = rng.choice(user_pool), "", 0
        else:
            content = rng.choice(reply_pool)
            has_thought = rng.random() < 0.2
            thinking = rng.choice(thinking_pool) if has_thought else ""
            thinking_ms = rng.randint(2000, 40000) if has_thought else 0
        first.setdefault(c, t)
        msg_rows.append(
            (mid, c + 1, parent, 1, role, content, "complete", t, thinking, thinking_ms)
        )
        last[c] = (mid, t)
    for c in range(n_conv):
        title = f"Chat {c + 1}: " + rng.choice(user_pool)[:40]
        conv_rows.append((c + 1, title, first[c], last[c][1]))
    pinned = rng.sample(range(1, n_conv + 1), 5)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")  # generation only; the store uses NORMAL
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
        conv_rows,
    )
    db.executemany("UPDATE conversations SET pinned = 1 WHERE id = ?", [(p,) for p in pinned])
    db.executemany(
        "INSERT INTO messages (id, conversation_id, parent_id, chosen, role, content, status,"
        " created_at, thinking, thinking_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        msg_rows,
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("ANALYZE")
    db.close()
    return {
        "generate_s": time.perf_counter() - started,
        "vocab": vocab,
        "long_chat": 1,
    }


CPU: dict[str, list[float]] = {}  # CPU time of this thread per measurement (large history)


def timed(fn: Callable[[], object], name: str = "") -> float:
    """Wall milliseconds; the thread's CPU milliseconds go to CPU[name]: on a shared
    machine, CPU time shows what the work costs without waiting for a core."""
    c0, t0 = time.thread_time(), time.perf_counter()
    fn()
    wall = (time.perf_counter() - t0) * 1000.0
    if name:
        CPU.setdefault(name, []).append((time.thread_time() - c0) * 1000.0)
    return wall


def queries(vocab: list[str]) -> dict[str, str]:
    return {
        "common word": vocab[3],
        "mid word": vocab[300],
        "rare word": vocab[20_000],
        "two words": f"{vocab[10]} {vocab[200]}",
        "typing, 2-letter prefix": vocab[1][:2],
        "typing, 4-letter prefix": vocab[40][:4],
        "three words typed": f"{vocab[50]} {vocab[700]} {vocab[90][:3]}",
        "CJK (routed to messages_cjk)": "中文",
        "no match": "zzqxwv",
        "FTS syntax as text": f'{vocab[5]} AND "{vocab[6]}" NEAR(x',
    }


def measure_store(path: Path, runs: int, vocab: list[str], long_chat: int | None) -> dict:
    """Interleave-friendly: one call = one run of each measurement."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    store = ChatStore(path)
    out["open"] = (time.perf_counter() - t0) * 1000.0
    try:
        tag = "large" if long_chat is not None else ""
        out["list all"] = timed(store.list_conversations, tag and "list all")
        out["list first 200"] = timed(
            lambda: store.list_conversations(limit=200), tag and "list first 200"
        )
        out["count"] = timed(store.count_conversations)
        if long_chat is not None:
            out["open 500-message chat"] = timed(
                lambda: store.messages(long_chat), "open 500-message chat"
            )
        for name, q in queries(vocab).items():
            key = f"search: {name}"
            out[key] = timed(lambda q=q: store.search(q, 50), key if long_chat else "")  # type: ignore[misc]
            key = f"ranked: {name}"
            out[key] = timed(lambda q=q: store.search(q, 50, ranked=True), key if long_chat else "")  # type: ignore[misc]
    finally:
        store.close()
    return out


WINDOW_CHILD = """
import json, os, sys, time
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication
from app.gui import HearthApp
from app.paths import resolve_paths
from engine.history.store import ChatStore
page = int(os.environ.get("HEARTH_BENCH_PAGE", "0"))
if page:  # what a window that loads the list page by page would pay at start
    whole = ChatStore.list_conversations
    def first_page(self, limit=None, offset=0, **kw):
        return whole(self, page if limit is None else limit, offset, **kw)
    ChatStore.list_conversations = first_page
app = QApplication(sys.argv[:1])
t0 = time.perf_counter()
hearth = HearthApp(resolve_paths(sys.argv[1]))
out = {}
class FirstPaint(QObject):  # when the chat pane first paints: the window is on screen
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and "painted_ms" not in out:
            out["painted_ms"] = (time.perf_counter() - t0) * 1000.0
        return False
first_paint = FirstPaint()
hearth.window.chat_view.viewport().installEventFilter(first_paint)
hearth.start()
def ready():
    out["ready_ms"] = (time.perf_counter() - t0) * 1000.0
    out["rows"] = hearth.window.conversations.rowCount()
    done()
def done():
    if "painted_ms" not in out:  # a platform that paints later than the first turn
        QTimer.singleShot(1, done)
        return
    # A file, not stdout: llama.cpp's log bridge may point fd 1 elsewhere while loading.
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
    hearth.close()
    app.quit()
QTimer.singleShot(0, ready)
app.exec()
"""


def window_ready_ms(data_dir: Path, page: int = 0) -> dict[str, float]:
    """Milliseconds from start to: ``ready_ms`` (the first event-loop turn after
    show), ``painted_ms`` (the chat pane's first paint, with the newest chat in
    it); and ``rows`` listed."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    env["HEARTH_BENCH_PAGE"] = str(page)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        subprocess.run(
            [sys.executable, "-c", WINDOW_CHILD, str(data_dir), str(result)],
            capture_output=True, text=True, env=env, cwd=REPO, check=True, timeout=300,
        )  # fmt: skip
        line = json.loads(result.read_text())
    return {k: float(v) for k, v in line.items()}


def summary(samples: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    return {k: (statistics.median(v), max(v)) for k, v in samples.items()}


def store_section(large: Path, empty: Path, vocab: list[str], runs: int) -> None:
    samples: dict[str, dict[str, list[float]]] = {"large": {}, "empty": {}}
    for run in range(runs + 1):  # run 0 warms the OS page cache
        order = [("large", large, 1), ("empty", empty, None)]
        for name, path, chat in order if run % 2 == 0 else order[::-1]:
            result = measure_store(path, 1, vocab, chat)
            if run == 0:
                continue
            for key, ms in result.items():
                samples[name].setdefault(key, []).append(ms)
        if run == 0:
            CPU.clear()
    big, small = summary(samples["large"]), summary(samples["empty"])
    print(f"\nmilliseconds, median (max) of {runs} interleaved runs; cpu = this thread")
    print(f"{'measurement':38} {'large':>16} {'cpu':>7} {'empty':>16} {'ratio':>7}")
    for key, (p50, worst) in big.items():
        e50, eworst = small.get(key, (float("nan"), float("nan")))
        ratio = p50 / e50 if key in small and e50 > 0 else float("nan")
        cpu = statistics.median(CPU[key]) if key in CPU else float("nan")
        print(
            f"{key:38} {p50:8.2f} ({worst:6.2f}) {cpu:7.2f} {e50:8.2f} ({eworst:6.2f}) {ratio:7.1f}"
        )
    for kind in ("search", "ranked"):
        every = [x for k, v in samples["large"].items() if k.startswith(kind) for x in v]
        cpu = [x for k, v in CPU.items() if k.startswith(kind) for x in v]
        print(
            f"\n{kind} over all queries: wall p50 {statistics.median(every):.2f} ms, "
            f"max {max(every):.2f} ms; cpu p50 {statistics.median(cpu):.2f} ms, "
            f"max {max(cpu):.2f} ms (goal <= 20 ms)"
        )

    with ChatStore(large) as s:
        for quick in (True, False):
            t = timed(lambda quick=quick: s.check_integrity(quick=quick))  # type: ignore[misc]
            print(f"check_integrity(quick={quick}): {t:.0f} ms")


CJK_CHARS = [chr(0x4E00 + i) for i in range(3000)]  # Zipf over these, like the words


def cjk_texts(rng: random.Random, count: int, length: int = 300) -> list[str]:
    cum: list[float] = []
    total = 0.0
    for rank in range(len(CJK_CHARS)):
        total += 1.0 / (rank + 1)
        cum.append(total)
    out = []
    for _ in range(count):
        picked = rng.choices(CJK_CHARS, cum_weights=cum, k=length)
        out.append("".join(c + ("，" if i % 17 == 16 else "") for i, c in enumerate(picked)))
    return out


def cjk_history(path: Path, n_msg: int) -> None:
    """A store whose ``n_msg`` CJK messages are all queued for the CJK index (as
    the v2 -> v3 migration or an import leaves them); the oldest holds 最古老的词."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    ChatStore(path).close()
    pool = cjk_texts(random.Random(2), 4000)
    rng = random.Random(3)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, 0, 0)",
        [(c, f"chat {c}") for c in range(1, 201)],
    )
    db.executemany(
        "INSERT INTO messages (conversation_id, role, content, status, created_at)"
        " VALUES (?, 'user', ?, 'complete', ?)",
        [
            (1 + i % 200, "最古老的词。" + pool[0] if i == 0 else rng.choice(pool), float(i))
            for i in range(n_msg)
        ],
    )
    db.execute("COMMIT")
    db.close()


CJK_QUERIES = {
    "common run, found": "一丁",
    "one character": "丁",
    "rare, only the oldest": "最古老",
    "another run": "丂丁",
    "Latin + CJK, no match": "zzq 丁",
}


def cjk_section(root: Path, n_msg: int) -> None:
    """The CJK backlog: search while it is queued, one inline drain (what the first
    CJK search cost before), and IdleIndexer draining it in a real event loop."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from app.background import IdleIndexer
    from engine.history import search as engine_search

    path = root / "cjk" / "hearth.sqlite3"
    cjk_history(path, n_msg)
    print(f"\nCJK backlog: {n_msg} messages of ~300 CJK characters, all queued")
    with ChatStore(path) as store:
        engine_search.INLINE_INDEX = 0  # the queue is read, never indexed, by these
        for name, q in CJK_QUERIES.items():
            walls = [timed(lambda q=q: store.search(q), "cjk") for _ in range(5)]  # type: ignore[misc]
            hits = len(store.search(q))
            print(f"  search while all are queued, {name!r} ({q}): {hits} hits, "
                  f"p50 {statistics.median(walls):.0f} ms, max {max(walls):.0f} ms")  # fmt: skip
        engine_search.INLINE_INDEX = 200
        c0, t0 = time.thread_time(), time.perf_counter()
        assert store.index_pending(n_msg) == 0
        print(f"  one inline drain (the first CJK search before): "
              f"{time.perf_counter() - t0:.2f} s wall, {time.thread_time() - c0:.2f} s CPU, "
              f"{(time.thread_time() - c0) / n_msg * 1e6:.0f} µs/message")  # fmt: skip
    cjk_history(path, n_msg)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    store = ChatStore(path)
    slices: list[float] = []
    gaps: list[float] = []
    whole = store.index_pending

    def timed_slice(limit: int = 500) -> int:
        t = time.perf_counter()
        left = whole(limit)
        slices.append((time.perf_counter() - t) * 1000.0)
        return left

    store.index_pending = timed_slice  # type: ignore[method-assign]
    indexer = IdleIndexer(store)
    # The event loop's lag: a 1 ms timer, as typing or a paint would wait.
    probe, clock = QTimer(), QElapsedTimer()
    probe.setInterval(1)
    last = [0]

    def on_probe() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    probe.timeout.connect(on_probe)
    done = [0.0]

    def on_sliced(left: int) -> None:
        if left == 0:
            done[0] = time.perf_counter()
            app.quit()

    indexer.sliced.connect(on_sliced)
    clock.start()
    probe.start()
    t0 = time.perf_counter()
    indexer.start(0)
    app.exec()
    probe.stop()
    indexer.stop()
    store.close()
    slices.sort()
    gaps.sort()
    print(f"  IdleIndexer drain: {done[0] - t0:.2f} s wall, {len(slices)} slices; slice "
          f"p50 {slices[len(slices) // 2]:.1f} ms, p99 {slices[int(len(slices) * 0.99)]:.1f} "
          f"ms, max {slices[-1]:.1f} ms")  # fmt: skip
    p50, p99 = gaps[len(gaps) // 2], gaps[int(len(gaps) * 0.99)]
    print(f"  event-loop lag meanwhile (1 ms timer, gap between firings): p50 {p50} ms, "
          f"p99 {p99} ms, max {gaps[-1]} ms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "hearth-scale")
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--window", action="store_true", help="also time the real window")
    parser.add_argument("--window-runs", type=int, default=7)
    parser.add_argument("--window-only", action="store_true", help="skip the store timings")
    parser.add_argument("--cjk", type=int, default=0, metavar="N",
                        help="only the CJK backlog: N queued CJK messages")  # fmt: skip
    args = parser.parse_args()

    if args.cjk:
        cjk_section(args.db, args.cjk)
        return 0
    large_dir, empty_dir = args.db / "large", args.db / "empty"
    large, empty = large_dir / "hearth.sqlite3", empty_dir / "hearth.sqlite3"
    facts_file = args.db / "facts.json"
    rng = random.Random(1)
    vocab = vocabulary(rng, 30_000)  # the same words generate() uses (same seed, first draw)
    if args.regenerate or not large.exists():
        for p in (large, empty):
            p.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                Path(str(p) + suffix).unlink(missing_ok=True)
        facts = generate(large, args.conversations, args.messages)
        ChatStore(empty).close()
        facts_file.write_text(json.dumps({"generate_s": facts["generate_s"]}))
        assert facts["vocab"] == vocab
    generate_s = json.loads(facts_file.read_text())["generate_s"]
    with ChatStore(large) as s:
        n_conv, n_msg = s.count_conversations(), s._rows("SELECT count(*) FROM messages")[0][0]
    size_mb = large.stat().st_size / 1e6
    print(f"history: {n_conv} chats, {n_msg} messages, {size_mb:.0f} MB file, "
          f"generated in {generate_s:.0f} s")  # fmt: skip

    if not args.window_only:
        store_section(large, empty, vocab, args.runs)

    if args.window:
        models = args.db / "models"
        if not models.exists():
            from engine.models.catalog import install_starter_model

            install_starter_model(models)
        for d in (large_dir, empty_dir):
            (d / "models").mkdir(exist_ok=True)
            for f in models.iterdir():
                if not (d / "models" / f.name).exists():
                    os.link(f, d / "models" / f.name)
        keys = ("ready_ms", "painted_ms")
        got: dict[str, dict[str, list[float]]] = {"large": {}, "empty": {}}
        rows = {}
        for run in range(args.window_runs + 1):  # run 0 warms up
            order = [("large", large_dir), ("empty", empty_dir)]
            for name, d in order if run % 2 == 0 else order[::-1]:
                one = window_ready_ms(d)
                rows[name] = int(one["rows"])
                for k in keys if run else ():
                    got[name].setdefault(k, []).append(one[k])
        print(f"\nwindow, ms from start, median of {args.window_runs} fresh processes each"
              " (goal: large <= 1.2x empty)")  # fmt: skip
        for k in keys:
            big, small = got["large"][k], got["empty"][k]
            pairs = statistics.median(a / b for a, b in zip(big, small, strict=True))
            b50, s50 = statistics.median(big), statistics.median(small)
            print(f"  {k:12} large {b50:6.0f}  empty {s50:6.0f}  {b50 / s50:5.2f}x"
                  f" (median per-run ratio {pairs:.2f}x)")  # fmt: skip
        print(f"  rows listed: large {rows['large']}, empty {rows['empty']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
