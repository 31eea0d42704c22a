"""One Hearth per data folder: a second launch brings the first forward and exits.

The second launch is always a real separate process (`python -m app`, the same
entry point as the installed `hearth`), since a process cannot be its own
second instance: its blocking handshake would freeze the event loop that has
to answer it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app import single_instance
from app.single_instance import LOCK_NAME, AlreadyRunningError, InstanceGuard, server_name
from tests.gui.conftest import Launch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def guards() -> Iterator[list[InstanceGuard]]:
    made: list[InstanceGuard] = []
    yield made
    for guard in made:
        guard.release()


def launch_second(data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HEARTH_DATA_DIR": str(data_dir), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(qtbot: QtBot, proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Run the event loop (the first instance answers from it) until ``proc`` exits."""
    qtbot.waitUntil(lambda: proc.poll() is not None, timeout=60_000)
    output, _ = proc.communicate()
    return proc.returncode, output


# The offscreen platform has no window manager to raise a window with; it says so.
@pytest.mark.qt_log_ignore("This plugin does not support raise")
def test_second_launch_raises_the_first_window_and_exits(
    qtbot: QtBot, launch: Launch, data_dir: Path, guards: list[InstanceGuard]
) -> None:
    hearth = launch(data_dir)
    guard = InstanceGuard(data_dir)
    guards.append(guard)
    assert guard.claim() and guard.is_primary
    guard.activation_requested.connect(hearth.raise_window)
    hearth.window.showMinimized()
    qtbot.waitUntil(lambda: bool(hearth.window.windowState() & Qt.WindowState.WindowMinimized))
    conversations_before = hearth.store.list_conversations()

    with qtbot.waitSignal(guard.activation_requested, timeout=60_000):
        second = launch_second(data_dir)
    code, output = finish(qtbot, second)
    assert code == 0, output

    assert hearth.window.isVisible()
    assert not hearth.window.windowState() & Qt.WindowState.WindowMinimized
    # The second process stopped before it touched the data folder's contents.
    assert hearth.store.list_conversations() == conversations_before
    log = (data_dir / "logs" / "hearth.log").read_text(encoding="utf-8")
    assert log.count("window shown") == 1
    assert "a second launch asked this Hearth to come forward" in log


def test_a_crashed_hearths_lock_and_socket_are_taken_over(
    qtbot: QtBot, tmp_path: Path, guards: list[InstanceGuard]
) -> None:
    data_dir = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_AND_WAIT, str(data_dir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "primary"
    holder.kill()  # a crash: SIGKILL, no unlock, no socket cleanup
    holder.communicate(timeout=30)
    assert (data_dir / LOCK_NAME).exists()
    if sys.platform != "win32":  # a Unix socket file stays behind; a Windows pipe dies with it
        from PySide6.QtCore import QDir

        assert (Path(QDir.tempPath()) / server_name(data_dir)).exists()

    guard = InstanceGuard(data_dir)
    guards.append(guard)
    assert guard.claim(), "the stale lock of a dead process must be taken over"
    # ...and the new owner answers second launches on the same name.
    with qtbot.waitSignal(guard.activation_requested, timeout=60_000):
        second = launch_second(data_dir)
    assert finish(qtbot, second)[0] == 0


def test_an_owner_that_does_not_answer_is_reported_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    # A live process holding the lock without listening: a hung Hearth.
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_ONLY, str(data_dir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(single_instance, "WAIT_FOR_OWNER_S", 0.5)
        guard = InstanceGuard(data_dir)
        with pytest.raises(AlreadyRunningError) as caught:
            guard.claim()
        assert not guard.is_primary
        message = caught.value.message
        assert message.startswith("Hearth is already running but does not respond.")
        assert f"end process {holder.pid}" in message
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def test_each_data_folder_has_its_own_hearth(tmp_path: Path, guards: list[InstanceGuard]) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert server_name(one) != server_name(two)
    assert server_name(one) == server_name(tmp_path / "x" / ".." / "one")
    for folder in (one, two):
        guard = InstanceGuard(folder)
        guards.append(guard)
        assert guard.claim()
    guards[0].release()
    assert not (one / LOCK_NAME).exists()  # a clean exit leaves nothing behind


_HOLD_AND_WAIT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from PySide6.QtCore import QCoreApplication
    from app.single_instance import InstanceGuard

    app = QCoreApplication([])
    guard = InstanceGuard(Path(sys.argv[1]))
    print("primary" if guard.claim() else "secondary", flush=True)
    sys.stdin.read()  # until killed
    """
)

_LOCK_ONLY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from PySide6.QtCore import QCoreApplication, QLockFile

    app = QCoreApplication([])  # the lock records the app's name, as Hearth's does
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True)
    lock = QLockFile(str(folder / "hearth.lock"))
    lock.setStaleLockTime(0)
    print("locked" if lock.tryLock(0) else "failed", flush=True)
    sys.stdin.read()  # until killed
    """
)
