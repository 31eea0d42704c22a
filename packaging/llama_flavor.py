"""Is this llama.cpp fit to ship? Read how a llama-cpp-python build was compiled.

    python packaging/llama_flavor.py --wheel WHEEL      a wheel file, before installing it
    python packaging/llama_flavor.py --installed        the llama-cpp-python of this Python
    python packaging/llama_flavor.py --frozen DIR       a frozen Hearth folder (layout only)

Prints one line and exits 0 when the build is portable (GGML_NATIVE off, CPU
backends as one loadable library per CPU generation), 1 when it is not, with
the reasons. Standard library only: build-deb.sh runs it with whichever Python
it has, before anything slow happens.

Two kinds of evidence, both required where both exist:

- **The build flags.** A llama-cpp-python wheel installs llama.cpp's CMake
  package file, ``lib/cmake/ggml/ggml-config.cmake``, which records every
  ``GGML_*`` option it was configured with: ``set(GGML_NATIVE "ON")``. That is
  the authority on ``GGML_NATIVE`` (pip's default build has it ON).
- **The layout.** A ``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS`` build has
  ``libggml-cpu-<variant>.so`` libraries (x64, sse42, haswell, zen4, ...) that
  ggml chooses from at run time, and no ``libggml-cpu.so`` linked to libggml.
  A frozen folder has no CMake file, so the layout is all it can show.

Anything that cannot be shown portable is refused: a missing CMake file counts
as "not shown".
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

CMAKE_CONFIG = "lib/cmake/ggml/ggml-config.cmake"
FLAGS = ("GGML_NATIVE", "GGML_BACKEND_DL", "GGML_CPU_ALL_VARIANTS")
# libggml-cpu-haswell.so (Linux), ggml-cpu-haswell.dll (Windows), libggml-cpu-*.dylib (macOS)
_VARIANT = re.compile(r"^(?:lib)?ggml-cpu-([A-Za-z0-9_]+)\.(?:so|dll|dylib)$")
# libggml-cpu.so, libggml-cpu.so.0, ggml-cpu.dll: one CPU backend, for one kind of CPU
_SINGLE_CPU = re.compile(r"^(?:lib)?ggml-cpu\.(?:so|dll|dylib)(?:\.\d+)*$")
_SET = re.compile(r'^\s*set\(\s*(GGML_[A-Z0-9_]+)\s+"([^"]*)"\s*\)', re.MULTILINE)


@dataclass
class Flavor:
    """What one llama.cpp build shows about how it was compiled."""

    where: str
    flags: dict[str, str] = field(default_factory=dict)  # empty: no CMake file to read
    variants: list[str] = field(default_factory=list)  # libggml-cpu-<variant> names
    single_cpu: list[str] = field(default_factory=list)  # paths of a one-CPU backend
    layout_only: bool = False  # a frozen folder: there are no flags to read

    def problems(self) -> list[str]:
        """Why this build must not be shipped; empty when it may."""
        found = []
        if not self.layout_only:
            if not self.flags:
                found.append(f"no {CMAKE_CONFIG}, so its build flags cannot be checked")
            elif self.flags.get("GGML_NATIVE", "").upper() != "OFF":
                found.append(
                    f"built with GGML_NATIVE={self.flags.get('GGML_NATIVE') or '?'}: it runs "
                    "only on CPUs like the build machine's (SIGILL elsewhere)"
                )
            else:
                for flag in FLAGS[1:]:
                    if self.flags.get(flag, "").upper() != "ON":
                        found.append(f"built without {flag}=ON")
        if len(self.variants) < 2:
            found.append("no per-CPU backend libraries (libggml-cpu-<variant>)")
        if self.single_cpu:
            found.append(f"a single CPU backend linked in ({', '.join(self.single_cpu)})")
        return found

    @property
    def portable(self) -> bool:
        return not self.problems()

    def summary(self) -> str:
        flags = " ".join(f"{k}={self.flags[k]}" for k in FLAGS if k in self.flags)
        variants = ",".join(self.variants) or "none"
        text = f"{self.where}: {flags or 'flags unknown'}; cpu variants: {variants}"
        if self.portable:
            return f"portable llama.cpp ({text})"
        return f"NOT portable llama.cpp ({text}): " + "; ".join(self.problems())


def _from_files(where: str, names: Iterable[str], read_config: object) -> Flavor:
    flavor = Flavor(where)
    for name in names:
        path = PurePosixPath(name)
        if path.as_posix().endswith(CMAKE_CONFIG) and callable(read_config):
            flavor.flags = parse_cmake_config(read_config(name))
        if match := _VARIANT.match(path.name):
            flavor.variants.append(match.group(1))
        elif _SINGLE_CPU.match(path.name) and "llama_cpp" in path.parts:
            # the copy beside libllama; site-packages/lib/ holds a duplicate
            flavor.single_cpu.append(path.as_posix())
    flavor.variants.sort()
    return flavor


def parse_cmake_config(text: str) -> dict[str, str]:
    """The recorded values of the GGML_* options this cares about."""
    values = dict(_SET.findall(text))
    return {k: values[k] for k in FLAGS if k in values}


def from_wheel(wheel: Path) -> Flavor:
    with zipfile.ZipFile(wheel) as z:
        return _from_files(wheel.name, z.namelist(), lambda n: z.read(n).decode("utf-8", "replace"))


def from_installed(dist_name: str = "llama_cpp_python") -> Flavor:
    """The installed distribution, from its RECORD (wherever pip put each file)."""
    dist = md.distribution(dist_name)
    files = {str(f): f for f in dist.files or []}

    def read(name: str) -> str:
        return Path(str(files[name].locate())).read_text(encoding="utf-8", errors="replace")

    where = f"{dist_name} {dist.version} in {Path(str(dist.locate_file(''))).resolve()}"
    return _from_files(where, files, read)


def from_frozen(folder: Path) -> Flavor:
    """A frozen Hearth: what hearth.spec put into llama_cpp/lib (or a .app's Frameworks)."""
    libs = [p for p in folder.rglob("*ggml-cpu*") if "llama_cpp" in p.parts]
    names = [p.relative_to(folder).as_posix() for p in libs]
    flavor = _from_files(str(folder), names, None)
    flavor.layout_only = True
    return flavor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--wheel", type=Path, help="a llama_cpp_python-*.whl")
    which.add_argument("--installed", action="store_true", help="this Python's llama-cpp-python")
    which.add_argument("--frozen", type=Path, help="a frozen Hearth folder")
    args = parser.parse_args(argv)
    try:
        if args.wheel:
            flavor = from_wheel(args.wheel)
        elif args.frozen:
            flavor = from_frozen(args.frozen)
        else:
            flavor = from_installed()
    except (OSError, zipfile.BadZipFile, md.PackageNotFoundError) as exc:
        print(f"cannot inspect llama.cpp: {exc}", file=sys.stderr)
        return 2
    print(flavor.summary())
    return 0 if flavor.portable else 1


if __name__ == "__main__":
    sys.exit(main())
