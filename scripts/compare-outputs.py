#!/usr/bin/env python3
"""Checks that two stancer binaries give the same labels: classify's JSON Lines byte for byte on
the four fixture documents, and eval's JSON metric fields (everything but timings and the run's
description) on the fixtures, SemEval-2016 val and VAST dev, for each built-in encoder manifest
(issue 11). Also prints both binaries' paragraphs/s for eval and classify on VAST dev.

    python3 scripts/compare-outputs.py OLD_BINARY NEW_BINARY [--new-args "--stance prototype"]
        [--manifests minilm-l6,minilm-l6-int8,minilm-l6-bf16] [--sets fixtures,semeval-val,vast-dev]

Reads ../shared/data relative to the repository root; works in .cache/compare-outputs/.
"""
import argparse
import json
import pathlib
import shlex
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
MANIFESTS = ["minilm-l6", "minilm-l6-int8", "minilm-l6-bf16"]
# Fields that describe the run or its speed, not its labels.
VOLATILE = {"seconds", "paragraphs_per_second", "run", "device", "head", "elapsed", "throughput"}


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def run(binary, args, extra):
    started = time.perf_counter()
    result = subprocess.run([binary, *args, *extra, "-q"], cwd=ROOT, capture_output=True)
    if result.returncode != 0:
        sys.exit(f"{binary} {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--new-args", default="", help="extra arguments for the new binary")
    parser.add_argument("--manifests", default=",".join(MANIFESTS))
    parser.add_argument("--sets", default="fixtures,semeval-val,vast-dev",
                        help="gold sets to compare (vast-dev also runs classify on VAST dev)")
    options = parser.parse_args()
    work = ROOT / ".cache" / "compare-outputs"
    work.mkdir(parents=True, exist_ok=True)
    fixtures = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "eval" / "fixtures").glob("*.txt"))
    gold = {
        "fixtures": sorted(str(p.relative_to(ROOT)) for p in (ROOT / "eval" / "fixtures").glob("*.jsonl")),
        "semeval-val": [str(DATA / "semeval2016-val.jsonl")],
        "vast-dev": [str(DATA / "vast-dev.jsonl")],
    }
    gold = {name: files for name, files in gold.items() if name in options.sets.split(",")}
    vast_rows = sum(1 for _ in open(DATA / "vast-dev.jsonl"))
    failures = 0
    for manifest in options.manifests.split(","):
        for label, binary, extra in [
            ("old", options.old, []),
            ("new", options.new, shlex.split(options.new_args)),
        ]:
            model = ["--model", manifest]
            out, _ = run(binary, ["classify", *fixtures, "--format", "jsonl", *model], extra)
            (work / f"{manifest}-{label}-classify.jsonl").write_bytes(out)
            for name, files in gold.items():
                path = work / f"{manifest}-{label}-{name}.json"
                _, seconds = run(binary, ["eval", *files, "--json", str(path), *model], extra)
                if name == "vast-dev":
                    print(f"{manifest} {label}: eval VAST dev {vast_rows / seconds:.1f} rows/s (wall, model load included)")
            if "vast-dev" not in gold:
                continue
            vast = work / "vast-dev.jsonl"
            if not vast.exists():
                with open(vast, "w") as f:
                    for line in open(DATA / "vast-dev.jsonl"):
                        row = json.loads(line)
                        f.write(json.dumps({"id": row["id"], "text": row["text"], "target": row["target"]}) + "\n")
            _, seconds = run(binary, ["classify", str(vast), "--format", "jsonl", "-o", str(work / f"{manifest}-{label}-vast.jsonl"), *model], extra)
            print(f"{manifest} {label}: classify VAST dev {vast_rows / seconds:.1f} rows/s (wall, model load included)")
        same = (work / f"{manifest}-old-classify.jsonl").read_bytes() == (work / f"{manifest}-new-classify.jsonl").read_bytes()
        print(f"{manifest}: classify fixtures JSON Lines {'identical' if same else 'DIFFERENT'}")
        failures += not same
        if "vast-dev" in gold:
            same = (work / f"{manifest}-old-vast.jsonl").read_bytes() == (work / f"{manifest}-new-vast.jsonl").read_bytes()
            print(f"{manifest}: classify VAST dev JSON Lines {'identical' if same else 'DIFFERENT'}")
            failures += not same
        for name in gold:
            old = strip(json.loads((work / f"{manifest}-old-{name}.json").read_text()))
            new = strip(json.loads((work / f"{manifest}-new-{name}.json").read_text()))
            same = old == new
            print(f"{manifest}: eval {name} metric fields {'identical' if same else 'DIFFERENT'}")
            failures += not same
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
