"""Helpers for hearth.spec: third-party license notices and Windows version info.

Kept out of the spec so they can be read (and linted) as ordinary Python. Runs
inside PyInstaller's build process only; the app never imports this.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_LICENSE_NAME = re.compile(r"^(licen[cs]e|copying|notice|authors)", re.IGNORECASE)
# Hearth's own packages, shown with Hearth's license in the About box.
_OWN = {"app", "ui", "engine", "hearth_main"}
# Next to Hearth's own license texts, where the About box looks.
DEST = "resources/licenses/third-party"


def _license_of(dist: md.Distribution) -> str:
    meta: Any = dist.metadata  # an email.message.Message underneath
    expression = meta.get("License-Expression")
    if expression:
        return str(expression)
    text = meta.get("License") or ""
    if text and len(text) < 80 and "\n" not in text:
        return str(text)
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if "License" in c]
    return ", ".join(classifiers) or "see the license files"


def _license_files(dist: md.Distribution) -> list[Path]:
    found = []
    for entry in dist.files or []:
        parts = entry.parts
        in_dist_info = parts[0].endswith(".dist-info")
        if in_dist_info and ("licenses" in parts[1:-1] or _LICENSE_NAME.match(parts[-1])):
            path = Path(str(entry.locate()))
            if path.is_file():
                found.append(path)
    return found


def collect_notices(toc_entries: Iterable[tuple[str, str, str]], workdir: Path) -> list[Any]:
    """License files of every distribution whose code is in the bundle, plus a summary.

    ``toc_entries`` are the Analysis' modules and binaries; returns DATA TOC
    entries placing the files under ``DEST/<distribution>/`` and a
    ``DEST/THIRD-PARTY.txt`` that lists name, version and license of each.
    """
    owners = md.packages_distributions()
    names: set[str] = set()
    uses_stdlib = False
    for dest, _src, typecode in toc_entries:
        top = re.split(r"[./\\]", dest, maxsplit=1)[0]
        if top in _OWN:
            continue
        if typecode == "PYMODULE" and top not in owners:
            uses_stdlib = True
        names.update(owners.get(top, []))
    out = workdir / "notices"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    toc: list[Any] = []
    lines = [
        "Third-party software bundled with Hearth",
        "",
        "Each entry: name, version, license. Their license files are in the folder",
        "of the same name next to this file. Hearth's own license and the texts of",
        "the LGPL-3.0 (Qt), MIT (llama.cpp) and Apache-2.0 (SmolLM2) are in",
        "the folder above this one.",
        "",
    ]
    if uses_stdlib:
        python_license = Path(sysconfig.get_path("stdlib")) / "LICENSE.txt"
        lines.append(f"Python {sysconfig.get_python_version()}  (PSF-2.0)")
        if python_license.is_file():
            toc.append((f"{DEST}/Python/LICENSE.txt", str(python_license), "DATA"))
    for name in sorted(names, key=str.lower):
        if name.lower() == "hearth":
            continue
        dist = md.distribution(name)
        lines.append(f"{dist.metadata['Name']} {dist.version}  ({_license_of(dist)})")
        for path in _license_files(dist):
            toc.append((f"{DEST}/{dist.metadata['Name']}/{path.name}", str(path), "DATA"))
    summary = out / "THIRD-PARTY.txt"
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    toc.append((f"{DEST}/THIRD-PARTY.txt", str(summary), "DATA"))
    return toc


def without_gtk_theme(binaries: list[Any]) -> list[Any]:
    """``binaries`` without Qt's GTK 3 platform theme and the libraries only it brought in.

    Hearth draws its own Fusion style and palettes (ui/theme.py); the GTK theme
    adds nothing but trouble: on a GNOME desktop Qt loads it, it loads the
    system's libgtk-3, and that runs against the glib, cairo and pango bundled
    from the build machine, which fails when their versions differ. Linux only
    (elsewhere the plugin does not exist).
    """
    from PyInstaller.depend.bindepend import get_imports

    def is_theme(entry: Any) -> bool:
        return "platformthemes" in entry[0] and "gtk3" in Path(entry[0]).name

    dropped = [e for e in binaries if is_theme(e)]
    kept = [e for e in binaries if not is_theme(e)]
    if not dropped:
        return binaries
    # ldd lists the whole closure, so a library that anything else reaches stays.
    needed_by_theme = {name for e in dropped for name, _ in get_imports(e[1])}
    needed_by_rest: set[str] = set()
    for entry in kept:
        own = Path(entry[0]).name in needed_by_theme  # part of the theme's closure itself
        if not own and entry[2] in ("BINARY", "EXTENSION") and Path(entry[1]).is_file():
            needed_by_rest.update(name for name, _ in get_imports(entry[1]))
    only_theme = needed_by_theme - needed_by_rest
    return [e for e in kept if Path(e[0]).name not in only_theme]


def windows_version_info(version: str, company: str) -> Any:
    """The version resource Windows shows in a file's Properties and in Task Manager."""
    from PyInstaller.utils.win32 import versioninfo as vi

    numbers = [int(n) for n in re.findall(r"\d+", version)[:4]]
    quad = tuple(numbers + [0] * (4 - len(numbers)))
    strings = [
        vi.StringStruct("CompanyName", company),
        vi.StringStruct("FileDescription", "Hearth: private, offline chat"),
        vi.StringStruct("FileVersion", version),
        vi.StringStruct("InternalName", "Hearth"),
        vi.StringStruct("OriginalFilename", "Hearth.exe"),
        vi.StringStruct("ProductName", "Hearth"),
        vi.StringStruct("ProductVersion", version),
    ]
    return vi.VSVersionInfo(
        ffi=vi.FixedFileInfo(filevers=quad, prodvers=quad),
        kids=[
            vi.StringFileInfo([vi.StringTable("040904B0", strings)]),
            vi.VarFileInfo([vi.VarStruct("Translation", [0x0409, 1200])]),
        ],
    )
