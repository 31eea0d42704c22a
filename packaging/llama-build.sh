#!/usr/bin/env bash
# Build a redistributable llama-cpp-python wheel for Hearth's installers.
#
#   bash packaging/llama-build.sh [cpu|metal|cuda|vulkan] [--install]
#
# The target defaults to `metal` on Apple Silicon and `cpu` everywhere else.
# The wheel lands in dist/llama-wheels/<target>/ (packaging/linux/build-deb.sh
# takes the `cpu` one from there, or runs this); --install also puts it into
# .venv (for make-dmg.sh, which freezes .venv). Why these flags:
# packaging/llama-build.md. It compiles llama.cpp: about 10 minutes on 2 cores
# for a plain build, ~30 for `cpu` (one ggml-cpu library per CPU generation).
# CI does not run this; the dev .venv is built with the defaults (GGML_NATIVE).
# PYTHON=/path/to/python picks the Python whose pip builds the wheel.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
os="$(uname -s)"
arch="$(uname -m)"
target="${1:-}"
if [ -z "$target" ] || [ "$target" = --install ]; then
  if [ "$os" = Darwin ] && [ "$arch" = arm64 ]; then target=metal; else target=cpu; fi
else
  shift
fi
install=no
[ "${1:-}" = --install ] && install=yes

vpy="${PYTHON:-$here/.venv/bin/python}"
pin="$(sed -n 's/.*"\(llama-cpp-python==[^"]*\)".*/\1/p' pyproject.toml | head -n1)"
[ -n "$pin" ] || { echo "llama-build: no llama-cpp-python pin in pyproject.toml" >&2; exit 1; }

# Never GGML_NATIVE in anything shipped: it compiles for the build machine's CPU
# (-march=native) and the app dies with SIGILL on an older one.
args="-DGGML_NATIVE=OFF"
# One library per CPU generation (SSE4.2 ... AVX-512, or the Arm v8.x levels);
# ggml loads the best one for the CPU it runs on. Needs the backends as
# separate libraries (GGML_BACKEND_DL), which Hearth loads explicitly
# (engine: ggml_backend_load_all_from_path, see llama-build.md).
dynamic_cpu="-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
case "$target" in
  cpu) args="$args $dynamic_cpu" ;;
  metal)
    [ "$os" = Darwin ] || { echo "llama-build: metal builds only on macOS" >&2; exit 1; }
    # Apple Silicon has one CPU feature set; the GPU kernels are compiled into
    # the library so the .app needs no separate default.metallib.
    args="$args -DGGML_METAL=ON -DGGML_METAL_EMBED_LIBRARY=ON -DCMAKE_OSX_ARCHITECTURES=arm64"
    export MACOSX_DEPLOYMENT_TARGET=12.0
    ;;
  cuda)
    # libggml-cuda is one more dynamically loaded backend: without an NVIDIA
    # driver it fails to load and the CPU variants run. Architectures: Pascal
    # to Hopper; `real` where PTX for newer GPUs is not needed.
    args="$args $dynamic_cpu -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=61-virtual;70-virtual;75-real;80-real;86-real;89-real;90-virtual"
    ;;
  vulkan)
    # Needs the Vulkan SDK (glslc) to build; at run time only the GPU driver's loader.
    args="$args $dynamic_cpu -DGGML_VULKAN=ON"
    ;;
  *) echo "usage: bash packaging/llama-build.sh [cpu|metal|cuda|vulkan] [--install]" >&2; exit 2 ;;
esac
case "$os" in
  Darwin) [ "$target" = cpu ] && args="$args -DGGML_METAL=OFF" ;;
  *) ;;
esac

out="$here/dist/llama-wheels/$target"
src="$here/dist/llama-wheels/sdist"
mkdir -p "$out" "$src"
echo "llama-build: $pin, target $target" >&2
echo "llama-build: CMAKE_ARGS=$args" >&2
# The source archive first (pip's HTTP cache makes this free after one download),
# then a wheel from it with the wheel cache off: pip's cache is keyed by the
# source, not by CMAKE_ARGS, and would hand back the dev build.
"$vpy" -m pip download --quiet --no-deps --no-binary :all: "$pin" -d "$src"
newest() { find "$1" -maxdepth 1 -name "$2" -printf '%T@ %p\n' | sort -rn | head -n1 | cut -d' ' -f2-; }
sdist="$(newest "$src" "llama_cpp_python-${pin#*==}.tar.gz")"
CMAKE_ARGS="$args" FORCE_CMAKE=1 "$vpy" -m pip wheel --no-deps --no-cache-dir \
  "$sdist" -w "$out" 2>&1 | tail -n 5 >&2 || {
  echo "llama-build: the build failed; rerun with CMAKE_ARGS=\"$args\" pip wheel -v $sdist for the log" >&2
  exit 1
}
wheel="$(newest "$out" "llama_cpp_python-${pin#*==}-*.whl")"
echo "llama-build: built $wheel" >&2
if [ "$install" = yes ]; then
  "$vpy" -m pip install --quiet --no-deps --force-reinstall "$wheel"
  echo "llama-build: installed into $("$vpy" -c 'import sys; print(sys.prefix)')" >&2
fi
echo "$wheel"
