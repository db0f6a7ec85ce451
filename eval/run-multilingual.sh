#!/usr/bin/env bash
# Regenerates eval/RESULTS-multilingual.md (issue 14): minilm-l6 against e5-small-multilingual,
# both with the heads on their vectors (eval/configs/*.toml: prototype themes and stance), compared
# with `stancer eval --compare` (paired bootstrap and McNemar's test) on the English fixtures, their
# translations (eval/fixtures/translated/: Russian, Chinese, Ukrainian, German, with an English
# schema), SemEval-2016 val, VAST dev and 2,000 AG News rows; zero-shot, and with trained heads
# (cross-validated with --cv 5, or, for the translations, trained on the other English fixtures).
# Takes about 15 minutes on 2 cores.
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
: > "$out/classify-commands.tsv"
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
# Trained heads across languages: theme and stance heads trained on the three English fixtures
# that are not the reference document (so no translated paragraph, nor its English original, is
# in training), scored on the reference document in English and in the four translations.
# (Cross-validating the translations together would put a paragraph's German version in training
# and its Russian version in test.)
others=(eval/fixtures/china-mediation-diplomacy.jsonl eval/fixtures/russia-china-central-asia-arctic.jsonl
        eval/fixtures/russian-information-operations-europe.jsonl)
trained=()
for config in "${configs[@]}"; do
  name=$(basename "$config" .toml)
  for task in theme stance; do
    "$stancer" train "${others[@]}" --task "$task" --model "$name" --quiet --out "$out/heads/$name-$task" > "$out/heads-$name-$task.txt"
  done
  cat > "$out/$name-trained.toml" <<TOML
name = "$name + heads trained on 3 English fixtures"
model = "$name"
head = ["heads/$name-theme", "heads/$name-stance"]
TOML
  trained+=("$out/$name-trained.toml")
done
run_trained() { # name, then stancer eval arguments
  local name=$1; shift
  echo "== $name: stancer eval $* --compare ${trained[*]}" >&2
  "$stancer" eval "$@" --compare "${trained[@]}" --quiet --json "$out/$name.json" > "$out/$name.txt"
  printf '%s	stancer eval %s --compare %s (heads: stancer train %s --task theme|stance --model M)\n' "$name" "$*" "${trained[*]}" "${others[*]}" >> "$out/commands.tsv"
}
run_trained reference-en-trained "$fixture"
run_trained translated-trained eval/fixtures/translated/*.jsonl
run semeval-val "$data/semeval2016-val.jsonl"
run vast-dev "$data/vast-dev.jsonl"
run vast-dev-cv "$data/vast-dev.jsonl" --cv 5
run agnews-2000 "$out/agnews-2000.jsonl" --schema eval/schemas/agnews.toml
run agnews-2000-cv "$out/agnews-2000.jsonl" --schema eval/schemas/agnews.toml --cv 5
# What a user gets: `stancer classify` of the reference document and each translation with each
# encoder and the defaults otherwise (prototype themes on the encoder, the minilm-l6-stance model).
for lang in en ru zh uk de; do
  if [ "$lang" = en ]; then file=eval/fixtures/000_434d5a632816f17f.txt; else file=eval/fixtures/translated/000_434d5a632816f17f.$lang.txt; fi
  for config in "${configs[@]}"; do
    name=$(basename "$config" .toml)
    "$stancer" classify "$file" --model "$name" --format jsonl --quiet -o "$out/classify-$name-$lang.jsonl"
    printf 'classify-%s-%s\tstancer classify %s --model %s --format jsonl\n' "$name" "$lang" "$file" "$name" >> "$out/classify-commands.tsv"
  done
done
python3 eval/multilingual_results.py "$out" > eval/RESULTS-multilingual.md.tmp
mv eval/RESULTS-multilingual.md.tmp eval/RESULTS-multilingual.md
echo "wrote eval/RESULTS-multilingual.md" >&2
