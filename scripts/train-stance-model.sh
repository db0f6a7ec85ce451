#!/usr/bin/env bash
# Reproduces the shipped stance model, models/minilm-l6-stance/ (issue 12): trains the LoRA
# adapter and head with `stancer finetune` on the training sets whose terms allow a default
# (VAST train, IBM ArgQ-Rank-30k, SemEval-2016 train, SNLI via e-SNLI dev), then copies the
# adapter and its model card into models/ and writes the manifest with their sha256.
#
#   scripts/train-stance-model.sh [--data DIR] [--out DIR] [--resume] [--no-ship]
#
# About 75 minutes on 2 cores (1000 steps of 16 pairs); a killed run continues with --resume
# (checkpoints every 50 steps in OUT/checkpoint). Training never runs in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data
out=${STANCER_HOME:-$HOME/.cache/stancer}/train/minilm-l6-stance
resume=()
ship=1
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --resume) resume=(--resume); shift ;;
    --no-ship) ship=0; shift ;;
    *) echo "usage: $0 [--data DIR] [--out DIR] [--resume] [--no-ship]" >&2; exit 2 ;;
  esac
done
cargo build --release --quiet
target/release/stancer finetune \
  "$data/train/vast-train.jsonl" "$data/train/ibm-argq30k-train.jsonl" \
  "$data/semeval2016-train.jsonl" "$data/train/nli-snli-dev.jsonl" \
  --licence "VAST (Allaway & McKeown 2020): none stated, research use" \
  --licence "IBM ArgQ-Rank-30k: CC BY-SA 3.0" \
  --licence "SemEval-2016 Task 6 via TweetEval: released without restrictions; SemEval and Twitter terms apply" \
  --licence "SNLI (e-SNLI dev): CC BY-SA 4.0" \
  --out "$out" --per-file-cap 6000 --unrelated 0.1 --max-steps 1000 --lr 5e-4 \
  --val-rows 400 --eval-every 200 --threads 2 --seed 0 "${resume[@]}"
[ "$ship" = 1 ] || exit 0
scripts/ship-stance-model.sh "$out"
