#!/usr/bin/env bash
# Data-parallel throughput on this machine (docs/benchmarks.md, "Data parallel"): one method on the
# embedded default (shipped ViT, Split Fashion-MNIST, the method's recipe at 1 epoch and batch 64)
# as 1 process x N threads and as N processes x 1 thread (`--nproc N`, Gloo on loopback), then the
# training and evaluation images/s and the time the gradient all-reduces took per step, from each
# run's results.json.
#
#   bash benchmarks/data_parallel.sh                    # l2p, N = the number of cores
#   METHOD=slca NPROC=2 bash benchmarks/data_parallel.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
CLPROMPT_PACKAGES+=(python3)
clprompt_install_packages
clprompt_configure
clprompt_build --target clprompt_cli
cd "$CLPROMPT_ROOT"

METHOD=${METHOD:-l2p}
NPROC=${NPROC:-$(nproc)}
OUT=${OUT:-build/bench-data-parallel}/$METHOD
CLI="$CLPROMPT_BUILD_DIR/bin/clprompt"
common=(--method "$METHOD" --overwrite --quiet --set save_checkpoint=false)

OMP_NUM_THREADS=$NPROC "$CLI" run "${common[@]}" --set threads="$NPROC" --out "$OUT/one-process" > /dev/null
OMP_NUM_THREADS=1 "$CLI" run "${common[@]}" --set threads=1 --nproc "$NPROC" --out "$OUT/processes" > /dev/null

python3 - "$OUT"/one-process/*/results.json "$OUT"/processes/*/results.json "$NPROC" <<'EOF'
import json, sys
one, many, n = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
def summary(r):
    tasks = r["tasks"]
    train_images = sum(t["train_images"] for t in tasks); train_s = sum(t["train_seconds"] for t in tasks)
    eval_images = sum(t["eval_images"] for t in tasks); eval_s = sum(t["eval_seconds"] for t in tasks)
    steps = sum(t.get("train_steps", 0) for t in tasks); reduce_s = sum(t.get("allreduce_seconds", 0) for t in tasks)
    return train_images / train_s, eval_images / eval_s, steps, 1000 * reduce_s / max(steps, 1), 100 * reduce_s / train_s, r
print(f"{one['method']} on the embedded default, {n} cores")
print(f"{'':28} {'train img/s':>12} {'eval img/s':>11} {'steps':>6} {'all-reduce ms/step':>19} {'% of training':>14} {'final acc':>10}")
for label, r in ((f"1 process x {n} threads", one), (f"{n} processes x 1 thread", many)):
    t, e, s, ms, pct, res = summary(r)
    print(f"{label:28} {t:12.1f} {e:11.1f} {s:6d} {ms:19.2f} {pct:14.1f} {res['final_average_accuracy']:10.2f}")
EOF
