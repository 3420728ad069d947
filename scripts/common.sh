# Shared by scripts/demo.sh and scripts/test.sh: installs missing Debian packages, configures
# and builds. Source it; do not run it.
set -euo pipefail

CLPROMPT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLPROMPT_BUILD_DIR=${CLPROMPT_BUILD_DIR:-$CLPROMPT_ROOT/build}

# Everything clprompt needs, from Debian 12 (fonts-dejavu-core: the glyph tests' fonts;
# scripts/pretrain.sh adds the pinned pre-training fonts). libopenblas0-openmp replaces the
# reference BLAS (~3 GFLOP/s) that LibTorch's sgemm calls otherwise (~100 GFLOP/s with OpenBLAS).
# python3-torch (the same LibTorch 1.13) runs the Python ports of the references' steps that
# benchmarks/python/compare_step.py times clprompt against; CTest checks that they compute what
# clprompt computes. libgloo-dev: the Gloo headers that LibTorch's c10d ProcessGroupGloo.hpp includes
# (data-parallel runs); iproute2: `ip netns` for the two-host data-parallel test.
CLPROMPT_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libtorch-dev libopenblas0-openmp
  libeigen3-dev libfmt-dev nlohmann-json3-dev zlib1g-dev libstb-dev
  libgloo-dev iproute2
  catch2 libbenchmark-dev
  dataset-fashion-mnist
  fonts-dejavu-core
  python3-torch
)

# Debian 12's OpenBLAS (0.3.21) does not recognise recent Xeons (e.g. Sapphire Rapids, reported
# as "Intel(R) Xeon(R) Processor") and falls back to its SSE3 kernels: 2.5x slower here (the
# embedded ViT's eval forward, 96 vs 236 images/s on 2 cores). Name the kernel family the CPU has
# unless the user chose one.
if [[ -z ${OPENBLAS_CORETYPE:-} && -r /proc/cpuinfo ]]; then
  if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SKYLAKEX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=HASWELL
  fi
fi

clprompt_install_packages() {
  local missing=() p
  for p in "${CLPROMPT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "clprompt: installing missing Debian packages: ${missing[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

clprompt_configure() {
  cmake -S "$CLPROMPT_ROOT" -B "$CLPROMPT_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
}

clprompt_build() {
  cmake --build "$CLPROMPT_BUILD_DIR" --parallel "$(nproc)" "$@"
}
