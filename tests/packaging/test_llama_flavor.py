"""Only a portable llama.cpp is packaged: packaging/llama_flavor.py and build-deb.sh's refusal.

CI has no portable llama.cpp wheel (building one takes ~30 minutes), so nothing
here needs one: the detection runs on the dev venv's real build (GGML_NATIVE)
and on wheels and frozen folders laid out like the real portable ones (the
file names below are those of llama-cpp-python 0.3.36 built by
packaging/llama-build.sh cpu). The portable path end to end is checked by hand
(packaging/README.md, "Portable llama.cpp, verified by hand").
"""

from __future__ import annotations

import os
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT, packaging_module

flavor = packaging_module("llama_flavor")

VARIANTS = [
    "alderlake", "cannonlake", "cascadelake", "cooperlake", "haswell", "icelake", "ivybridge",
    "piledriver", "sandybridge", "sapphirerapids", "skylakex", "sse42", "x64", "zen4",
]  # fmt: skip
SHARED = ["libggml-base.so", "libggml.so", "libllama.so", "libmtmd.so"]


def cmake_config(native: str, backend_dl: str, all_variants: str) -> str:
    """The lines of ggml-config.cmake that matter, as CMake writes them."""
    return (
        f'set(GGML_BACKEND_DL "{backend_dl}")\n'
        f'set(GGML_CPU_ALL_VARIANTS "{all_variants}")\n'
        f'set(GGML_NATIVE "{native}")\n'
        'set(GGML_NATIVE_DEFAULT "ON")\n'
    )


def make_wheel(
    path: Path, *, config: str | None, variants: list[str], linked_cpu: bool = False
) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("llama_cpp/__init__.py", "")
        for lib in SHARED + (["libggml-cpu.so"] if linked_cpu else []):
            z.writestr(f"llama_cpp/lib/{lib}", "")
            z.writestr(f"llama_cpp/lib/{lib}.0", "")
        for variant in variants:
            z.writestr(f"bin/libggml-cpu-{variant}.so", "")
        if config is not None:
            z.writestr(flavor.CMAKE_CONFIG, config)
    return path


def portable_wheel(folder: Path) -> Path:
    return make_wheel(
        folder / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl",
        config=cmake_config("OFF", "ON", "ON"),
        variants=VARIANTS,
    )


def native_wheel(folder: Path) -> Path:
    """Laid out like pip's default build, with the dev venv's own ggml-config.cmake."""
    dev = flavor.from_installed()
    assert dev.flags.get("GGML_NATIVE") == "ON", "expected the dev venv to be a GGML_NATIVE build"
    return make_wheel(
        folder / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl",
        config=cmake_config("ON", "OFF", "OFF"),
        variants=[],
        linked_cpu=True,
    )


def test_the_dev_venv_build_is_recognised_as_native() -> None:
    dev = flavor.from_installed()
    assert not dev.portable
    problems = " | ".join(dev.problems())
    assert "GGML_NATIVE=ON" in problems
    assert "single CPU backend linked in" in problems
    assert dev.summary().startswith("NOT portable llama.cpp (llama_cpp_python ")


def test_a_portable_wheel_passes(tmp_path: Path) -> None:
    found = flavor.from_wheel(portable_wheel(tmp_path))
    assert found.portable, found.problems()
    expected = {"GGML_NATIVE": "OFF", "GGML_BACKEND_DL": "ON", "GGML_CPU_ALL_VARIANTS": "ON"}
    assert found.flags == expected
    assert found.variants == sorted(VARIANTS)
    assert found.summary().startswith("portable llama.cpp (")


@pytest.mark.parametrize(
    ("config", "variants", "linked_cpu", "why"),
    [
        (cmake_config("ON", "OFF", "OFF"), [], True, "GGML_NATIVE=ON"),  # pip's default
        # GGML_BACKEND_DL with GGML_NATIVE: loadable, but one CPU library for one CPU
        (cmake_config("ON", "ON", "OFF"), ["native"], False, "GGML_NATIVE=ON"),
        (cmake_config("OFF", "OFF", "OFF"), [], True, "without GGML_BACKEND_DL=ON"),
        (None, VARIANTS, False, "build flags cannot be checked"),  # no proof: refused
        (cmake_config("OFF", "ON", "ON"), [], False, "no per-CPU backend libraries"),
    ],
    ids=["native", "native-dl", "generic-linked", "no-cmake-file", "variants-missing"],
)
def test_anything_not_shown_portable_is_refused(
    tmp_path: Path, config: str | None, variants: list[str], linked_cpu: bool, why: str
) -> None:
    wheel = make_wheel(tmp_path / "x.whl", config=config, variants=variants, linked_cpu=linked_cpu)
    found = flavor.from_wheel(wheel)
    assert not found.portable
    assert why in " | ".join(found.problems())
    assert flavor.main(["--wheel", str(wheel)]) == 1


def test_a_frozen_folder_is_judged_by_its_llama_cpp_lib(tmp_path: Path) -> None:
    lib = tmp_path / "hearth" / "_internal" / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    for name in SHARED + [f"libggml-cpu-{v}.so" for v in VARIANTS]:
        (lib / name).touch()
    assert flavor.from_frozen(tmp_path / "hearth").portable
    (lib / "libggml-cpu.so.0").touch()  # what the dev build's freeze has
    found = flavor.from_frozen(tmp_path / "hearth")
    assert not found.portable
    assert "single CPU backend linked in (_internal/llama_cpp/lib/libggml-cpu.so.0)" in " | ".join(
        found.problems()
    )


def build_deb(*args: str, cache: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "packaging" / "linux" / "build-deb.sh"), *args],
        cwd=ROOT,
        env={**os.environ, "HEARTH_BUILD_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, time.monotonic() - started


def test_build_deb_refuses_a_native_llama_before_building_anything(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    result, seconds = build_deb(
        "--llama-wheel", str(native_wheel(tmp_path)), "--out", str(out), cache=cache
    )
    assert result.returncode == 1, result.stderr
    assert "build-deb: refusing to package NOT portable llama.cpp" in result.stderr
    assert "GGML_NATIVE=ON" in result.stderr
    assert "bash packaging/llama-build.sh cpu" in result.stderr and "--dev-llama" in result.stderr
    # Before any venv, pip or PyInstaller: nothing cached, nothing packed, in seconds.
    assert not cache.exists() and not out.exists()
    assert "PyInstaller" not in result.stderr and "installing" not in result.stderr
    assert seconds < 30


def test_build_deb_takes_dev_llama_or_a_wheel_not_both(tmp_path: Path) -> None:
    result, _ = build_deb(
        "--dev-llama", "--llama-wheel", str(portable_wheel(tmp_path)), cache=tmp_path / "cache"
    )
    assert result.returncode == 2
    assert "--dev-llama packages .venv's llama.cpp" in result.stderr
