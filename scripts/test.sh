#!/usr/bin/env bash
# README command 2: installs what is missing, builds everything (library, CLI, tests,
# benchmarks) and runs the test suite with CTest.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
clprompt_install_packages
clprompt_configure
clprompt_build
cd "$CLPROMPT_BUILD_DIR"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} ctest --output-on-failure --parallel "$(nproc)" --timeout 900
