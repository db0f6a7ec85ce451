#!/usr/bin/env bash
# Stance models side by side (issue 12): the prototype zero-shot head, a logistic pair head trained
# with `stancer train` on VAST train, and the shipped cross-encoder (minilm-l6-stance), on data none
# of them trained on: VAST dev, SemEval-2016 val, the fixtures, and the held-out test part of each
# of the cross-encoder's training sets (split by text, written by `stancer finetune`). Also the
# supervised path: a cross-encoder fine-tuned on SemEval-2016 train alone, on SemEval-2016 val.
# Writes the tables to eval/RESULTS-stance.md.
#
#   eval/run-stance.sh [--data DIR] [--heldout DIR] [--semeval-model DIR] [--semeval-init-model DIR]
#                      [--semeval-nobal-model DIR] [--semeval-init-nobal-model DIR]
#                      [--theme-model DIR] [--heads LIST] [--sets LIST]
#
# --heads takes a comma-separated subset of prototype,logistic,cross-encoder (default: all three);
# --sets a subset of vast-dev,semeval-val,fixtures,heldout,themes (default: all but themes).
#
# HELDOUT is the folder of the shipped model's finetune run (it holds heldout-test.jsonl); rows of
# each training file are scored separately. SEMEVAL_MODEL is a finetune output trained on
# semeval2016-train.jsonl alone (see the command in eval/RESULTS-stance.md); SEMEVAL_INIT_MODEL the
# same, started from minilm-l6-stance (--init); SEMEVAL_NOBAL_MODEL the same from the base with
# --no-balance, SEMEVAL_INIT_NOBAL_MODEL from minilm-l6-stance with --no-balance; THEME_MODEL a stance model trained with topic entailment pairs as well
# (scripts/make-theme-pairs.py), whose themes by entailment are scored beside the shipped model's.
# Any of them may be left out. The previous shipped models' reports,
# NAME-cross-encoder-v1.json and -v2.json, are kept beside the new ones and shown as their own rows.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data
heldout=
semeval=
semeval_init=
semeval_nobal=
semeval_init_nobal=
theme_model=
heads=prototype,logistic,cross-encoder
only=vast-dev,semeval-val,fixtures,heldout
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --heldout) heldout=$2; shift 2 ;;
    --semeval-model) semeval=$2; shift 2 ;;
    --semeval-init-model) semeval_init=$2; shift 2 ;;
    --semeval-nobal-model) semeval_nobal=$2; shift 2 ;;
    --semeval-init-nobal-model) semeval_init_nobal=$2; shift 2 ;;
    --theme-model) theme_model=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    --sets) only=$2; shift 2 ;;
    *) echo "usage: $0 [--data DIR] [--heldout DIR] [--semeval-model DIR] [--semeval-init-model DIR] [--semeval-nobal-model DIR] [--semeval-init-nobal-model DIR] [--theme-model DIR] [--heads LIST] [--sets LIST]" >&2; exit 2 ;;
  esac
done
cargo build --release --quiet
stancer=${CARGO_TARGET_DIR:-target}/release/stancer
out=target/benchmarks/stance
mkdir -p "$out"
touch "$out/commands.tsv"
wanted() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }
run() { # name, then stancer arguments
  local name=$1; shift
  echo "== $name: stancer $*" >&2
  "$stancer" "$@" --quiet --json "$out/$name.json" > "$out/$name.txt"
  printf '%s\tstancer %s\n' "$name" "$*" >> "$out/commands.tsv"
}
sets=()
wanted "$only" vast-dev && sets+=("vast-dev:$data/vast-dev.jsonl")
wanted "$only" semeval-val && sets+=("semeval-val:$data/semeval2016-val.jsonl")
wanted "$only" fixtures && sets+=("fixtures:eval/fixtures/*.jsonl")
if [ -n "$heldout" ] && wanted "$only" heldout; then
  python3 - "$heldout/heldout-test.jsonl" "$out" <<'PY'
import json, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    source = json.loads(line)["id"].rsplit("-", 1)[0]
    rows["semeval2016-train" if source.startswith("semeval") else source].append(line)
for name, lines in rows.items():
    open(f"{sys.argv[2]}/heldout-{name}.jsonl", "w").writelines(lines)
PY
  for f in "$out"/heldout-*.jsonl; do
    n=$(basename "$f" .jsonl)
    sets+=("$n:$f")
  done
fi
if wanted "$heads" logistic && [ ! -f "$out/vast-logistic-head/head.json" ]; then
  "$stancer" train "$data/train/vast-train.jsonl" --task stance --out "$out/vast-logistic-head" --quiet > "$out/vast-logistic-head.txt"
  printf '%s\tstancer %s\n' "vast-logistic-head" "train $data/train/vast-train.jsonl --task stance --out $out/vast-logistic-head" >> "$out/commands.tsv"
fi
for entry in "${sets[@]}"; do
  name=${entry%%:*}
  files=${entry#*:}
  # shellcheck disable=SC2086
  if wanted "$heads" prototype; then run "$name-prototype" eval $files --stance prototype; fi
  # shellcheck disable=SC2086
  if wanted "$heads" logistic; then run "$name-logistic" eval $files --head "$out/vast-logistic-head"; fi
  # shellcheck disable=SC2086
  if wanted "$heads" cross-encoder; then run "$name-cross-encoder" eval $files --stance minilm-l6-stance; fi
done
if [ -n "$semeval" ]; then
  run semeval-val-finetuned-semeval eval "$data/semeval2016-val.jsonl" --stance "$semeval"
fi
if [ -n "$semeval_nobal" ]; then
  run semeval-val-finetuned-semeval-nobal eval "$data/semeval2016-val.jsonl" --stance "$semeval_nobal"
fi
if [ -n "$semeval_init_nobal" ]; then
  run semeval-val-finetuned-semeval-init-nobal eval "$data/semeval2016-val.jsonl" --stance "$semeval_init_nobal"
fi
if [ -n "$semeval_init" ]; then
  run semeval-val-finetuned-semeval-init eval "$data/semeval2016-val.jsonl" --stance "$semeval_init"
fi
# Themes by entailment (--sets themes): the fixtures and 2,000 evenly spaced AG News test rows.
if wanted "$only" themes; then
  python3 - "$data/agnews-test.jsonl" "$out/agnews-2000.jsonl" <<'PY'
import sys
rows = open(sys.argv[1]).readlines()
open(sys.argv[2], "w").writelines(rows[i * len(rows) // 2000] for i in range(2000))
PY
  for head in prototype entailment; do
    # shellcheck disable=SC2086
    run "fixtures-theme-$head" eval eval/fixtures/*.jsonl --theme-head "$head"
    run "agnews-2000-theme-$head" eval "$out/agnews-2000.jsonl" --schema eval/schemas/agnews.toml --theme-head "$head"
  done
  if [ -n "$theme_model" ]; then
    # shellcheck disable=SC2086
    run "fixtures-theme-entailment-trained" eval eval/fixtures/*.jsonl --theme-head entailment --stance "$theme_model"
    run "agnews-2000-theme-entailment-trained" eval "$out/agnews-2000.jsonl" --schema eval/schemas/agnews.toml --theme-head entailment --stance "$theme_model"
  fi
fi
python3 eval/stance_results.py "$out" > eval/RESULTS-stance.md.tmp
mv eval/RESULTS-stance.md.tmp eval/RESULTS-stance.md
echo "wrote eval/RESULTS-stance.md" >&2
