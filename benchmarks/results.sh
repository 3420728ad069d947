#!/usr/bin/env bash
# The results table of docs/results.md: every method on the embedded default (Split
# Fashion-MNIST, 5 tasks x 2 classes, shipped glyph-pretrained ViT) for 3 seeds, then
# benchmarks/python/results_table.py aggregates the runs into docs/results.json and
# docs/results.md (mean +- std over seeds). ~2 hours on 2 cores; reruns skip finished runs.
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
RUNS=${RUNS:-"joint linear-probe finetune l2p dualprompt coda-prompt slca coda-prompt+align star-prompt-fallback"}
OUT=${OUT:-build/results}
DOCS=${DOCS:-docs}
read -r -a extra <<< "${EXTRA:-}"

for seed in $SEEDS; do
  for run in $RUNS; do
    dir=$OUT/seed$seed
    case $run in
      joint) args=(--method finetune --set scenario.num_tasks=1) name=finetune ;;  # all 10 classes, one task
      *+align) args=(--method "${run%+align}" --align) name=$run ;;
      star-prompt-fallback) args=(--method star-prompt) name=$run ;;  # no CLIP offline: class-mean keys
      *) args=(--method "$run") name=$run ;;
    esac
    target=$dir/$run
    if [[ -f $target/results.json ]] && python3 -c "import json,sys; sys.exit(0 if json.load(open('$target/results.json'))['completed_tasks']==json.load(open('$target/results.json'))['num_tasks'] else 1)"; then
      echo "== $run seed $seed: done ($target/results.json)"
      continue
    fi
    echo "== $run seed $seed"
    tmp=$dir/.tmp-$run
    rm -rf "$tmp"
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} "$CLPROMPT_BUILD_DIR/bin/clprompt" run "${args[@]}" --set seed="$seed" \
      --set save_checkpoint=false "${extra[@]}" --out "$tmp" --quiet | tail -n 3
    rm -rf "$target"
    mv "$tmp/$name" "$target"
    rm -rf "$tmp"
  done
done
python3 benchmarks/python/results_table.py --runs "$OUT" --json "$DOCS/results.json" --markdown "$DOCS/results.md" \
  --command "bash benchmarks/results.sh${EXTRA:+ (EXTRA=$EXTRA)}"
