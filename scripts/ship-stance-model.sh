#!/usr/bin/env bash
# Copies a finetune output folder's adapter and model card into models/minilm-l6-stance/ and
# writes models/minilm-l6-stance.toml with their sha256 (the binary compiles both in and checks
# them on every load).
#
#   scripts/ship-stance-model.sh FINETUNE_OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: $0 FINETUNE_OUT_DIR}
dst=models/minilm-l6-stance
mkdir -p "$dst"
cp "$src/adapter.safetensors" "$dst/adapter.safetensors"
cp "$src/card.json" "$dst/card.json"
size=$(stat -c %s "$dst/adapter.safetensors")
[ "$size" -le 4194304 ] || { echo "ship: the adapter is $size bytes, over 4 MB" >&2; exit 2; }
weights=$(sha256sum "$dst/adapter.safetensors" | cut -d' ' -f1)
card=$(sha256sum "$dst/card.json" | cut -d' ' -f1)
cat > models/minilm-l6-stance.toml <<TOML
# The stance model stancer uses by default: all-MiniLM-L6-v2 fine-tuned as a (target, paragraph)
# cross-encoder with LoRA adapters (rank 8 on every linear layer) and a linear head, merged into
# the base matrices at load. Trained by scripts/train-stance-model.sh; its model card
# (minilm-l6-stance/card.json) lists every training file with its sha256 and licence, the
# hyperparameters, validation scores, time and speed. Both files are compiled into the binary
# and checked against these sha256 on every load.
name = "minilm-l6-stance"
description = "stance cross-encoder: all-MiniLM-L6-v2 + LoRA, trained on VAST, IBM ArgQ, SemEval-2016 and SNLI"
task = "stance"
base = "minilm-l6"

[adapter]
folder = "minilm-l6-stance"
sha256 = "$weights"
card_sha256 = "$card"
TOML
echo "shipped $dst ($size bytes, sha256 $weights)"
