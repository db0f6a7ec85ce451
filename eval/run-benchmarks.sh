#!/usr/bin/env bash
# Regenerates eval/RESULTS.md: the default model's quality on the project's fixtures and on the
# public data sets in ../shared/data (SemEval-2016 stance, VAST zero-shot stance, AG News themes),
# zero-shot and with trained heads, with 95% bootstrap confidence intervals.
#
#   eval/run-benchmarks.sh [--model NAME|DIR] [--data DIR]
#
# The data sets are read where they are (default ../shared/data) and never copied into the
# repository. Reports (JSON and HTML) go to target/benchmarks/MODEL/. Takes about 10 minutes on 2
# cores. The default model's results go to eval/RESULTS.md; any other model's to
# eval/RESULTS-MODEL.md, with its differences from the default model's run when that run's
# reports are in target/benchmarks/minilm-l6/ (run the default first).
set -euo pipefail
cd "$(dirname "$0")/.."

model=minilm-l6
data=../shared/data
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) echo "usage: $0 [--model NAME|DIR] [--data DIR]" >&2; exit 2 ;;
  esac
done
for f in semeval2016-train.jsonl semeval2016-val.jsonl vast-dev.jsonl agnews-test.jsonl; do
  [ -f "$data/$f" ] || { echo "run-benchmarks: $data/$f is missing (pass --data DIR)" >&2; exit 2; }
done

cargo build --release --quiet
stancer=${CARGO_TARGET_DIR:-target}/release/stancer
slug=$(basename "$model" .toml)
out=target/benchmarks/$slug
mkdir -p "$out"
run() { # name, then stancer arguments
  local name=$1; shift
  echo "== $name: stancer $*" >&2
  "$stancer" "$@" --model "$model" --quiet --json "$out/$name.json" --html "$out/$name.html" > "$out/$name.txt"
  printf '%s\tstancer %s --model %s\n' "$name" "$*" "$model" >> "$out/commands.tsv"
}
: > "$out/commands.tsv"

run fixtures-zero-shot   eval eval/fixtures/*.jsonl
run fixtures-trained-cv  eval eval/fixtures/*.jsonl --cv 5
run semeval-zero-shot    eval "$data/semeval2016-val.jsonl"
"$stancer" train "$data/semeval2016-train.jsonl" --task stance --model "$model" --quiet --out "$out/semeval-stance-head" > "$out/semeval-train.txt"
printf '%s\tstancer %s --model %s\n' "semeval-train" "train $data/semeval2016-train.jsonl --task stance --out $out/semeval-stance-head" "$model" >> "$out/commands.tsv"
run semeval-trained      eval "$data/semeval2016-val.jsonl" --head "$out/semeval-stance-head"
run vast-zero-shot       eval "$data/vast-dev.jsonl"
run vast-trained-cv      eval "$data/vast-dev.jsonl" --cv 5
run agnews-zero-shot     eval "$data/agnews-test.jsonl" --schema eval/schemas/agnews.toml
run agnews-trained-cv    eval "$data/agnews-test.jsonl" --schema eval/schemas/agnews.toml --cv 5

if [ "$slug" = minilm-l6 ]; then
  results=eval/RESULTS.md
  python3 eval/results.py "$out" "$model" > "$results.tmp"
else
  results=eval/RESULTS-$slug.md
  python3 eval/results.py "$out" "$model" target/benchmarks/minilm-l6 minilm-l6 > "$results.tmp"
fi
mv "$results.tmp" "$results"
echo "wrote $results (reports in $out/)" >&2
