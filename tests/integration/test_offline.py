"""Offline means offline: launching, chatting, Settings and the CLI open no network connection.

A child process installs an audit hook (``sys.addaudithook``) before importing anything of
Hearth, then runs a list of steps with the real app: the window (``app.gui.HearthApp``,
offscreen), a chat with the real starter model, the Settings window, and ``hearth chat`` /
``hearth models`` (in-process, so the hook sees them). The hook records, and blocks by
raising, every ``socket.connect`` on an AF_INET/AF_INET6 socket, every ``sendto`` to one
(UDP), and every name lookup (``getaddrinfo``, ``gethostbyname``); AF_UNIX is allowed (D-Bus
and the keyring use it, and the single-instance guard's local socket). The child reports
what it saw as JSON, with a stack for each, and the test fails on any. The hook lives and
dies with the child, so it cannot outlive the test.

What it cannot see: connections made by C/C++ code without going through Python's socket
module (Qt's network classes, which Hearth does not use; llama.cpp, built without curl).

To cover another flow (e.g. switching model), write a step function below, add it to
``STEP_FUNCTIONS`` and put its name in ``OFFLINE_FLOW``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.waiting import MODEL_STEP_S, wait_until

ROOT = Path(__file__).resolve().parents[2]

# The flow the test runs, in order. Each name is a key of STEP_FUNCTIONS.
OFFLINE_FLOW = [
    "launch_window",
    "chat",
    "open_settings",
    "switch_model",
    "chat",
    "cli_chat",
    "cli_models",
]


# -- the child: the hook and the steps --------------------------------------------------------


@dataclass
class NetworkGuard:
    """The audit hook: records (and refuses) anything that would reach the network."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not event.startswith("socket."):
            return
        what: str | None = None
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[1]
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                what = f"{event} {address!r}"
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            what = f"{event} {args[0]!r}"
        if what is None:
            return
        with self._lock:
            self.seen.append(
                {
                    "what": what,
                    "thread": threading.current_thread().name,
                    "stack": traceback.format_stack(limit=25)[:-1],
                }
            )
        raise ConnectionRefusedError(f"offline test: network use refused: {what}")


@dataclass
class Context:
    """What the steps share in the child."""

    data_dir: Path
    app: Any = None  # QApplication
    hearth: Any = None  # app.gui.HearthApp
    closers: list[Callable[[], None]] = field(default_factory=list)


def step_launch_window(ctx: Context) -> None:
    from PySide6.QtWidgets import QApplication

    from app.gui import HearthApp
    from app.paths import resolve_paths
    from engine.types import EngineOptions
    from ui.state import ResponseState

    ctx.app = QApplication.instance() or QApplication(["hearth-offline-test"])
    ctx.hearth = HearthApp(
        resolve_paths(ctx.data_dir),
        options=EngineOptions(n_ctx=2048),
    )
    # A short reply, sampled as a person sets it (Settings → Generation).
    ctx.hearth.settings.update({"generation.max_tokens": 16, "generation.temperature": 0.7})
    ctx.hearth.settings_controller.apply_live("generation.max_tokens")
    ctx.closers.append(ctx.hearth.close)
    ctx.hearth.start()
    window = ctx.hearth.window
    wait_until(
        lambda: window.state != ResponseState.LOADING, timeout_s=MODEL_STEP_S, what="the model"
    )
    assert window.state == ResponseState.IDLE, window.error_banner.label.text()


def step_chat(ctx: Context) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    replies: list[bool] = []
    ctx.hearth.replies.reply_ended.connect(lambda *_: replies.append(True))
    composer = ctx.hearth.window.composer
    composer.setFocus()
    QTest.keyClicks(composer, "Hello! Say one word.")
    QTest.keyClick(composer, Qt.Key.Key_Return)
    wait_until(lambda: bool(replies), timeout_s=MODEL_STEP_S, what="the reply")
    assert ctx.hearth.window.chat_view.plain_text().strip()


