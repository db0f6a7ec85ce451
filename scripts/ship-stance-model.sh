#!/usr/bin/env bash
# Copies a finetune output folder's adapter and model card into models/minilm-l6-stance/ and
# writes models/minilm-l6-stance.toml with their sha256 (the binary compiles both in and checks
# them on every load).
#
#   scripts/ship-stance-model.sh FINETUNE_OUT_DIR [NAME]
#
# NAME is minilm-l6-stance (the default model) or minilm-l6-stance-research (the variant trained
# with research-only sets as well, shipped beside it, never the default).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: $0 FINETUNE_OUT_DIR [NAME]}
name=${2:-minilm-l6-stance}
case "$name" in
  minilm-l6-stance)
    header="# The stance model stancer uses by default: all-MiniLM-L6-v2 fine-tuned as a (target, paragraph)"
    description="stance cross-encoder: all-MiniLM-L6-v2 fine-tuned (LoRA, then every weight, compressed to a low-rank update), trained on VAST, IBM ArgQ, SemEval-2016, SNLI and CAD" ;;
  minilm-l6-stance-research)
    header="# RESEARCH USE ONLY, never the default: minilm-l6-stance continued with research-only sets as well
# (COVID-19, P-Stance, WT-WT, ChatStance; their terms bind this model). all-MiniLM-L6-v2 as a (target, paragraph)"
    description="research only: minilm-l6-stance + COVID-19, P-Stance, WT-WT and ChatStance (research-only terms)" ;;
  *) echo "ship: unknown name $name" >&2; exit 2 ;;
esac
dst=models/$name
mkdir -p "$dst"
cp "$src/adapter.safetensors" "$dst/adapter.safetensors"
cp "$src/card.json" "$dst/card.json"
size=$(stat -c %s "$dst/adapter.safetensors")
[ "$size" -le 4194304 ] || { echo "ship: the adapter is $size bytes, over 4 MB" >&2; exit 2; }
weights=$(sha256sum "$dst/adapter.safetensors" | cut -d' ' -f1)
card=$(sha256sum "$dst/card.json" | cut -d' ' -f1)
# The manifest's comment states the adapter's rank as its card records it.
rank=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["lora"]["rank"])' "$dst/card.json")
cat > "models/$name.toml" <<TOML
$header
# cross-encoder with a rank-$rank update on every linear layer (LoRA, or a full fine-tune's change
# compressed to that rank; the card says which) and a linear head, merged into the base matrices
# at load. Trained by scripts/train-stance-model.sh; its model card
# ($name/card.json) lists every training file with its sha256 and licence, the
# hyperparameters, validation scores, time and speed. Both files are compiled into the binary
# and checked against these sha256 on every load.
name = "$name"
description = "$description"
task = "stance"
base = "minilm-l6"

[adapter]
folder = "$name"
sha256 = "$weights"
card_sha256 = "$card"
TOML
echo "shipped $dst ($size bytes, sha256 $weights)"
