#!/usr/bin/env bash
# Issue 16: data-parallel runs (c10d, Gloo on loopback) against the single-process run, every
# method of `clprompt methods` on tiny data (5 tasks x 2 epochs x 3 batches of 8).
#   1. Exact: with train.lr=1e-30 (the smallest a configuration accepts is > 0) no training step
#      moves a trained parameter by a representable amount, so every difference could only come
#      from how the work is split: the row shards, the evaluation counts, the gathered feature
#      passes (SLCA's class statistics, STAR-Prompt's prototypes and its generative replay), the
#      batch-wise prompt selection counts. 2 and 3 processes must give the single-process accuracy
#      matrix bit for bit, and its epoch losses to 1e-6 (relative): the ranks' weighted losses are
#      summed in another order.
#   2. Trained (the recipe's lr), 2 and 3 processes, every rank's trainable parameters compared with
#      rank 0's after every step (--check-replicas): every cell of the accuracy matrix within
#      TOLERANCE = 20 points (4 of a task's 20 test images), their mean within 5, and the first
#      epoch's loss within 1e-4 (relative) of the single process's. Gradients summed across ranks
#      differ from one process's in the last bits (float32 sums in another order, matrix products
#      over fewer rows); over 30 steps that moves a few test images across a decision boundary, no
#      more (measured on 2026-11-30: every method equal but SLCA, whose slow learner trains the
#      whole backbone: at most 10 points in one cell, mean 1.0). A wrong reduction (a missing
#      weight, a lost rank's gradient) fails the first-loss check or moves whole tasks.
#   3. Failures: a rank killed mid-run stops the others with a message naming it (launcher and
#      hand-started ranks); a rank that hangs makes the others give up after the collective
#      timeout (CLPROMPT_DIST_TIMEOUT=10); a stopped run resumes with the same number of
#      processes to the uninterrupted run's results bit for bit; another number is refused.
#   data_parallel.sh CLI WORKDIR [METHOD...]
set -uo pipefail
CLI=$1 WORK=$2
shift 2
mkdir -p "$WORK"
PY="python3 -s"
export OMP_NUM_THREADS=1
export CLPROMPT_DIST_TIMEOUT=${CLPROMPT_DIST_TIMEOUT:-60}
TOLERANCE=${CLPROMPT_DP_TOLERANCE:-20}
methods=("$@")
[[ ${#methods[@]} -eq 0 && -n ${CLPROMPT_DP_METHODS:-} ]] && read -r -a methods <<< "$CLPROMPT_DP_METHODS"
if [[ ${#methods[@]} -eq 0 ]]; then
  mapfile -t methods < <("$CLI" methods --json | $PY -c "import json,sys; [print(m['name']) for m in json.load(sys.stdin)['methods']]")
fi
tiny_base=(--set pretrained= --set backbone.depth=5 --set backbone.embed_dim=32 --set backbone.num_heads=2
      --set scenario.num_tasks=5 --set scenario.train_per_class=12 --set scenario.test_per_class=10
      --set train.epochs=2 --set train.batch_size=8 --set train.eval_batch_size=16 --set save_checkpoint=false
      --set threads=1 --quiet)
tiny=("${tiny_base[@]}" --overwrite)
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
run() { "$CLI" run "$@" > "$WORK/last.log" 2>&1; echo $?; }

compare() {  # mode(exact|close) single.json parallel.json
  $PY - "$@" "$TOLERANCE" <<'EOF'
import json, sys
mode, a, b, tol = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), float(sys.argv[4])
A, B = a["accuracy_matrix"], b["accuracy_matrix"]
la = [l for t in a["tasks"] for l in t["epoch_loss"]]
lb = [l for t in b["tasks"] for l in t["epoch_loss"]]
rel = lambda x, y: abs(x - y) / max(abs(x), 1e-12)
if b.get("world_size", 1) < 2: print("not a data-parallel run"); sys.exit(1)
if mode == "exact":
    ok = A == B and len(la) == len(lb) and all(rel(x, y) <= 1e-6 for x, y in zip(la, lb))
    worst = max((rel(x, y) for x, y in zip(la, lb)), default=0)
    detail = f"matrix {'equal' if A == B else 'differs'}, losses within {worst:.1e}"
else:
    cells = [abs(x - y) for ra, rb in zip(A, B) for x, y in zip(ra, rb)]
    ok = len(A) == len(B) and max(cells) <= tol and sum(cells) / len(cells) <= tol / 4 and rel(la[0], lb[0]) <= 1e-4
    detail = f"max cell difference {max(cells):.1f} points, mean {sum(cells)/len(cells):.2f}, first loss within {rel(la[0], lb[0]):.1e}"
print(detail)
if not ok:
    print("single  ", A, la[:4]); print("parallel", B, lb[:4])
sys.exit(0 if ok else 1)
EOF
}

for method in "${methods[@]}"; do
  read -r -a margs <<< "--method $method"
  [[ $method == coda-prompt* ]] && margs+=(--set method_options.selector.pool_size=10)
  name=${method// /}
  base=$WORK/$name
  rm -rf "$base"
  for mode in exact close; do
    extra=()
    [[ $mode == exact ]] && extra=(--set train.lr=1e-30)
    rc=$(run "${margs[@]}" "${tiny[@]}" "${extra[@]}" --out "$base/$mode-1")
    if [[ $rc != 0 ]]; then cat "$WORK/last.log"; fail "$name $mode: the single-process run exited with $rc"; continue; fi
    single=$(ls "$base/$mode-1"/*/results.json | head -1)
    for n in 2 3; do
      started=$(date +%s)
      rc=$(run "${margs[@]}" "${tiny[@]}" "${extra[@]}" --nproc $n --check-replicas --out "$base/$mode-$n")
      if [[ $rc != 0 ]]; then cat "$WORK/last.log"; fail "$name $mode: --nproc $n exited with $rc"; continue; fi
      parallel=$(ls "$base/$mode-$n"/*/results.json | head -1)
      if detail=$(compare $mode "$single" "$parallel"); then
        echo "ok: $name, $n processes, $mode: $(head -1 <<< "$detail") ($(($(date +%s) - started)) s)"
      else
        echo "$detail"; fail "$name, $n processes, $mode"
      fi
    done
  done
done

# A rank killed by the launcher's watch: the others stop, the message names the rank.
margs=(--method l2p "${tiny[@]}")
started=$(date +%s)
rc=$(CLPROMPT_FAULT=train-step:3 CLPROMPT_FAULT_RANK=1 run "${margs[@]}" --nproc 2 --out "$WORK/killed")
elapsed=$(($(date +%s) - started))
if [[ $rc == 137 ]] && grep -q "rank 1 of 2 was killed by signal 9" "$WORK/last.log" && ((elapsed < 60)); then
  echo "ok: a killed rank stops the launcher's run ($elapsed s): $(grep -m1 'rank 1 of 2' "$WORK/last.log")"
else
  cat "$WORK/last.log"; fail "killed rank under --nproc: exit $rc after $elapsed s"
fi

# Two ranks started by hand (as on two machines); rank 1 meets a fault at its 3rd step.
#   by_hand OUT TIMEOUT [VAR=VALUE...]   (the variables go to rank 1) -> rc0, rc1, elapsed
by_hand() {
  local out=$1 timeout=$2 port started rank0 rank1
  shift 2
  port=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  started=$(date +%s)
  env WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port CLPROMPT_DIST_TIMEOUT=$timeout \
    "$CLI" run "${margs[@]}" --out "$WORK/$out" > "$WORK/rank0.log" 2>&1 &
  rank0=$!
  env WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port CLPROMPT_DIST_TIMEOUT=$timeout \
    CLPROMPT_FAULT=train-step:3 CLPROMPT_FAULT_RANK=1 "$@" "$CLI" run "${margs[@]}" --out "$WORK/$out" > "$WORK/rank1.log" 2>&1 &
  rank1=$!
  wait $rank0 2> /dev/null
  rc0=$?
  elapsed=$(($(date +%s) - started))
  kill -9 $rank1 2> /dev/null  # a stopped rank 1 (the hang case) is still there
  wait $rank1 2> /dev/null
  rc1=$?
}

# Rank 1 dies: rank 0 must not hang.
by_hand by-hand 20
if [[ $rc1 == 137 && $rc0 != 0 ]] && grep -q "rank 0 of 2" "$WORK/rank0.log" && ((elapsed < 90)); then
  echo "ok: rank 0 stops when rank 1 dies ($elapsed s): $(grep -m1 'error' "$WORK/rank0.log" | cut -c1-200)"
else
  cat "$WORK/rank0.log"; fail "hand-started ranks: rank 1 exit $rc1, rank 0 exit $rc0 after $elapsed s"
fi

# Rank 1 hangs (stopped, its connections open): rank 0 gives up after the timeout.
by_hand hung 10 CLPROMPT_FAULT_SIGNAL=STOP
if [[ $rc0 != 0 ]] && grep -q "rank 0 of 2: all-reduce failed" "$WORK/rank0.log" && ((elapsed >= 10 && elapsed < 60)); then
  echo "ok: rank 0 gives up on a hung rank 1 after the timeout ($elapsed s): $(grep -m1 'error' "$WORK/rank0.log" | cut -c1-200)"
else
  cat "$WORK/rank0.log"; fail "hung rank: rank 0 exit $rc0 after $elapsed s"
fi

# Resume with the same number of processes: equal to the uninterrupted run; another number refused.
rc=$(run "${margs[@]}" --nproc 2 --out "$WORK/resume-reference")
reference=$(ls "$WORK"/resume-reference/*/results.json | head -1)
rc=$(CLPROMPT_FAULT=train-step:17 CLPROMPT_FAULT_RANK=0 run "${margs[@]}" --nproc 2 --out "$WORK/resumed")
[[ $rc == 137 ]] || fail "resume: the killed run exited with $rc, not 137"
rc3=$(run --method l2p "${tiny_base[@]}" --nproc 3 --out "$WORK/resumed" --resume)
if [[ $rc3 != 0 ]] && grep -q "written by a run of 2 processes, this one has 3; resume with --nproc 2" "$WORK/last.log"; then
  echo "ok: a resume with another number of processes is refused"
else
  cat "$WORK/last.log"; fail "resume with 3 processes of a 2-process run: exit $rc3"
fi
rc=$(run --method l2p "${tiny_base[@]}" --nproc 2 --out "$WORK/resumed" --resume)
resumed=$(ls "$WORK"/resumed/*/results.json 2>/dev/null | head -1)
if [[ $rc == 0 && -n $resumed ]] && $PY - "$reference" "$resumed" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if a["accuracy_matrix"] == b["accuracy_matrix"] and
         [t["epoch_loss"] for t in a["tasks"]] == [t["epoch_loss"] for t in b["tasks"]] else 1)
EOF
then
  echo "ok: a 2-process run killed at step 17 resumes to the uninterrupted run's results"
else
  cat "$WORK/last.log"; fail "2-process resume: exit $rc, results differ or missing"
fi

if ((failures > 0)); then
  echo "data parallel: $failures failure(s)"
  exit 1
fi
echo "data parallel: all ok"
