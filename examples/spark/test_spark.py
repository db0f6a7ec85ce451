"""The Spark example against one `stancer classify` run (issue 15): pyspark in local mode
(local[2]), 3,000 rows in 4 partitions; every row's record equals the command line's, row for
row (except the fields that name a place in a file: doc, paragraph, start, end)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
BINARY = os.environ.get("STANCER_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "stancer")

pyspark = pytest.importorskip("pyspark")

PLACE = ("doc", "paragraph", "start", "end")


def test_spark_local_run_equals_one_cli_run(tmp_path):
    import classify_job
    from pyspark.sql import SparkSession

    words = ["China", "Russia", "mediation", "peace", "Ukraine", "alignment", "distrust", "energy", "Europe",
             "sanctions", "alliance", "Beijing", "Moscow", "talks", "war"]
    rows = []
    for i in range(3000):
        text = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(6 + i % 9)).capitalize() + "."
        rows.append({"id": f"row-{i:05d}", "text": text})
    source = tmp_path / "input"
    source.mkdir()
    for part in range(4):
        with open(source / f"part-{part}.jsonl", "w", encoding="utf-8") as f:
            for row in rows[part::4]:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    together = tmp_path / "all.jsonl"
    together.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    started = time.perf_counter()
    cli = subprocess.run([BINARY, "classify", str(together), "--stance", "prototype", "--format", "jsonl",
                          "--quiet"], capture_output=True, text=True)
    cli_seconds = time.perf_counter() - started
    assert cli.returncode == 0, cli.stderr
    expected = {}
    for line in cli.stdout.splitlines():
        record = json.loads(line)
        expected[record["id"]] = {k: v for k, v in record.items() if k not in PLACE}

    # Two Python workers with one thread each: the same two cores the command line used.
    os.environ["RAYON_NUM_THREADS"] = "1"
    # The workers run this interpreter, which has stancer, pandas and pyarrow.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (SparkSession.builder.master("local[2]").appName("stancer-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
             .getOrCreate())
    try:
        started = time.perf_counter()
        output = tmp_path / "output"
        partitions = classify_job.run(spark, str(source), str(output), stance="prototype", partitions=4)
        spark_seconds = time.perf_counter() - started
    finally:
        spark.stop()
    got = {}
    for part in output.glob("part-*.json"):
        for line in part.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            record = json.loads(row["record"])
            assert row["id"] == record["id"] and row["theme"] == record["theme"]["label"]
            assert row["id"] not in got, f"{row['id']} twice"
            got[row["id"]] = record
    assert partitions >= 4, partitions
    assert len(got) == len(rows)
    assert got == expected
    print(f"\nparagraphs/s: stancer classify {len(rows) / cli_seconds:.0f} (one process, all cores), "
          f"Spark local[2] {len(rows) / spark_seconds:.0f} (two Python workers, one thread each; "
          f"Spark start-up excluded, model loads included)")
