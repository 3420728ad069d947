#!/usr/bin/env bash
# The second CI lane: clprompt built against a current LibTorch from PyPI (the CUDA build of
# torch 2.11.0, the version the GPU machines run; it builds and runs on a machine without a GPU),
# then the whole test suite and the CPU smoke of scripts/gpu-check.sh. The venv (torch + timm,
# ~5 GB) lives in build-torch2/venv and is reused; the build goes to build-torch2/.
#   bash scripts/test-torch2.sh
#   CLPROMPT_TORCH2_VERSION=2.15.0 bash scripts/test-torch2.sh     # another torch
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CLPROMPT_PACKAGES+=(python3-venv)
clprompt_install_packages

version=${CLPROMPT_TORCH2_VERSION:-2.11.0}
venv=${CLPROMPT_TORCH2_VENV:-$CLPROMPT_ROOT/build-torch2/venv}
if [[ ! -x $venv/bin/python ]]; then
  /usr/bin/python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch, timm, sys; sys.exit(torch.__version__.split('+')[0] != '$version')" 2>/dev/null; then
  echo "clprompt: installing torch==$version and timm into $venv (PyPI)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==$version" "timm==1.0.31"
fi
# The torch package folder itself as the prefix: with .../share/cmake, torch's config can pick
# Debian's libc10 next to pip's libtorch where both are installed.
prefix=$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')

CLPROMPT_BUILD_DIR=${CLPROMPT_TORCH2_BUILD_DIR:-$CLPROMPT_ROOT/build-torch2}
# TORCH_CUDA_ARCH_LIST: without a GPU, torch's CMake config would otherwise probe one with nvcc
# in C++20 mode, which CMake 3.25 cannot pass to nvcc.
# CLPROMPT_COMPARE_PYTHON: the parity test of benchmarks/python/compare_step.py runs the venv's torch.
clprompt_configure -DCMAKE_PREFIX_PATH="$prefix" -DTORCH_CUDA_ARCH_LIST=9.0 -DCLPROMPT_COMPARE_PYTHON="$venv/bin/python"
clprompt_build
cd "$CLPROMPT_BUILD_DIR"
# The resume and data-parallel tests with two methods here (Adam and SGD states through this
# LibTorch's serialisation and c10d); lane 1 runs them for every method.
CLPROMPT_RESUME_METHODS=${CLPROMPT_RESUME_METHODS:-"l2p slca"} CLPROMPT_DP_METHODS=${CLPROMPT_DP_METHODS:-"l2p slca"} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} \
  ctest --output-on-failure --parallel "$(nproc)" --timeout 900
cd "$CLPROMPT_ROOT"
CLPROMPT_GPU_CHECK_PYTHON="$venv/bin/python" CLPROMPT_BUILD_DIR="$CLPROMPT_BUILD_DIR" bash scripts/gpu-check.sh --cpu
