#!/usr/bin/env bash
# Issue 15: a run stopped at any moment and resumed gives the results of an uninterrupted run,
# bit for bit (CPU, same threads). For every method of `clprompt methods` on tiny data:
#   1. an uninterrupted reference run;
#   2. runs killed with SIGKILL (CLPROMPT_FAULT, core/fault_injection.hpp) during training, classifier
#      alignment, a pass over features, evaluation and while a checkpoint or results.json is being
#      written, some killed again while resuming, each then resumed to the end;
#   3. runs killed with SIGKILL, SIGINT (exit 130) and SIGTERM (exit 143) at random moments, resumed;
# and compares every resumed results.json's accuracy matrix and epoch losses with the reference's.
# Also: an existing run is not overwritten without --resume/--overwrite, a resume with a changed
# configuration is refused naming the field, and a complete run resumes to itself.
#   resume_after_kill.sh CLI WORKDIR [METHOD...]      (default: every method, and coda-prompt --align)
set -uo pipefail
CLI=$1 WORK=$2
shift 2
mkdir -p "$WORK"
PY="python3 -s"
export OMP_NUM_THREADS=2
methods=("$@")
# CLPROMPT_RESUME_METHODS="l2p slca": a subset (CI's second lane checks the checkpoint format on
# another LibTorch with two methods; the first lane runs them all).
[[ ${#methods[@]} -eq 0 && -n ${CLPROMPT_RESUME_METHODS:-} ]] && read -r -a methods <<< "$CLPROMPT_RESUME_METHODS"
if [[ ${#methods[@]} -eq 0 ]]; then
  mapfile -t methods < <("$CLI" methods --json | $PY -c "import json,sys; [print(m['name']) for m in json.load(sys.stdin)['methods']]")
  methods+=("coda-prompt --align")
fi
# Five tasks of two epochs, three batches an epoch: kills land mid-epoch, at epoch ends and between tasks.
tiny=(--set pretrained= --set backbone.depth=5 --set backbone.embed_dim=32 --set backbone.num_heads=2
      --set scenario.num_tasks=5 --set scenario.train_per_class=12 --set scenario.test_per_class=10
      --set train.epochs=2 --set train.batch_size=8 --set train.eval_batch_size=16 --set save_checkpoint=false --quiet)
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Runs the CLI; prints its exit status.
run() { "$CLI" run "$@" > "$WORK/last.log" 2>&1; echo $?; }

same_results() {  # reference.json resumed.json
  $PY - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ok = a["accuracy_matrix"] == b["accuracy_matrix"] and \
     [t["epoch_loss"] for t in a["tasks"]] == [t["epoch_loss"] for t in b["tasks"]]
if not ok:
    print("reference", a["accuracy_matrix"], [t["epoch_loss"] for t in a["tasks"]])
    print("resumed  ", b["accuracy_matrix"], [t["epoch_loss"] for t in b["tasks"]])
sys.exit(0 if ok else 1)
EOF
}

# Resumes $dir until it completes (at most 4 times); returns 0 when it did.
resume_to_end() {
  local out=$1 args=("${@:2}") rc
  for _ in 1 2 3 4; do
    rc=$(run "${args[@]}" --out "$out" --resume)
    [[ $rc == 0 ]] && return 0
    [[ $rc == 137 ]] && continue
    cat "$WORK/last.log"; return 1
  done
  return 1
}

check() {  # label out-dir method-args...
  local label=$1 out=$2
  local result
  result=$(ls "$out"/*/results.json 2>/dev/null | head -1)
  if [[ -z $result ]]; then fail "$label: no results.json"; return; fi
  if [[ -e $(dirname "$result")/resume.safetensors ]]; then fail "$label: resume checkpoint left after completion"; fi
  if ls "$(dirname "$result")" | grep -q '\.tmp-'; then fail "$label: temporary files left"; fi
  if same_results "$reference" "$result"; then echo "ok: $label"; else fail "$label: results differ from the uninterrupted run"; fi
}

for method in "${methods[@]}"; do
  read -r -a margs <<< "--method $method"
  [[ $method == coda-prompt* ]] && margs+=(--set method_options.selector.pool_size=10)  # a multiple of 5 tasks
  name=${method// /}
  base=$WORK/$name
  rm -rf "$base"
  started=$(date +%s.%N)
  rc=$(run "${margs[@]}" "${tiny[@]}" --out "$base/reference")
  seconds=$($PY -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$started" "$(date +%s.%N)")
  if [[ $rc != 0 ]]; then cat "$WORK/last.log"; fail "$method: reference run exited $rc"; continue; fi
  reference=$(ls "$base"/reference/*/results.json | head -1)

  # SIGKILL at named points (the n-th time the point is reached), then resumed; a second kill
  # while resuming for some.
  k=0
  for fault in train-step:3 train-step:17 alignment-step:2 feature-batch:3 evaluation-batch:5 atomic-write:4 \
               "train-step:4 train-step:6" "atomic-write:3 evaluation-batch:1"; do
    k=$((k + 1))
    out=$base/fault$k
    read -r -a faults <<< "$fault"
    rc=$(CLPROMPT_FAULT=${faults[0]} run "${margs[@]}" "${tiny[@]}" --out "$out")
    if [[ $rc == 0 ]]; then echo "skip: $method never reaches ${faults[0]}"; continue; fi
    if [[ $rc != 137 ]]; then cat "$WORK/last.log"; fail "$method ${faults[0]}: exit $rc, expected 137 (SIGKILL)"; continue; fi
    if [[ ${#faults[@]} -gt 1 ]]; then
      rc=$(CLPROMPT_FAULT=${faults[1]} run "${margs[@]}" "${tiny[@]}" --out "$out" --resume)
      [[ $rc == 0 || $rc == 137 ]] || { cat "$WORK/last.log"; fail "$method: resume under ${faults[1]} exited $rc"; continue; }
    fi
    resume_to_end "$out" "${margs[@]}" "${tiny[@]}" || { fail "$method $fault: resume did not complete"; continue; }
    check "$method killed at $fault, resumed" "$out"
  done

  # SIGKILL at random moments, SIGINT and SIGTERM: the signal's exit status, then resumed.
  for signal in KILL INT TERM; do
    k=$((k + 1))
    out=$base/signal$k
    "$CLI" run "${margs[@]}" "${tiny[@]}" --out "$out" > "$WORK/last.log" 2>&1 &
    pid=$!
    # a random moment inside the run (process start and data loading are ~0.5 s of it)
    sleep "$($PY -c "import random, sys; print(round(random.uniform(0.4, 0.9) * float(sys.argv[1]), 2))" "$seconds")"
    kill -s "$signal" "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    expected=$(( 128 + $(kill -l "$signal") ))
    if [[ $rc == 0 ]]; then echo "skip: $method finished before SIG$signal"; continue; fi
    if [[ $rc != "$expected" ]]; then cat "$WORK/last.log"; fail "$method SIG$signal: exit $rc, expected $expected"; continue; fi
    resume_to_end "$out" "${margs[@]}" "${tiny[@]}" || { fail "$method SIG$signal: resume did not complete"; continue; }
    check "$method SIG$signal, resumed" "$out"
  done
done

# A directory with a run is refused without --resume / --overwrite, before any work.
first=${methods[0]}
rc=$(run --method "$first" "${tiny[@]}" --out "$WORK/$first/reference")
if [[ $rc == 1 ]] && grep -q "holds a run (results.json); --resume continues it, --overwrite" "$WORK/last.log"; then
  echo "ok: an existing run is not overwritten"
else
  cat "$WORK/last.log"; fail "rerun into an existing run directory exited $rc"
fi
# A complete run resumes to itself; a changed configuration is refused, naming the field.
rc=$(run --method "$first" "${tiny[@]}" --out "$WORK/$first/reference" --resume)
grep -q "is complete; nothing to resume" "$WORK/last.log" || true
[[ $rc == 0 ]] && echo "ok: a complete run resumes to its results" || { cat "$WORK/last.log"; fail "resume of a complete run exited $rc"; }
rc=$(CLPROMPT_FAULT=train-step:2 run --method "$first" "${tiny[@]}" --out "$WORK/changed")
rc=$(run --method "$first" "${tiny[@]}" --set train.lr=0.5 --out "$WORK/changed" --resume)
if [[ $rc == 1 ]] && grep -q "'train.lr'.*differs from the run in" "$WORK/last.log"; then
  echo "ok: a changed configuration is refused"
else
  cat "$WORK/last.log"; fail "resume with a changed train.lr exited $rc"
fi

if [[ $failures -gt 0 ]]; then echo "$failures failure(s)"; exit 1; fi
echo "resume after kill: all ok"
