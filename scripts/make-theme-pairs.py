#!/usr/bin/env python3
"""Writes the policy-topic files of ../shared/data/train as entailment pairs for `stancer finetune`
(issue 12, point 5): each bill title or headline with "This text is about {its topic}." as `favor`
(entailed) and with one other topic of the same file, drawn at random, as `none` (not entailed).
"Other / miscellaneous" rows are left out (no hypothesis to state).

    scripts/make-theme-pairs.py [--data DIR] [--seed N] OUT.jsonl
"""
import argparse
import json
import random
from pathlib import Path

FILES = ["topic-cap-uscongress.jsonl", "topic-cap-nytimes.jsonl"]


def hypothesis(theme: str) -> str:
    # The same sentence as src/label/head/entailment.rs.
    return f"This text is about {theme.replace('-', ' ').replace('_', ' ')}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    random.seed(args.seed)
    written = 0
    with open(args.out, "w") as out:
        for name in FILES:
            rows = [json.loads(line) for line in open(Path(args.data) / "train" / name)]
            rows = [r for r in rows if r["theme"] != "Other / miscellaneous"]
            themes = sorted({r["theme"] for r in rows})
            for row in rows:
                other = random.choice([t for t in themes if t != row["theme"]])
                for suffix, theme, stance in (("entailed", row["theme"], "favor"), ("not", other, "none")):
                    out.write(json.dumps({"id": f"{row['id']}-{suffix}", "text": row["text"],
                                          "target": hypothesis(theme), "stance": stance}) + "\n")
                    written += 1
    print(f"wrote {written} pairs to {args.out}")


if __name__ == "__main__":
    main()
