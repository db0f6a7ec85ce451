"""The Python package against the command line (issue 15, part 2): the same rows give the same
records, byte for byte; vectors equal `stancer embed`'s; errors are exceptions with the command
line's messages. The command line is STANCER_BIN, else target/release/stancer."""

import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import stancer

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("STANCER_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "stancer")

TEXTS = [
    "China offered to mediate between Russia and Ukraine, and European leaders welcomed the offer.",
    "Beijing is highly unlikely to broker any peace deal to the detriment of Russia.",
    "The alignment between Moscow and Beijing has a solid foundation in a shared worldview.",
    "Distrust and insecurity are likely to prevent a solid long-lasting alliance.",
    "Kohlekraftwerke müssen schließen, sagt die Ministerin.",
    "Центральный банк сохранил ключевую ставку без изменений.",
    "政府宣布了新的住房政策。",
    "Emoji and quotes: “peace” 🎉 — really?",
    "A line\nwith a newline inside and a tab\tcharacter.",
    "x",
]


@pytest.fixture(scope="module")
def classifier():
    return stancer.Classifier()


def cli(args, cwd):
    result = subprocess.run([BINARY, *args, "--quiet"], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_records_equal_the_command_lines_byte_for_byte(classifier, tmp_path):
    rows = stancer.rows_jsonl(TEXTS, ids=[f"row-{i}" for i in range(len(TEXTS))])
    (tmp_path / "rows.jsonl").write_text(rows, encoding="utf-8")
    expected = cli(["classify", "rows.jsonl", "--format", "jsonl", "--target", "coal power"], tmp_path)
    got = classifier.classify_jsonl(rows, doc="rows.jsonl", targets=["coal power"])
    assert got == expected
    records = classifier.classify(TEXTS, ids=[f"row-{i}" for i in range(len(TEXTS))],
                                  doc="rows.jsonl", targets=["coal power"])
    assert records == [json.loads(line) for line in expected.splitlines()]
    assert set(records[0]) >= {"doc", "paragraph", "id", "text", "theme", "stance", "tokens", "windows"}
    assert set(records[0]["stance"]) == {"china-peace-broker", "alignment-durable", "coal power"}


def test_batch_form_has_one_column_per_field(classifier):
    columns = classifier.classify_batch(TEXTS[:4], ids=["a", "b", "c", "d"])
    assert columns["id"] == ["a", "b", "c", "d"]
    assert len(columns["theme"]) == 4 and all(isinstance(t, str) for t in columns["theme"])
    assert set(columns["stance:china-peace-broker"]) <= {"favor", "against", "none"}
    assert all(0.0 <= s <= 1.0 for s in columns["stance_score:alignment-durable"])


def test_vectors_equal_stancer_embed(classifier, tmp_path):
    vectors = classifier.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    (tmp_path / "rows.jsonl").write_text(stancer.rows_jsonl(TEXTS), encoding="utf-8")
    lines = cli(["embed", "rows.jsonl"], tmp_path).splitlines()
    expected = np.array([json.loads(line)["vector"] for line in lines], dtype=np.float32)
    assert np.array_equal(vectors, expected)


def test_threads_share_one_classifier(classifier):
    alone = classifier.classify(TEXTS)
    results = [None] * 4

    def run(i):
        results[i] = classifier.classify(TEXTS)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r == alone for r in results)


def test_errors_are_exceptions_with_the_command_lines_messages(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        stancer.Classifier(model="no-such-model")
    with pytest.raises(ValueError, match="cannot read"):
        stancer.Classifier(schema=str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="theme_head 'bogus'"):
        stancer.Classifier(theme_head="bogus")
    classifier = stancer.Classifier(stance="prototype")
    with pytest.raises(ValueError, match="not valid JSON|expected"):
        classifier.classify_jsonl("{not json\n")
    with pytest.raises(ValueError, match="text must be a string"):
        classifier.classify([None])
