#!/usr/bin/env bash
# Regenerates the shipped backbone models/vit-glyph-d128.safetensors: installs the pinned font
# packages, builds the CLI, runs `clprompt pretrain` (resuming an interrupted run in
# build/pretrain) and copies the weights, their SHA-256 and the training report into models/.
# Bit-identical output needs the same fonts, LibTorch/OpenBLAS and thread count (2).
# Takes ~25 minutes on 2 cores (docs/pretraining.md). Extra arguments go to `clprompt pretrain`.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The pre-training fonts, pinned: Debian 12 packages whose files land in
# /usr/share/fonts/{truetype,opentype} (the config's glyphs.font_dirs). Changing this list
# changes the data set and therefore the weights.
CLPROMPT_PACKAGES+=(
  fonts-adf-accanthis fonts-cantarell fonts-comic-neue fonts-crosextra-caladea
  fonts-crosextra-carlito fonts-croscore fonts-dejavu-core fonts-dejavu-extra fonts-ebgaramond
  fonts-firacode fonts-freefont-ttf fonts-go fonts-hack fonts-humor-sans fonts-inconsolata
  fonts-jetbrains-mono fonts-junicode fonts-lato fonts-league-spartan fonts-liberation
  fonts-liberation2 fonts-linuxlibertine fonts-lmodern fonts-mplus fonts-noto-mono fonts-ocr-a
  fonts-ocr-b fonts-open-sans fonts-oxygen fonts-paratype fonts-quicksand fonts-roboto-unhinted
  fonts-sil-andika fonts-sil-charis fonts-sil-gentium fonts-sil-gentiumplus fonts-stix
  fonts-texgyre fonts-urw-base35
)
clprompt_install_packages
clprompt_configure
clprompt_build --target clprompt_cli
cd "$CLPROMPT_ROOT"
out=build/pretrain
resume=()
[[ -f $out/state.safetensors ]] && resume=(--resume)
"$CLPROMPT_BUILD_DIR/bin/clprompt" pretrain --out "$out" --set threads=2 "${resume[@]}" "$@"
mkdir -p models
cp "$out/vit.safetensors" models/vit-glyph-d128.safetensors
cp "$out/pretrain.json" models/vit-glyph-d128.pretrain.json
(cd models && sha256sum vit-glyph-d128.safetensors > vit-glyph-d128.safetensors.sha256)
echo "wrote models/vit-glyph-d128.safetensors, SHA-256 $(cut -d' ' -f1 models/vit-glyph-d128.safetensors.sha256)"
echo "if it changed, update the SHA-256 of vit-glyph-d128 in src/io.cpp (builtin_weights) and rebuild"
