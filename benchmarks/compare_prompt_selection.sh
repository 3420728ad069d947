#!/usr/bin/env bash
# Prompt selection + assembly: the C++ selectors (bench_prompt_selection) next to the naive
# per-sample C++ versions and a plain PyTorch implementation (python/prompt_selection.py, run
# with Debian's python3-torch), on the same batch sizes and widths, with the same thread count.
#
#   bash benchmarks/compare_prompt_selection.sh [build-dir]     (default: build)
#   THREADS=2 MIN_TIME=0.5 bash benchmarks/compare_prompt_selection.sh /tmp/build
#
# Prints one Markdown table: time per call (µs) of each variant, PyTorch / C++ speed ratio, and
# the C++ implementation's rate (GFLOP/s for CODA and STAR, GB/s for the memory-bound L2P and DualPrompt
# gathers; the work model is in prompt_selection.cpp). Timings on a machine that is busy with
# something else (e.g. a compiler) are meaningless: run it on an idle one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
bench="$build/bin/bench_prompt_selection"
python="${PYTHON:-/usr/bin/python3}"
threads="${THREADS:-1}"
min_time="${MIN_TIME:-0.3}"
[[ -x "$bench" ]] || { echo "no $bench: build the target bench_prompt_selection (-DCLPROMPT_BUILD_BENCHMARKS=ON)" >&2; exit 1; }
"$python" -c "import torch" 2>/dev/null || { echo "$python has no torch: apt-get install python3-torch" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "threads: $threads, min time per measurement: ${min_time}s" >&2
OMP_NUM_THREADS="$threads" "$bench" --benchmark_min_time="$min_time" --benchmark_format=json \
  --benchmark_out="$work/cpp.json" --benchmark_out_format=json >/dev/null
OMP_NUM_THREADS="$threads" "$python" "$here/python/prompt_selection.py" --min-time "$min_time" >"$work/py.jsonl"

"$python" - "$work/cpp.json" "$work/py.jsonl" "$threads" <<'EOF'
import json, re, sys
cpp_file, py_file, threads = sys.argv[1:4]
cpp = {}
for b in json.load(open(cpp_file))["benchmarks"]:
    m = re.match(r"(\w+)/(\w+)/B:(\d+)/D:(\d+)", b["name"])
    if not m or "error_occurred" in b and b["error_occurred"]:
        continue
    sel, variant, B, D = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    us = b["real_time"] * {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b["time_unit"]]
    cpp[(sel, variant, B, D)] = (us, b.get("GFLOP", 0.0), b.get("GB", 0.0))
py = {}
for line in open(py_file):
    r = json.loads(line)
    py[(r["selector"], r["B"], r["D"])] = r["us"]

print(f"threads {threads}; times in µs per select() call (eval, task 4 of 10, default options)\n")
print("| selector | D | B | C++ | C++ naive | C++ einsum | PyTorch | PyTorch (C++ algorithm) | PyTorch / C++ | C++ rate |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
fmt = lambda x: "" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.1f}")
for sel in ("l2p", "dual", "coda", "star"):
    for D in (192, 768):
        for B in (1, 8, 32, 128, 256):
            impl = cpp.get((sel, "impl", B, D))
            if impl is None:
                continue
            naive = cpp.get((sel, "naive", B, D))
            einsum = cpp.get((sel, "einsum", B, D))
            p = py.get((sel, B, D))
            p_mm = py.get((sel + "_mm", B, D))
            rate = f"{impl[1]:.1f} GFLOP/s" if sel in ("coda", "star") else f"{impl[2]:.1f} GB/s"
            ratio = f"{p / impl[0]:.1f}x" if p else ""
            print(f"| {sel} | {D} | {B} | {fmt(impl[0])} | {fmt(naive and naive[0])} | {fmt(einsum and einsum[0])} "
                  f"| {fmt(p)} | {fmt(p_mm)} | {ratio} | {rate} |")
EOF
