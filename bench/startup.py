"""Cold start to window shown: from source and frozen, with an empty and a large history.

Each run is a new process (``python -m app`` from source, or the frozen
``hearth`` from packaging/build_frozen.py), started on its own data folder
with the starter model already installed, so the figure is the start itself
and not the first-run model copy. Two figures per run:

- ``wall``: from ``Popen`` to the moment the app's "window shown" line is in its
  log (polled every 5 ms, so up to 5 ms late),
- ``app``: what the app logs, measured from the process' creation time (the OS
  clock's tick, 10 ms) to the first frame on screen (after the first Expose),
- ``ready`` (with ``--until-model``): from ``Popen`` to the engine's "loaded <model>"
  line, i.e. the starter model loaded and chat possible. This includes
  registering llama.cpp's backends, which in the portable (GGML_BACKEND_DL)
  build means ggml opening each per-CPU library to pick the best.

Large history: ~10,000 conversations of 4 messages, written with sqlite3
directly into a database that ChatStore created (the real schema, FTS triggers
included). Runs are interleaved across the four cases, and reported as medians
and ratios: the machine is shared. "Cold" means a new process; the OS file
cache is warm after the first run (``--drop-caches``, as root, empties it
before every run, for a first-start-after-boot figure).

    .venv/bin/python bench/startup.py [--runs 7] [--frozen [LABEL=]DIR ...] [--no-source]
                                      [--until-model] [--platform offscreen|xcb]

``--frozen`` may be given more than once to compare frozen builds, e.g.
``--frozen portable=build/a/hearth --frozen native=build/b/hearth``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.history.store import ChatStore  # noqa: E402
from engine.models.catalog import install_starter_model  # noqa: E402

SHOWN = re.compile(r"window shown (\d+) ms after the process started")
LOADED = re.compile(r"app\.worker \[[^\]]*\] loaded ")
WORDS = ["ember", "hearth", "kettle", "lantern", "oak", "pine", "quill", "river", "stone"]


@dataclass
class Case:
    name: str
    command: list[str]
    data_dir: Path
    wall_ms: list[float] = field(default_factory=list)
    app_ms: list[float] = field(default_factory=list)
    ready_ms: list[float] = field(default_factory=list)


def fill_history(db_path: Path, conversations: int, seed: int = 1) -> None:
    """~``conversations`` chats of 4 messages each, straight into SQLite in one transaction."""
    ChatStore(db_path).close()  # the schema, at the current version
    rng = random.Random(seed)
    db = sqlite3.connect(db_path, isolation_level=None)
    columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    threaded = "parent_id" in columns  # v2 keeps each message's parent
    now = time.time()
    db.execute("PRAGMA synchronous = OFF")  # generation only
    db.execute("BEGIN")
    message_id = 0
    for c in range(1, conversations + 1):
        t = now - (conversations - c) * 600.0
        title = " ".join(rng.choice(WORDS) for _ in range(5))
        db.execute(
            "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (c, title, t, t + 60),
        )
        parent = None
        for k in range(4):
            message_id += 1
            role = "user" if k % 2 == 0 else "assistant"
            text = " ".join(rng.choice(WORDS) for _ in range(12 if role == "user" else 80))
            if threaded:
                db.execute(
                    "INSERT INTO messages (id, conversation_id, parent_id, chosen, role, content,"
                    " status, created_at) VALUES (?, ?, ?, 1, ?, ?, 'complete', ?)",
                    (message_id, c, parent, role, text, t + k),
                )
                parent = message_id
            else:
                db.execute(
                    "INSERT INTO messages (id, conversation_id, role, content, status, created_at)"
                    " VALUES (?, ?, ?, ?, 'complete', ?)",
                    (message_id, c, role, text, t + k),
                )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def prepare(root: Path, name: str, conversations: int, models: Path) -> Path:
    data = root / name
    (data / "models").mkdir(parents=True)
    for item in models.iterdir():  # hard links: the 94 MB model once on disk
        os.link(item, data / "models" / item.name)
    if conversations:
        fill_history(data / "hearth.sqlite3", conversations)
    return data


def log_size(data_dir: Path) -> int:
    try:
        return (data_dir / "logs" / "hearth.log").stat().st_size
    except FileNotFoundError:
        return 0


def run_once(
    case: Case, env: dict[str, str], *, until_model: bool = False, timeout: float = 120.0
) -> None:
    log = case.data_dir / "logs" / "hearth.log"
    offset = log_size(case.data_dir)
    env = {**env, "HEARTH_DATA_DIR": str(case.data_dir)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        case.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    shown = False
    try:
        while True:
            if log.exists():
                with log.open("rb") as f:
                    f.seek(offset)
                    text = f.read().decode("utf-8", "replace")
                now_ms = (time.perf_counter() - started) * 1000
                match = SHOWN.search(text)
                if match and not shown:
                    shown = True
                    case.wall_ms.append(now_ms)
                    case.app_ms.append(float(match.group(1)))
                if shown and not until_model:
                    return
                if shown and LOADED.search(text):
                    case.ready_ms.append(now_ms)
                    return
            waiting = "the model" if shown else "its window"
            if proc.poll() is not None:
                raise SystemExit(
                    f"{case.name}: Hearth exited ({proc.returncode}) before {waiting}\n"
                    + _log_tail(log, offset)
                )
            if time.perf_counter() - started > timeout:
                raise SystemExit(
                    f"{case.name}: no sign of {waiting} after {timeout:.0f} s\n"
                    + _log_tail(log, offset)
                )
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        # The next run takes over the lock a killed Hearth leaves; remove it anyway,
        # so every run measures the same path.
        (case.data_dir / "hearth.lock").unlink(missing_ok=True)


def _log_tail(log: Path, offset: int, lines: int = 15) -> str:
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument(
        "--frozen",
        action="append",
        default=[],
        metavar="[LABEL=]DIR",
        help="a frozen folder, repeatable (default: build/reuse one, labelled 'frozen')",
    )
    parser.add_argument("--no-frozen", action="store_true", help="measure from source only")
    parser.add_argument("--no-source", action="store_true", help="measure frozen builds only")
    parser.add_argument(
        "--until-model", action="store_true", help="also time until the starter model is loaded"
    )
    parser.add_argument(
        "--platform", default="offscreen", help="QT_QPA_PLATFORM (xcb needs DISPLAY)"
    )
    parser.add_argument(
        "--drop-caches", action="store_true", help="empty the OS file cache each run"
    )
    args = parser.parse_args()

    commands = {} if args.no_source else {"source": [sys.executable, "-m", "app"]}
    if not args.no_frozen:
        if not args.frozen:
            out = subprocess.run(
                [sys.executable, str(REPO / "packaging" / "build_frozen.py")],
                capture_output=True,
                text=True,
                check=True,
            )
            args.frozen = [out.stdout.strip()]
        for given in args.frozen:
            label, _, folder = given.rpartition("=")
            commands[label or "frozen"] = [str(Path(folder) / "hearth")]

    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env["QT_QPA_PLATFORM"] = args.platform
    with tempfile.TemporaryDirectory(prefix="hearth-startup-") as tmp:
        root = Path(tmp)
        models = root / "models"
        install_starter_model(models)
        started = time.perf_counter()
        cases = []
        for mode, command in commands.items():
            for history, count in (("empty", 0), ("large", args.conversations)):
                data = prepare(root, f"{mode}-{history}", count, models)
                cases.append(Case(f"{mode}, {history} history", command, data))
        print(f"prepared {len(cases)} data folders in {time.perf_counter() - started:.1f} s")
        for case in cases:  # warm-up: first start writes the config, checks the model
            run_once(case, env, until_model=args.until_model)
            case.wall_ms.clear()
            case.app_ms.clear()
            case.ready_ms.clear()
        for run in range(args.runs):
            order = cases[run % len(cases) :] + cases[: run % len(cases)]
            for case in order:
                if args.drop_caches:
                    drop_caches()
                run_once(case, env, until_model=args.until_model)

    print(
        f"\n{args.runs} runs per case, platform {args.platform}"
        f"{', OS file cache dropped before each run' if args.drop_caches else ''}"
    )
    ready = f" {'model ready':>12} {'ready min..max':>17}" if args.until_model else ""
    print(f"{'case':<32} {'wall median':>12} {'app median':>11} {'wall min..max':>16}{ready}")
    for case in cases:
        line = (
            f"{case.name:<32} {statistics.median(case.wall_ms):>9.0f} ms "
            f"{statistics.median(case.app_ms):>8.0f} ms "
            f"{min(case.wall_ms):>7.0f}..{max(case.wall_ms):.0f} ms"
        )
        if args.until_model:
            line += (
                f" {statistics.median(case.ready_ms):>9.0f} ms "
                f"{min(case.ready_ms):>8.0f}..{max(case.ready_ms):.0f} ms"
            )
        print(line)
    median = {c.name: statistics.median(c.wall_ms) for c in cases}
    ratios = [
        ("large/empty (source)", "source, large history", "source, empty history"),
        ("frozen/source (empty)", "frozen, empty history", "source, empty history"),
        ("frozen/source (large)", "frozen, large history", "source, large history"),
        ("large/empty (frozen)", "frozen, large history", "frozen, empty history"),
    ]
    print()
    for label, a, b in ratios:
        if a in median and b in median:
            print(f"{label}: {median[a] / median[b]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
