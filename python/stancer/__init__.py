"""stancer in Python: themes and stances for every paragraph, with a local transformer.

    >>> import stancer
    >>> classifier = stancer.Classifier()            # the default model, schema and stance model
    >>> records = classifier.classify(["China offered to mediate between Russia and Ukraine."])
    >>> records[0]["theme"]["label"], records[0]["stance"]["china-peace-broker"]["label"]

A Classifier is built once (it loads the model, fetching it into the cache if needed) and is then
called as often as needed; the model runs with the GIL released. Records are the command line's
JSON Lines records, with the same fields and, for the same rows, the same bytes (`stancer classify
rows.jsonl`). Errors are ValueError (bad input or settings) or RuntimeError, with the command
line's one-line messages.
"""

import json
from typing import Dict, Iterable, List, Optional

import numpy as np

from ._stancer import Classifier as _Native

__all__ = ["Classifier", "rows_jsonl"]


def rows_jsonl(texts: Iterable[str], ids: Optional[Iterable[str]] = None) -> str:
    """The JSON Lines text `classify` reads: one {"id", "text"} row per text, written as
    `json.dumps(..., ensure_ascii=False, separators=(",", ":"))` writes it, one per line."""
    texts = list(texts)
    ids = [str(i) for i in ids] if ids is not None else [f"{i + 1}" for i in range(len(texts))]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
    lines = []
    for identifier, text in zip(ids, texts):
        if not isinstance(text, str):
            raise ValueError(f"row {identifier}: text must be a string, not {type(text).__name__}")
        lines.append(json.dumps({"id": identifier, "text": text}, ensure_ascii=False, separators=(",", ":")))
    return "".join(line + "\n" for line in lines)


class Classifier:
    """The stancer pipeline, loaded once.

    model: a manifest name (`stancer models list`), a manifest file or a model folder; None for
        the default (minilm-l6).
    schema: a schema TOML file; None for the built-in default.
    heads: trained head folders (`stancer train`), as `--head`.
    targets: free-text targets scored for every paragraph, as `--target`.
    stance, theme_head, device: as `--stance`, `--theme-head`, `--device`.
    """

    def __init__(self, model: Optional[str] = None, schema: Optional[str] = None,
                 heads: Optional[List[str]] = None, targets: Optional[List[str]] = None,
                 stance: Optional[str] = None, theme_head: Optional[str] = None,
                 device: str = "auto", quiet: bool = True):
        self._native = _Native(model=model, schema=None if schema is None else str(schema),
                               heads=None if heads is None else [str(h) for h in heads],
                               targets=targets, stance=stance, theme_head=theme_head,
                               device=device, quiet=quiet)

    @property
    def model(self) -> str:
        return self._native.model

    def classify_jsonl(self, rows: str, doc: str = "python", targets: Optional[List[str]] = None) -> str:
        """JSON Lines records for a JSON Lines text of {"id", "text", "target"?} rows, as
        `stancer classify DOC` writes them for a file DOC holding that text."""
        return self._native.classify_jsonl(rows, doc, targets)

    def classify(self, texts: Iterable[str], targets: Optional[List[str]] = None,
                 ids: Optional[Iterable[str]] = None, doc: str = "python") -> List[Dict]:
        """One record (a dict with the JSON Lines fields) per text."""
        out = self.classify_jsonl(rows_jsonl(texts, ids), doc, targets)
        return [json.loads(line) for line in out.splitlines()]

    def classify_batch(self, texts: Iterable[str], targets: Optional[List[str]] = None,
                       ids: Optional[Iterable[str]] = None) -> Dict[str, list]:
        """The records as columns, for `pandas.DataFrame(...)` or `pyarrow.table(...)`: id,
        theme, theme_score, and per target `stance:<target>` and `stance_score:<target>`."""
        records = self.classify(texts, targets=targets, ids=ids)
        columns: Dict[str, list] = {"id": [], "theme": [], "theme_score": []}
        for record in records:
            columns["id"].append(record["id"])
            theme = record.get("theme") or {}
            columns["theme"].append(theme.get("label"))
            columns["theme_score"].append(theme.get("score"))
            for target, decision in record.get("stance", {}).items():
                columns.setdefault(f"stance:{target}", []).append(decision["label"])
                columns.setdefault(f"stance_score:{target}", []).append(decision["score"])
        return columns

    def embed(self, texts: Iterable[str]) -> np.ndarray:
        """Passage vectors, one row per text (float32), as `stancer embed` gives them."""
        texts = list(texts)
        data, dimension = self._native.embed_bytes(texts)
        return np.frombuffer(data, dtype="<f4").reshape(len(texts), dimension).copy()
