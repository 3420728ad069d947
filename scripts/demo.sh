#!/usr/bin/env bash
# README command 1: the main job. Installs what is missing, builds the clprompt CLI and runs
# the embedded default (Split Fashion-MNIST, 5 tasks x 2 classes, the shipped glyph-pretrained
# ViT of models/) with CODA-Prompt next to sequential fine-tuning, then prints both tables and a
# comparison. Extra arguments go to `clprompt run`, e.g. --set train.epochs=3.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
clprompt_install_packages
clprompt_configure
clprompt_build --target clprompt_cli
cd "$CLPROMPT_ROOT"
exec "$CLPROMPT_BUILD_DIR/bin/clprompt" run --method finetune,coda-prompt --out results/demo --overwrite "$@"
