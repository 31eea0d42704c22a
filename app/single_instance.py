"""One Hearth per person and data folder: a second launch brings the first one forward.

Two processes on one data folder would fight over the chat database and load
the model twice (gigabytes of RAM for the flagship model). So ``run_gui`` asks
an ``InstanceGuard`` first:

- Who runs is decided by a ``QLockFile`` in the data folder (``hearth.lock``).
  Its owner is the running Hearth. A lock left by a crashed Hearth is stale
  (its process is gone) and is taken over; stale-by-age is switched off, since
  Hearth holds the lock for as long as it runs.
- The owner listens on a ``QLocalServer`` (a Unix socket in the temp folder, a
  named pipe on Windows) whose name is a hash of the user and the data folder.
  A socket file left by a crash is removed before listening.
- A second launch connects, reads the owner's process id, passes on what the
  OS needs to let that process raise its window (Windows foreground right,
  Wayland activation token), sends ``activate`` and exits once it is answered.

Protocol (one line each, UTF-8): server ``pid <n>``; client ``activate [token]``;
server ``ok``.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from engine.errors import KnownError

log = logging.getLogger(__name__)

LOCK_NAME = "hearth.lock"
CONNECT_TIMEOUT_MS = 1000
ANSWER_TIMEOUT_MS = 3000
# The owner listens within milliseconds of taking the lock; this is how long a
# second launch keeps trying before it calls the owner unresponsive.
WAIT_FOR_OWNER_S = 5.0


class AlreadyRunningError(KnownError):
    """Another Hearth holds this data folder but does not answer."""


def server_name(data_dir: Path) -> str:
    """The local socket's name: one per user and data folder, short enough for a Unix path."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the uid still tells users apart
        user = str(getattr(os, "getuid", lambda: 0)())
    key = f"{user}\0{Path(data_dir).expanduser().resolve()}"
    return "hearth-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


class InstanceGuard(QObject):
    """Decides whether this process is the Hearth for ``data_dir``; see the module doc."""

    activation_requested = Signal()

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.name = server_name(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = QLockFile(str(self.data_dir / LOCK_NAME))
        self._lock.setStaleLockTime(0)  # stale only when its process is gone, never by age
        self._server: QLocalServer | None = None

    @property
    def is_primary(self) -> bool:
        return self._lock.isLocked()

    def claim(self) -> bool:
        """True if this process is now the running Hearth; False if another one was
        asked to come forward (then this process should exit).

        Raises ``AlreadyRunningError`` if another Hearth holds the data folder
        but does not answer within ``WAIT_FOR_OWNER_S``.
        """
        deadline = time.monotonic() + WAIT_FOR_OWNER_S
        wait_ms = 0
        while True:
            # tryLock takes over a lock whose process is gone; its wait is the
            # pause between attempts (the owner may be between lock and listen).
            if self._lock.tryLock(wait_ms):
                self._listen()
                return True
            if self._ask_owner_to_activate():
                return False
            if time.monotonic() >= deadline:
                break
            wait_ms = 200
        pid = self._lock.getLockInfo()[0]  # (pid, hostname, app name)
        how = f"Close it (or end process {pid} in the task manager)" if pid else "Close it"
        raise AlreadyRunningError(
            f"Hearth is already running but does not respond. {how}, then start Hearth again.",
            detail=f"lock {self.data_dir / LOCK_NAME}, server {self.name}",
        )

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lock.isLocked():
            self._lock.unlock()

    # --- the running Hearth ------------------------------------------------------------
    def _listen(self) -> None:
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        # We hold the lock, so a socket by this name is left over from a crash.
        QLocalServer.removeServer(self.name)
        if not server.listen(self.name):
            # Hearth still runs fine; only a second launch cannot bring it forward.
            log.warning("single-instance server %s: %s", self.name, server.errorString())
            return
        server.newConnection.connect(self._on_new_connection)
        self._server = server
        log.info("single-instance server listening as %s", self.name)

    @Slot()
    def _on_new_connection(self) -> None:
        server = self._server
        while server is not None and server.hasPendingConnections():
            socket = server.nextPendingConnection()
            socket.setParent(self)
            socket.readyRead.connect(self._on_ready_read)
            socket.disconnected.connect(socket.deleteLater)
            socket.write(f"pid {os.getpid()}\n".encode())

    @Slot()
    def _on_ready_read(self) -> None:
        socket = self.sender()
        if not isinstance(socket, QLocalSocket) or not socket.canReadLine():
            return
        words = bytes(socket.readLine().data()).decode("utf-8", "replace").split()
        if words[:1] != ["activate"]:
            log.warning("single-instance server: unexpected request %r", words[:1])
            socket.disconnectFromServer()
            return
        if len(words) > 1:
            # Wayland lets a window take focus only with the token the launcher
            # gave the second process; Qt's xdg-shell plugin reads it from here.
            os.environ["XDG_ACTIVATION_TOKEN"] = words[1]
        log.info("a second launch asked this Hearth to come forward")
        self.activation_requested.emit()
        socket.write(b"ok\n")
        socket.flush()
        socket.disconnectFromServer()

    # --- a second launch ------------------------------------------------------------------
    def _ask_owner_to_activate(self) -> bool:
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        try:
            if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
                return False
            hello = _read_line(socket)
            if not hello.startswith("pid "):
                return False
            _allow_foreground(hello)
            token = os.environ.get("XDG_ACTIVATION_TOKEN", "").strip()
            socket.write(f"activate {token}".strip().encode() + b"\n")
            socket.waitForBytesWritten(ANSWER_TIMEOUT_MS)
            return _read_line(socket) == "ok"
        finally:
            socket.abort()


def _read_line(socket: QLocalSocket) -> str:
    while not socket.canReadLine():
        if not socket.waitForReadyRead(ANSWER_TIMEOUT_MS):
            return ""
    return bytes(socket.readLine().data()).decode("utf-8", "replace").strip()


def _allow_foreground(hello: str) -> None:
    """Windows lets only the foreground process (this one, just started by the
    person) hand focus to another; give it to the running Hearth (``pid <n>``)."""
    if sys.platform != "win32":
        return
    try:
        pid = int(hello.split()[1])
    except (IndexError, ValueError):
        return
    import ctypes

    ctypes.windll.user32.AllowSetForegroundWindow(pid)
