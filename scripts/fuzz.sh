#!/usr/bin/env bash
# Fuzzing and sanitizers (docs/reliability.md, "Fuzzing"): installs what is missing, builds the
# library, the io/data/clip/core tests and the libFuzzer targets of fuzz/ with Clang under
# AddressSanitizer + UndefinedBehaviorSanitizer into build-fuzz/, runs those tests, then every
# fuzz target (or the ones named) for SECONDS each from the seeds the build wrote, and prints per
# target the executions, the final coverage (cov/ft) and whether it found anything.
#
#   bash scripts/fuzz.sh                   # smoke: 15 s per target (a few minutes with the build)
#   bash scripts/fuzz.sh 600 safetensors   # one target for 10 minutes
#
# Environment: CLPROMPT_FUZZ_SECONDS (default 15), CLPROMPT_FUZZ_SEED (libFuzzer's -seed; 0, the
# default, is random; CI fixes it so that a smoke explores the same inputs each time), CLPROMPT_FUZZ_JOBS (targets run at once,
# default nproc), CLPROMPT_FUZZ_SKIP_TESTS=1 (fuzz only), CLPROMPT_BUILD_DIR (default build-fuzz).
# Findings (crash-*, leak-*, timeout-*, oom-* inputs) go to build-fuzz/fuzz-findings/ (each
# run replaces the findings of the targets it runs), the
# corpus each target grows to build-fuzz/fuzz-corpus/<target>/; the exit status is non-zero when
# a test fails or a target finds anything.
CLPROMPT_BUILD_DIR=${CLPROMPT_BUILD_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build-fuzz}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# libFuzzer and the sanitizer runtimes: clang, and Debian's compiler-rt (libclang_rt.fuzzer-x86_64.a).
CLPROMPT_PACKAGES+=(clang libclang-rt-14-dev)

seconds=${1:-${CLPROMPT_FUZZ_SECONDS:-15}}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
# The cores, not $OMP_NUM_THREADS (which nproc would report, and which this script sets to 1).
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
jobs=${CLPROMPT_FUZZ_JOBS:-$cores}

clprompt_install_packages
# Release code (what users run) with line tables for symbolised reports.
clprompt_configure -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS=-gline-tables-only \
  -DCLPROMPT_SANITIZE=address,undefined -DCLPROMPT_BUILD_FUZZERS=ON \
  -DCLPROMPT_BUILD_EXAMPLES=OFF -DCLPROMPT_BUILD_BENCHMARKS=OFF "-DCLPROMPT_TEST_AREAS=io;data;clip;core"
clprompt_build

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export OMP_NUM_THREADS=1
status=0

if [[ ${CLPROMPT_FUZZ_SKIP_TESTS:-0} != 1 ]]; then
  echo "== unit tests (io, data, clip, core) under ASan + UBSan"
  # The CLI runs, package and compile-fail tests are not unit tests of these folders (and
  # the package tests build without the sanitizers' runtime).
  (cd "$CLPROMPT_BUILD_DIR" && ctest --output-on-failure --parallel "$cores" --timeout 900 \
     -E '^(cli|package|compile_fail|layers)\.') || status=1
fi

targets=("$@")
if ((${#targets[@]} == 0)); then
  for binary in "$CLPROMPT_BUILD_DIR"/bin/fuzz/*_fuzzer; do targets+=("$(basename "$binary" _fuzzer)"); done
fi
seeds=$CLPROMPT_BUILD_DIR/fuzz-seeds
logs=$CLPROMPT_BUILD_DIR/fuzz-logs
findings=$CLPROMPT_BUILD_DIR/fuzz-findings
mkdir -p "$logs" "$findings"
# The targets write their inputs to files here (fuzz/fuzz_input.hpp); removed at the end.
scratch_base=/dev/shm
[[ -d $scratch_base && -w $scratch_base ]] || scratch_base=${TMPDIR:-/tmp}
export CLPROMPT_FUZZ_SCRATCH=$(mktemp -d "$scratch_base/clprompt-fuzz.XXXXXX")
trap 'rm -rf "$CLPROMPT_FUZZ_SCRATCH"' EXIT

run_target() {
  local target=$1 binary=$CLPROMPT_BUILD_DIR/bin/fuzz/$1_fuzzer corpus=$CLPROMPT_BUILD_DIR/fuzz-corpus/$1
  [[ -x $binary && -d $seeds/$target ]] || { echo "no fuzz target '$target' (or no seeds) in $CLPROMPT_BUILD_DIR" > "$logs/$target.log"; return 1; }
  mkdir -p "$corpus"
  rm -f "$findings/$target"-*  # this run's findings only
  # -timeout: one input running 10 s is a hang; -rss_limit_mb also bounds each allocation.
  "$binary" -max_total_time="$seconds" -seed="${CLPROMPT_FUZZ_SEED:-0}" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$findings/$target-" "$corpus" "$seeds/$target" > "$logs/$target.log" 2>&1
}

echo "== fuzzing ${targets[*]}: $seconds s each, $jobs at a time (logs: $logs)"
for target in "${targets[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
  { run_target "$target" && code=0 || code=$?; echo "$code" > "$logs/$target.status"; } &
done
wait

printf '%-16s %10s %12s %8s %8s  %s\n' target seconds executions cov ft result
for target in "${targets[@]}"; do
  log=$logs/$target.log
  exit_status=$(cat "$logs/$target.status")
  result=ok
  ((exit_status == 0)) || result="FAILED (exit $exit_status)"
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  read -r cov ft < <(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | awk '{print $2, $4}') || true
  found=$(ls "$findings" | grep -c "^$target-" || true)
  ((found == 0)) || result="$result, $found finding(s) in $findings"
  [[ $result == ok ]] || status=1
  printf '%-16s %10s %12s %8s %8s  %s\n' "$target" "$seconds" "${executions:-?}" "${cov:-?}" "${ft:-?}" "$result"
  [[ $result == ok ]] || grep -m3 -E 'ERROR|runtime error|clprompt fuzz finding|terminate|deadly' "$log" | sed 's/^/    /' || true
done
exit $status
