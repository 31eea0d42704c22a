"""Start Hearth from its installed menu entry under Xvfb and take a screenshot.

    .venv/bin/python packaging/linux/xvfb_screenshot.py [--root /] [--out shot.png]

``--root`` is where the .deb is installed (``/`` after ``sudo apt install
./hearth_*.deb``, or a folder made with ``dpkg-deb -x``). The app runs on the
real X11 (xcb) platform with its own empty HOME; the script waits until the
starter model is loaded, grabs the screen with Qt, prints the window's
WM_CLASS (which the menu entry's StartupWMClass must match) and the
libggml-cpu library the app mapped (which CPU variant ggml chose), and stops Hearth.
Needs Xvfb (apt-get install xvfb); xprop is optional.
"""

from __future__ import annotations

import argparse
import configparser
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()  # Xvfb writes its display number once it accepts clients
    if not number:
        raise SystemExit("Xvfb did not start")
    return xvfb, f":{number}"


def wait_for_log(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and text in log.read_text(encoding="utf-8", errors="replace")):
        if proc.poll() is not None:
            raise SystemExit(f"Hearth exited ({proc.returncode}) before: {text}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for: {text}")
        time.sleep(0.1)


def grab(display: str, out: Path) -> None:
    code = (
        "import sys\n"
        "from PySide6.QtGui import QGuiApplication\n"
        "app = QGuiApplication(sys.argv[:1])\n"
        "ok = app.primaryScreen().grabWindow(0).save(sys.argv[1])\n"
        "sys.exit(0 if ok else 1)\n"
    )
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True, timeout=60)


def wm_classes(display: str) -> list[str]:
    if shutil.which("xprop") is None or shutil.which("xdotool") is None:
        return []
    env = {**os.environ, "DISPLAY": display}
    ids = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", "Hearth"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return [
        subprocess.run(
            ["xprop", "-id", wid, "WM_CLASS"], env=env, capture_output=True, text=True, check=False
        ).stdout.strip()
        for wid in ids
    ]


def ggml_cpu_libraries(pid: int) -> list[str]:
    """The llama.cpp CPU libraries the app has mapped: which variant ggml chose."""
    maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8")
    return sorted({line.split()[-1] for line in maps.splitlines() if "libggml-cpu" in line})


def say(display: str, text: str, db: Path, timeout: float = 300) -> None:
    """Type ``text`` into Hearth's composer, press Enter, wait until the reply is saved."""
    env = {**os.environ, "DISPLAY": display}
    (wid,) = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", "Hearth"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[:1]
    subprocess.run(["xdotool", "windowfocus", "--sync", wid], env=env, check=True)
    subprocess.run(["xdotool", "type", "--delay", "20", text], env=env, check=True)
    subprocess.run(["xdotool", "key", "Return"], env=env, check=True)
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM messages WHERE role = 'assistant' AND status != 'streaming'"
    while True:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            if con.execute(query).fetchone()[0]:
                return
        if time.monotonic() > deadline:
            raise SystemExit("no reply was saved")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/"), help="where the .deb is installed")
    parser.add_argument("--out", type=Path, default=Path("hearth-xvfb.png"))
    parser.add_argument("--say", help="send this message first (needs xdotool)")
    args = parser.parse_args()
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.read(args.root / "usr" / "share" / "applications" / "hearth.desktop")
    command = [w for w in shlex.split(desktop["Desktop Entry"]["Exec"]) if not w.startswith("%")]
    xvfb, display = start_xvfb()
    with tempfile.TemporaryDirectory(prefix="hearth-home-") as home:
        env = {
            "HOME": home,
            "PATH": f"{args.root / 'usr' / 'bin'}:/usr/bin:/bin",
            "DISPLAY": display,
            "LANG": "C.UTF-8",
        }
        log = Path(home) / ".local" / "state" / "Hearth" / "log" / "hearth.log"
        app = subprocess.Popen(command, env=env)
        try:
            wait_for_log(log, "window shown", app, 120)
            wait_for_log(log, "loaded SmolLM2", app, 300)
            if args.say:
                say(
                    display, args.say, Path(home) / ".local" / "share" / "Hearth" / "hearth.sqlite3"
                )
            time.sleep(1.0)  # the view repaints on a timer: let the last frame land
            grab(display, args.out)
            for line in wm_classes(display):
                print(line)
            for lib in ggml_cpu_libraries(app.pid):
                print(f"mapped: {lib}")
            print(next(line for line in log.read_text().splitlines() if "window shown" in line))
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=60)
            xvfb.terminate()
            xvfb.wait(timeout=30)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