def step_open_settings(ctx: Context) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    window = ctx.hearth.window
    QTest.keyClick(window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    dialog = ctx.hearth.settings_controller.dialog
    assert dialog is not None and dialog.isVisible()
    for row in range(dialog.pages.count()):  # every page, as a person browsing would
        dialog.pages.setCurrentRow(row)
        QApplication.processEvents()  # let the page show (and start whatever it starts)
    dialog.close()


def step_switch_model(ctx: Context) -> None:
    """Import another quantization of the starter model (made here with llama.cpp) from
    the Model page and switch to it in the middle of the conversation."""
    import ctypes

    import llama_cpp

    from app.model_jobs import LOCAL_FILES

    hearth = ctx.hearth
    source = Path(hearth.engine.model_info.path)
    q8 = ctx.data_dir.parent / "starter-q8_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    assert llama_cpp.llama_model_quantize(
        str(source).encode(), str(q8).encode(), ctypes.byref(params)
    ) == 0  # fmt: skip
    hearth.settings_controller.open()  # the Model page lists the catalog (no network)
    hearth.models.files.import_file(str(q8))
    imported = hearth.models.models_dir / q8.name
    wait_until(lambda: not hearth.models.busy, timeout_s=MODEL_STEP_S, what="the import")
    assert imported.exists()
    switched: list[bool] = []
    hearth.models.switch_finished.connect(switched.append)
    hearth.models.select(LOCAL_FILES, str(imported))
    wait_until(lambda: bool(switched), timeout_s=MODEL_STEP_S, what="the switch")
    assert switched == [True] and hearth.engine.model_info.quantization == "Q8_0"
    hearth.settings_controller.dialog.close()


def step_cli_chat(ctx: Context) -> None:
    from app.main import main

    assert main(["--data-dir", str(ctx.data_dir), "chat", "--max-tokens", "8", "Hi"]) == 0


def step_cli_models(ctx: Context) -> None:
    from app.main import main

    assert main(["--data-dir", str(ctx.data_dir), "models", "--json"]) == 0
    assert main(["--data-dir", str(ctx.data_dir), "models"]) == 0


def step_deliberate_connect(ctx: Context) -> None:
    """Not part of the flow: proves the hook catches a connection, raw and through httpx."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        pass  # refused by the hook, as it should be
    finally:
        client.close()
        server.close()
    import httpx2

    with contextlib.suppress(httpx2.TransportError):
        httpx2.get(f"http://127.0.0.1:{port}/", timeout=5)
    # Allowed: not the network.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as local, contextlib.suppress(OSError):
        local.connect(str(ctx.data_dir / "no-such.sock"))


STEP_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "launch_window": step_launch_window,
    "chat": step_chat,
    "open_settings": step_open_settings,
    "switch_model": step_switch_model,
    "cli_chat": step_cli_chat,
    "cli_models": step_cli_models,
    "deliberate_connect": step_deliberate_connect,
}


def child_main(report_path: str, data_dir: str, *steps: str) -> int:
    guard = NetworkGuard()
    sys.addaudithook(guard)  # before anything of Hearth is imported
    ctx = Context(Path(data_dir))
    done: list[str] = []
    try:
        for name in steps:
            STEP_FUNCTIONS[name](ctx)
            done.append(name)
    finally:
        for close in reversed(ctx.closers):
            close()
        Path(report_path).write_text(json.dumps({"done": done, "network": guard.seen}))
    return 0


# -- the test ---------------------------------------------------------------------------------


def run_offline(data_dir: Path, steps: list[str], tmp_path: Path) -> dict[str, Any]:
    report = tmp_path / "offline-report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_HUB_OFFLINE")}
    env |= {"QT_QPA_PLATFORM": "offscreen", "HEARTH_DATA_DIR": str(data_dir)}
    code = (
        "import sys; from tests.integration.test_offline import child_main; "
        "sys.exit(child_main(*sys.argv[1:]))"
    )
    # The whole flow takes 15-20 s here; each step in it has its own MODEL_STEP_S limit,
    # and this one stays under pytest's per-test timeout (pyproject.toml).
    result = subprocess.run(
        [sys.executable, "-c", code, str(report), str(data_dir), *steps], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=2 * MODEL_STEP_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(report.read_text())  # type: ignore[no-any-return]


def test_the_hook_catches_a_connection(data_dir: Path, tmp_path: Path) -> None:
    report = run_offline(data_dir, ["deliberate_connect"], tmp_path)
    assert report["done"] == ["deliberate_connect"]
    seen = [n["what"] for n in report["network"]]
    # The raw socket's connect, and httpx's name lookup before its connect (refused there);
    # not the AF_UNIX socket.
    assert len(seen) == 2, seen
    assert seen[0].startswith("socket.connect ('127.0.0.1', ")
    assert seen[1] == "socket.getaddrinfo '127.0.0.1'"


def test_launch_chat_settings_and_cli_stay_offline(data_dir: Path, tmp_path: Path) -> None:
    report = run_offline(data_dir, OFFLINE_FLOW, tmp_path)
    assert report["done"] == OFFLINE_FLOW
    details = "\n\n".join(n["what"] + " on " + n["thread"] + "\n" + "".join(n["stack"])
                          for n in report["network"])  # fmt: skip
    assert report["network"] == [], details
