#!/usr/bin/env python3
"""Classify a partitioned dataset with stancer on Apache Spark (issue 15).

    spark-submit examples/spark/classify_job.py INPUT OUTPUT [--format jsonl|parquet]
        [--model NAME] [--stance NAME|prototype] [--partitions N]

INPUT is JSON Lines or Parquet with an `id` and a `text` column (a folder of part files is fine);
OUTPUT is a folder of JSON Lines part files, one row per input row: `id`, `theme`, and `record`,
the whole stancer record as the command line writes it (except `doc`, `paragraph`, `start` and
`end`, which name a place in a file; here they name the row's place in its Arrow batch).

The work is a `mapInPandas` over the `stancer` Python package (pip install ./python on every
executor). Each executor's Python worker builds one `stancer.Classifier` the first time it needs
one and keeps it (Spark reuses its Python workers, spark.python.worker.reuse, the default), so a
model is loaded once per worker, not once per batch. Models are fetched into $STANCER_HOME on
first use: on a cluster, point STANCER_HOME at a shared, pre-filled cache (see README.md).
"""

import argparse
import json
import os

import pandas as pd

_CLASSIFIER = None


def _classifier(model, stance):
    global _CLASSIFIER
    if _CLASSIFIER is None:
        import stancer

        _CLASSIFIER = stancer.Classifier(model=model, stance=stance)
    return _CLASSIFIER


def classify_batches(batches, model=None, stance=None):
    """The mapInPandas function: pandas batches of (id, text) in, (id, theme, record) out."""
    import stancer

    classifier = _classifier(model, stance)
    for frame in batches:
        rows = stancer.rows_jsonl(frame["text"].tolist(), frame["id"].astype(str).tolist())
        lines = classifier.classify_jsonl(rows, doc="spark").splitlines()
        records = [json.loads(line) for line in lines]
        yield pd.DataFrame({
            "id": [r["id"] for r in records],
            "theme": [(r.get("theme") or {}).get("label") for r in records],
            "record": [json.dumps({k: v for k, v in r.items() if k not in ("doc", "paragraph", "start", "end")},
                                  ensure_ascii=False) for r in records],
        })


def run(spark, source, output, fmt="jsonl", model=None, stance=None, partitions=None):
    # The workers import this module to run classify_batches: ship it to them.
    spark.sparkContext.addPyFile(os.path.abspath(__file__))
    reader = spark.read.parquet if fmt == "parquet" else spark.read.json
    frame = reader(source).select("id", "text")
    if partitions:
        frame = frame.repartition(partitions)
    result = frame.mapInPandas(lambda batches: classify_batches(batches, model, stance),
                               schema="id string, theme string, record string")
    result.write.mode("overwrite").json(output)
    return frame.rdd.getNumPartitions()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    parser.add_argument("--model")
    parser.add_argument("--stance")
    parser.add_argument("--partitions", type=int)
    args = parser.parse_args()
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("stancer-classify").getOrCreate()
    run(spark, args.input, args.output, args.format, args.model, args.stance, args.partitions)
    spark.stop()


if __name__ == "__main__":
    main()
