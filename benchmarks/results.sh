#!/usr/bin/env bash
# The results table of docs/results.md: every run the method registry reports (`clprompt methods
# --json`: each method, plus the variants a method lists, e.g. joint training and CODA-Prompt + CA)
# on the embedded default (Split Fashion-MNIST, 5 tasks x 2 classes, shipped glyph-pretrained ViT)
# for 3 seeds, then benchmarks/python/results_table.py aggregates the runs into docs/results.json
# and docs/results.md (mean +- std over seeds). Two RUNS halves side by side with OMP_NUM_THREADS=1 took 36 min
# on 2 cores (2026-11-30); reruns skip finished runs.
#
#   bash benchmarks/results.sh                      # everything
#   SEEDS="1993" RUNS="finetune l2p" bash benchmarks/results.sh   # a subset (table of what exists)
#   EXTRA="--set scenario.validation_per_class=200" OUT=build/results-val bash benchmarks/results.sh
#       # the same on a validation split carved from the training data (for any tuning)
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
CLPROMPT_PACKAGES+=(python3)
clprompt_install_packages
clprompt_configure
clprompt_build --target clprompt_cli
cd "$CLPROMPT_ROOT"

SEEDS=${SEEDS:-"1993 1994 1995"}
OUT=${OUT:-build/results}
DOCS=${DOCS:-docs}
CLI="$CLPROMPT_BUILD_DIR/bin/clprompt"
read -r -a extra <<< "${EXTRA:-}"
mkdir -p "$OUT"
"$CLI" methods --json > "$OUT/methods.json"
# One line per reported run: <run> <method> <arguments...>
mapfile -t reported < <(python3 -c '
import json, sys
for m in json.load(open(sys.argv[1]))["methods"]:
    for r in m["reported_runs"]:
        print(" ".join([r["run"], m["name"]] + r["args"]))' "$OUT/methods.json")
wanted=" ${RUNS:-} "

for seed in $SEEDS; do
  for line in "${reported[@]}"; do
    read -r -a words <<< "$line"
    run=${words[0]} method=${words[1]}
    args=("${words[@]:2}")
    [[ -z ${RUNS:-} || $wanted == *" $run "* ]] || continue
    dir=$OUT/seed$seed
    target=$dir/$run
    if [[ -f $target/results.json ]] && python3 -c "import json,sys; r=json.load(open('$target/results.json')); sys.exit(0 if r['completed_tasks']==r['num_tasks'] else 1)"; then
      echo "== $run seed $seed: done ($target/results.json)"
      continue
    fi
    echo "== $run seed $seed"
    tmp=$dir/.tmp-$run
    rm -rf "$tmp"
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} "$CLI" run --method "$method" "${args[@]}" --set seed="$seed" \
      --set save_checkpoint=false "${extra[@]}" --out "$tmp" --quiet | tail -n 3
    rm -rf "$target"
    mv "$tmp"/*/ "$target"   # the one directory the run wrote, whatever its run name
    rm -rf "$tmp"
  done
done
python3 benchmarks/python/results_table.py --runs "$OUT" --methods "$OUT/methods.json" --json "$DOCS/results.json" \
  --markdown "$DOCS/results.md" --command "bash benchmarks/results.sh${EXTRA:+ (EXTRA=$EXTRA)}"
