"""How smooth is the chat view while a long Markdown reply streams?

Drives the real ChatView (offscreen) with a scripted token source at
``--rate`` tokens/s for ``--tokens`` tokens of mixed Markdown (prose, lists,
code blocks, a table) and measures event-loop lag: a probe timer asks to fire
every 5 ms and records how late it actually fires. Compares Hearth's
append-only streaming with a baseline that re-renders the whole message on
every token (what GPT4All and Jan do).

    python bench/ui_streaming.py [--tokens 8000] [--rate 500] [--baseline-tokens 1500]

Prints p50/p99/max lag, total time, and the lag of the first vs last 1,000
tokens. Goal: p99 <= 16 ms, max <= 50 ms, last 1,000 no slower than the first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

from engine.history.types import MessageStatus
from ui.chat_view import ChatView
from ui.markdown import MarkdownRenderer

PROBE_MS = 5

SECTION = """## Part {n}: notes on sorting

Sorting is one of the oldest problems in computing, and **Python** gives you two
tools for it: `sorted()` returns a new list while `.sort()` works in place. Both
are *stable*, which matters when you sort by several keys in turn.

- Use `key=` to sort by a computed value
- Use `reverse=True` for descending order
- [x] stable
- [ ] allocation-free

```python
def top(items, n=3):
    # the n largest, biggest first
    ranked = sorted(items, key=lambda item: item.score, reverse=True)
    return [item.name for item in ranked[:n]]
```

| method | returns | in place |
|---|---|---|
| `sorted()` | new list | no |
| `.sort()` | `None` | yes |

> Timsort merges runs that are already ordered, so nearly sorted data is fast.

"""


def script_tokens(count: int) -> list[str]:
    """Split repeated sections into ~4-character pieces, like a BPE tokenizer."""
    text = "".join(SECTION.format(n=i) for i in range(1, 400))
    pieces: list[str] = []
    pos = 0
    while len(pieces) < count:
        step = 3 + (len(pieces) % 3)  # 3-5 characters
        pieces.append(text[pos : pos + step])
        pos += step
    return pieces


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    app: QApplication, tokens: list[str], rate: float, feed: Callable[[str], None]
) -> dict[str, float]:
    lags: list[tuple[int, float]] = []  # (tokens sent so far, lag ms)
    sent = 0
    clock = QElapsedTimer()
    clock.start()
    last_probe = [0.0]

    def probe() -> None:
        now = clock.nsecsElapsed() / 1e6
        lags.append((sent, max(0.0, now - last_probe[0] - PROBE_MS)))
        last_probe[0] = now

    def pump() -> None:
        nonlocal sent
        due = min(len(tokens), int(clock.nsecsElapsed() / 1e9 * rate) + 1)
        while sent < due:
            feed(tokens[sent])
            sent += 1
        if sent >= len(tokens):
            feeder.stop()
            QTimer.singleShot(200, app.quit)  # let the last frames paint

    probe_timer = QTimer()
    probe_timer.setInterval(PROBE_MS)
    probe_timer.timeout.connect(probe)
    feeder = QTimer()
    feeder.setInterval(2)  # the feeder catches up to `rate` on every tick
    feeder.timeout.connect(pump)
    started = time.perf_counter()
    probe_timer.start()
    feeder.start()
    app.exec()
    probe_timer.stop()
    total = time.perf_counter() - started
    values = [lag for _, lag in lags[1:]]
    first = [lag for n, lag in lags if n <= 1000]
    last = [lag for n, lag in lags if n > len(tokens) - 1000]
    return {
        "tokens": len(tokens),
        "total_s": total,
        "p50_ms": percentile(values, 0.50),
        "p99_ms": percentile(values, 0.99),
        "max_ms": max(values),
        "first1000_p99_ms": percentile(first, 0.99),
        "last1000_p99_ms": percentile(last, 0.99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--baseline-tokens", type=int, default=1500)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])

    view = ChatView()
    view.resize(900, 700)
    view.show()
    view.begin_reply()
    hearth = run(app, script_tokens(args.tokens), args.rate, view.append_reply)
    view.end_reply(MessageStatus.COMPLETE)

    # Baseline: the whole message re-rendered on every token.
    base_view = ChatView()
    base_view.resize(900, 700)
    base_view.show()
    renderer = MarkdownRenderer()
    text: list[str] = []

    def rerender(piece: str) -> None:
        text.append(piece)
        base_view.setHtml(renderer.render("".join(text)))
        bar = base_view.verticalScrollBar()
        bar.setValue(bar.maximum())

    base = run(app, script_tokens(args.baseline_tokens), args.rate, rerender)

    def show(name: str, r: dict[str, float]) -> None:
        print(
            f"{name:<28} tokens={r['tokens']:>5.0f} total={r['total_s']:6.1f}s "
            f"lag p50={r['p50_ms']:5.1f} p99={r['p99_ms']:6.1f} max={r['max_ms']:6.1f} ms  "
            f"p99 first/last 1000={r['first1000_p99_ms']:.1f}/{r['last1000_p99_ms']:.1f} ms"
        )

    show("hearth (append-only)", hearth)
    show("baseline (re-render/token)", base)
    slowdown = hearth["last1000_p99_ms"] / max(hearth["first1000_p99_ms"], 0.1)
    print(f"hearth last/first 1000 p99 ratio: {slowdown:.2f}")
    print(
        f"baseline/hearth p99 ratio: {base['p99_ms'] / max(hearth['p99_ms'], 0.1):.1f}x "
        f"(baseline ran only {base['tokens']:.0f} tokens)"
    )
    ok = hearth["p99_ms"] <= 16 and hearth["max_ms"] <= 50
    print("goal p99<=16 ms, max<=50 ms:", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
