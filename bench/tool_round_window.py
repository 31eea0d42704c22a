"""The window's side of a tool round, measured through the real window.

Hearth's ``HearthApp`` (main window, engine thread, SQLite history, the tool loop,
the real calculator behind the real permission rules — Always allow, so nobody is
asked) answers with ``tests/fakes/scripted.ScriptedBackend`` instead of a model: no
model that runs here calls tools on its own, and the model's work is not Hearth's
overhead. Its replies are Qwen3.5's real call format.

Per round, end to end: the call parsed out of the stream, the permission looked up,
the call dispatched (the tool's own run time subtracted), the call and result
crossing to the GUI thread (worker signals), each part written to SQLite, the call
block drawn in the reply, and the next round started (re-entry into the backend;
the real model's prompt re-entry is ``tool_round.py``'s ``re-entry`` figure).

How: each sample is a new chat whose reply makes ``rounds`` tool calls and then
answers; the same chat answered without a call is the baseline; (median(with
calls) - median(baseline) - tool time) / rounds, from the Enter key to the reply's
end (``reply_ended``).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/tool_round_window.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CALL = (
    "I will compute it.\n\n<tool_call>\n<function=calculator>\n<parameter=expression>\n"
    "(1234 * 5678) / 7\n</parameter>\n</function>\n</tool_call>"
)
ANSWER = "The result is 1000170.2857142857, about a million."


def bench_window(runs: int, rounds: int) -> tuple[float, float, float]:
    """(median ms of a reply with ``rounds`` calls, of one without, ms per round)."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from app.gui import HearthApp
    from app.paths import resolve_paths
    from engine.types import EngineOptions
    from tests.fakes.scripted import ScriptedBackend, scripted_opener
    from ui.state import ResponseState

    app = QApplication.instance() or QApplication([])
    with_calls: list[float] = []
    baseline: list[float] = []
    tool_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        config = data / "config"
        config.mkdir(parents=True)
        (config / "tools.json").write_text(
            json.dumps({"builtin": ["calculator"], "max_rounds": rounds + 1})
        )
        rule = {"server": "", "tool": "calculator", "permission": "always"}
        (config / "tool_permissions.json").write_text(json.dumps({"version": 1, "rules": [rule]}))
        script: list[str] = []
        for _ in range(runs + 2):  # (two warm-up pairs)
            script += [ANSWER, *[CALL] * rounds, ANSWER]
        backend = ScriptedBackend(script)
        hearth = HearthApp(
            resolve_paths(data),
            options=EngineOptions(n_ctx=8192),
            open_backend=scripted_opener(backend),
        )
        hearth.start()
        loop = QEventLoop()

        def wait(condition: object) -> None:
            timer = QTimer()
            timer.timeout.connect(lambda: loop.quit() if condition() else None)  # type: ignore[operator]
            timer.start(5)
            loop.exec()
            timer.stop()

        wait(lambda: hearth.replies.state != ResponseState.LOADING)
        hearth.replies.reply_ended.connect(lambda *_: loop.quit())

        def one_reply() -> float:
            hearth.conversations.new_chat()
            composer = hearth.window.composer
            composer.setPlainText("What is 1234 times 5678, divided by 7?")
            composer.setFocus()
            t0 = time.perf_counter()
            QTest.keyClick(composer, Qt.Key.Key_Return)
            loop.exec()  # until reply_ended
            return (time.perf_counter() - t0) * 1000

        try:
            for i in range(runs + 2):
                base = one_reply()
                calls = one_reply()
                conv = hearth.conversations.current_id
                assert conv is not None
                results = hearth.store.messages(conv)[-1].tool_results_parts()
                assert len(results) == rounds and all(r.ok for r in results), results
                if i >= 2:
                    baseline.append(base)
                    with_calls.append(calls)
                    tool_ms.append(sum(r.duration_ms for r in results))
        finally:
            hearth.close()
    b, w = statistics.median(baseline), statistics.median(with_calls)
    per_round = (w - b - statistics.median(tool_ms)) / rounds
    app.processEvents()
    return w, b, per_round


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    w, b, per = bench_window(args.runs, args.rounds)
    print(
        f"window: reply with {args.rounds} calls median {w:.1f} ms, without {b:.1f} ms "
        f"-> {per:.2f} ms per round (n={args.runs})"
    )


if __name__ == "__main__":
    main()
