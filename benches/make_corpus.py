"""Regenerates benches/corpus.jsonl, the corpus `stancer bench` embeds when given no input.

The text is the project's own fixture prose (eval/fixtures/*.jsonl, except the third-party
reference document 000_*), cut and recombined into ~300 paragraphs of varied length: fragments of a
few words, single sentences, whole paragraphs, and runs of several paragraphs (up to ~400 tokens,
so some need two windows). Deterministic: the same fixtures give the same corpus.

    python3 benches/make_corpus.py
"""

import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted(p for p in (ROOT / "eval" / "fixtures").glob("*.jsonl") if not p.name.startswith("000_"))
ROWS = 300


def main() -> None:
    paragraphs = []
    for path in FIXTURES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                paragraphs.append(json.loads(line)["text"])
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.!?])\s+", p) if s]
    rng = random.Random(7)
    rows = []
    for i in range(ROWS):
        kind = i % 10
        if kind in (0, 1):  # a fragment: the first few words of a sentence
            words = rng.choice(sentences).split()
            text = " ".join(words[: rng.randint(3, 12)])
        elif kind in (2, 3, 4):  # one or two sentences
            start = rng.randrange(len(sentences) - 1)
            text = " ".join(sentences[start : start + rng.randint(1, 2)])
        elif kind in (5, 6, 7):  # a whole paragraph
            text = rng.choice(paragraphs)
        else:  # two to five paragraphs run together (~200 to ~400 tokens)
            start = rng.randrange(len(paragraphs) - 4)
            text = " ".join(paragraphs[start : start + rng.randint(2, 5)])
            words = text.split()
            text = " ".join(words[: rng.randint(150, 330)])
        rows.append({"id": f"bench-{i:03d}", "text": text})
    out = ROOT / "benches" / "corpus.jsonl"
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} paragraphs to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
