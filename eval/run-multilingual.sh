#!/usr/bin/env bash
# Regenerates eval/RESULTS-multilingual.md (issue 14): minilm-l6 against e5-small-multilingual,
# both with the heads on their vectors (eval/configs/*.toml: prototype themes and stance), compared
# with `stancer eval --compare` (paired bootstrap and McNemar's test) on the English fixtures, their
# translations (eval/fixtures/translated/: Russian, Chinese, Ukrainian, German, with an English
# schema), SemEval-2016 val, VAST dev and 2,000 AG News rows; zero-shot, and with trained heads
# cross-validated (--cv 5). Takes about 15 minutes on 2 cores.
#
#   eval/run-multilingual.sh [--data DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    *) echo "usage: $0 [--data DIR]" >&2; exit 2 ;;
  esac
done
cargo build --release --quiet
stancer=${CARGO_TARGET_DIR:-target}/release/stancer
out=target/benchmarks/multilingual
mkdir -p "$out"
: > "$out/commands.tsv"
configs=(eval/configs/minilm-l6.toml eval/configs/e5-small-multilingual.toml)
run() { # name, then stancer eval arguments
  local name=$1; shift
  echo "== $name: stancer eval $* --compare ${configs[*]}" >&2
  "$stancer" eval "$@" --compare "${configs[@]}" --quiet --json "$out/$name.json" > "$out/$name.txt"
  printf '%s\tstancer eval %s --compare %s\n' "$name" "$*" "${configs[*]}" >> "$out/commands.tsv"
}
python3 - "$data/agnews-test.jsonl" "$out/agnews-2000.jsonl" <<'PY'
import sys
rows = open(sys.argv[1]).readlines()
open(sys.argv[2], "w").writelines(rows[i * len(rows) // 2000] for i in range(2000))
PY
fixture=eval/fixtures/000_434d5a632816f17f.jsonl
run reference-en "$fixture"
for lang in ru zh uk de; do
  run "reference-$lang" "eval/fixtures/translated/000_434d5a632816f17f.$lang.jsonl"
done
run fixtures-en eval/fixtures/*.jsonl
run fixtures-en-cv eval/fixtures/*.jsonl --cv 5
run translated-all-cv eval/fixtures/translated/*.jsonl --cv 5
run semeval-val "$data/semeval2016-val.jsonl"
run vast-dev "$data/vast-dev.jsonl"
run vast-dev-cv "$data/vast-dev.jsonl" --cv 5
run agnews-2000 "$out/agnews-2000.jsonl" --schema eval/schemas/agnews.toml
run agnews-2000-cv "$out/agnews-2000.jsonl" --schema eval/schemas/agnews.toml --cv 5
python3 eval/multilingual_results.py "$out" > eval/RESULTS-multilingual.md.tmp
mv eval/RESULTS-multilingual.md.tmp eval/RESULTS-multilingual.md
echo "wrote eval/RESULTS-multilingual.md" >&2
