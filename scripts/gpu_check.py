#!/usr/bin/env python3
"""Checks stancer's CUDA build on a GPU: parity with its own CPU output and with PyTorch, and
throughput next to PyTorch, in f32, f16 and bf16 at two batch sizes. Prints one Markdown report.

Run by scripts/gpu-check.sh on the lent H200 (see scripts/GPU.md); it also runs on a CPU-only machine
with small sizes (`--device cpu`) to check the plumbing before a device call is spent on it.

Inputs (--data): tokenizer.json (the all-MiniLM-L6-v2 tokenizer) and corpus.jsonl ({"id", "text"}
rows). Weights are made here, from a fixed seed, with the all-MiniLM-L6-v2 architecture: the real
weights do not fit in a device call beside the binary.

Every result is written to --out as soon as it exists, so a later failure loses nothing:
gpu-check.json (all numbers), gpu-check.md (the report). Exit status: 0 when every parity gate
passes, 1 when one fails, 2 on an error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Progress bars of transformers and huggingface_hub would fill the device call's short log.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Everything is local; the device has no network, and a lookup would only wait for a timeout.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# The gates: minimum cosine between a paragraph's vector from stancer on the GPU in each dtype
# and the f32 reference (stancer on the CPU, and PyTorch).
GATES = {"f32": 0.99999, "f16": 0.9999, "bf16": 0.999}
TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
# all-MiniLM-L6-v2's architecture and sentence-transformers' length limit.
ARCHITECTURE = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
)
MAX_TOKENS = 256
# Large enough that only the row cap shapes batches (rows x longest <= budget), in both engines.
BATCH_TOKENS = 65536


def log(message: str) -> None:
    print(f"gpu-check: {message}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stancer", required=True, type=Path, help="the stancer binary")
    parser.add_argument("--data", required=True, type=Path, help="folder with tokenizer.json and corpus.jsonl")
    parser.add_argument("--out", required=True, type=Path, help="folder for the results")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-check"), help="scratch folder")
    parser.add_argument("--device", default="cuda", help="where stancer and PyTorch run the checks: cuda or cpu (a dry run)")
    parser.add_argument("--dtypes", default="f32,f16,bf16")
    parser.add_argument("--batches", default="32,128", help="rows per batch to time")
    parser.add_argument("--paragraphs", type=int, default=2048, help="paragraphs from the corpus (at most)")
    parser.add_argument("--cpu-paragraphs", type=int, default=1024, help="of those, how many stancer also embeds on the CPU")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per configuration (median reported)")
    parser.add_argument("--seed", type=int, default=20240605)
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed to one stancer run")
    return parser.parse_args()


class Results:
    """All numbers of the run, rewritten to disk on every change."""

    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.data: dict = {"parity": [], "throughput": []}

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def add(self, key: str, row: dict) -> None:
        self.data[key].append(row)
        self.save()

    def save(self) -> None:
        (self.out / "gpu-check.json").write_text(json.dumps(self.data, indent=2) + "\n")
        (self.out / "gpu-check.md").write_text(render(self.data))


# ---------------------------------------------------------------------------------------------
# Inputs: the model folder and the corpus


def make_model(folder: Path, tokenizer: Path, seed: int) -> None:
    """A BERT with all-MiniLM-L6-v2's shape and seeded random weights, saved as transformers does.

    Every parameter is drawn again (LayerNorm scales near 1, shifts and biases near 0, matrices with
    std 0.05, so attention is far from uniform), so that a swapped or ignored tensor changes the
    output instead of hiding behind BERT's default initialisation (scales 1, biases 0)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(**ARCHITECTURE)
    torch.manual_seed(seed)
    model = BertModel(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "LayerNorm.weight" in name:
                parameter.copy_(1.0 + 0.1 * noise)
            else:
                parameter.copy_(0.05 * noise)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        model.save_pretrained(folder, safe_serialization=True)
    except TypeError:  # transformers versions that always write safetensors dropped the flag
        model.save_pretrained(folder)
    if not (folder / "model.safetensors").is_file():
        raise RuntimeError(f"transformers wrote no model.safetensors in {folder}: {sorted(os.listdir(folder))}")
    shutil.copy(tokenizer, folder / "tokenizer.json")
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_TOKENS}) + "\n")
    names = set(json.loads((folder / "config.json").read_text()))
    assert {"hidden_size", "num_hidden_layers"} <= names, "config.json lacks the BERT fields"


def load_corpus(data: Path, limit: int):
    """Paragraphs and their token ids (special tokens included), keeping those within MAX_TOKENS so
    each is one sequence in both engines."""
    from tokenizers import Tokenizer

    rows = [json.loads(line) for line in (data / "corpus.jsonl").read_text().splitlines() if line.strip()]
    tokenizer = Tokenizer.from_file(str(data / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    encodings = tokenizer.encode_batch([row["text"] for row in rows], add_special_tokens=True)
    kept = [(row, enc.ids) for row, enc in zip(rows, encodings) if len(enc.ids) <= MAX_TOKENS]
    dropped = len(rows) - len(kept)
    kept = kept[:limit]
    return [row for row, _ in kept], [ids for _, ids in kept], dropped, tokenizer


def write_jsonl(path: Path, rows) -> None:
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps({"id": row["id"], "text": row["text"]}) + "\n")


# ---------------------------------------------------------------------------------------------
# Batching: the same plan as stancer's src/encode/batch.rs, so both engines run the same batches.


def plan(lengths, token_budget: int, max_rows: int):
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, current, longest = [], [], 0
    for index in order:
        length = lengths[index]
        would_be = (len(current) + 1) * max(longest, length)
        if current and (would_be > token_budget or len(current) >= max_rows):
            batches.append(current)
            current, longest = [], 0
        longest = max(longest, length)
        current.append(index)
    if current:
        batches.append(current)
    return batches


# ---------------------------------------------------------------------------------------------
# stancer


def run_stancer(binary: Path, arguments, timeout: int) -> subprocess.CompletedProcess:
    command = [str(binary), *map(str, arguments)]
    log("$ " + " ".join(command))
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    result.seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"stancer exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def stancer_vectors(binary, model, corpus: Path, device, dtype, out: Path, ids, timeout):
    """Runs `stancer embed` and returns its vectors in corpus order, checking token counts."""
    run_stancer(binary, ["embed", corpus, "--model", model, "--device", device, "--dtype", dtype, "-q", "-o", out], timeout)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(ids), f"stancer wrote {len(records)} vectors for {len(ids)} paragraphs"
    mismatched = [i for i, (r, t) in enumerate(zip(records, ids)) if r["tokens"] != len(t) or r["windows"] != 1]
    if mismatched:
        i = mismatched[0]
        raise RuntimeError(
            f"{len(mismatched)} paragraphs tokenised differently from the tokenizers package "
            f"(first: {records[i]['id']}: stancer {records[i]['tokens']} tokens, {records[i]['windows']} windows; python {len(ids[i])})"
        )
    return torch.tensor([r["vector"] for r in records], dtype=torch.float64)


def stancer_throughput(binary, model, corpus, work, device, dtype, rows, passes, timeout):
    """Paragraphs per second of stancer, tokenization included, as `stancer bench` reports it (the
    median of timed passes over the whole corpus after a warm-up)."""
    report = work / f"bench-{dtype}-{rows}.json"
    run_stancer(
        binary,
        ["bench", corpus, "--model", model, "--device", device, "--dtype", dtype, "--batch-rows", rows,
         "--batch-tokens", BATCH_TOKENS, "--passes", passes, "--json", report, "-q"],
        timeout,
    )
    data = json.loads(report.read_text())
    return {"paragraphs_per_second": data["paragraphs_per_second"], "method": "stancer bench (median pass)"}


# ---------------------------------------------------------------------------------------------
# PyTorch


def torch_model(folder: Path, device: str, dtype: str):
    from transformers import BertModel

    # Loaded in f32 and cast, which every transformers version does the same way.
    model = BertModel.from_pretrained(folder, attn_implementation="sdpa")
    return model.to(device=device, dtype=TORCH_DTYPES[dtype]).eval()


def padded(batch_ids):
    rows, length = len(batch_ids), max(len(s) for s in batch_ids)
    ids = torch.zeros((rows, length), dtype=torch.long)
    mask = torch.zeros((rows, length), dtype=torch.long)
    for r, sequence in enumerate(batch_ids):
        ids[r, : len(sequence)] = torch.tensor(sequence)
        mask[r, : len(sequence)] = 1
    return ids, mask


@torch.inference_mode()
def torch_forward(model, ids, mask, device):
    """Masked mean pooling over the last hidden state, in f32, as sentence-transformers and stancer
    do; the result is copied to the host, which waits for the GPU."""
    ids, mask = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    weights = mask.unsqueeze(-1).float()
    return ((hidden * weights).sum(1) / weights.sum(1)).cpu()


def torch_vectors(model, ids, device, rows=128):
    vectors = torch.zeros((len(ids), ARCHITECTURE["hidden_size"]), dtype=torch.float64)
    for batch in plan([len(s) for s in ids], BATCH_TOKENS, rows):
        out = torch_forward(model, *padded([ids[i] for i in batch]), device)
        vectors[batch] = out.double()
    return vectors


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def torch_throughput(model, texts, ids, tokenizer, device, rows, passes):
    """Paragraphs per second of PyTorch on the same batches: with the token ids ready and padded on
    the host (the model alone), and with tokenization and padding inside the clock."""
    batches = plan([len(s) for s in ids], BATCH_TOKENS, rows)
    prepared = [padded([ids[i] for i in batch]) for batch in batches]

    def model_only():
        for batch_ids, mask in prepared:
            torch_forward(model, batch_ids, mask, device)

    def with_tokenization():
        encodings = tokenizer.encode_batch(texts, add_special_tokens=True)
        fresh = [e.ids for e in encodings]
        for batch in plan([len(s) for s in fresh], BATCH_TOKENS, rows):
            torch_forward(model, *padded([fresh[i] for i in batch]), device)

    result = {}
    for name, work in [("model", model_only), ("end_to_end", with_tokenization)]:
        work()  # warm-up: kernels chosen, allocator filled
        synchronize(device)
        seconds = []
        for _ in range(passes):
            started = time.perf_counter()
            work()
            synchronize(device)
            seconds.append(time.perf_counter() - started)
        result[name] = len(ids) / statistics.median(seconds)
    return result


# ---------------------------------------------------------------------------------------------
# Parity


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


def parity_row(name, a, b, gate=None):
    c = cosines(a, b)
    nan = int(torch.isnan(c).sum())
    row = {"pair": name, "paragraphs": len(c), "min": float(c.nan_to_num(-1.0).min()),
           "mean": float(c.nan_to_num(-1.0).mean()), "nan": nan, "gate": gate}
    row["passed"] = None if gate is None else (nan == 0 and row["min"] >= gate)
    return row


# ---------------------------------------------------------------------------------------------
# Report


def render(data: dict) -> str:
    lines = ["# stancer GPU check", ""]
    env = data.get("environment", {})
    if env:
        lines.append(
            f"{env.get('date', '?')} · {env.get('gpu', '?')} (driver {env.get('driver', '?')}) · "
            f"{env.get('stancer', '?')} · torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}"
        )
        lines.append("")
    corpus = data.get("corpus")
    if corpus:
        lines.append(
            f"Corpus: {corpus['paragraphs']} paragraphs, {corpus['tokens']} tokens (mean {corpus['mean_tokens']:.1f}, "
            f"max {corpus['max_tokens']}); weights: all-MiniLM-L6-v2 architecture, seed {corpus['seed']}, random."
        )
        lines.append("")
    if data["throughput"]:
        lines += [
            "## Throughput (paragraphs/s)",
            "",
            "| dtype | batch | stancer | PyTorch (model) | PyTorch (tokenize + model) | stancer / PyTorch (model) |",
            "|---|---|---|---|---|---|",
        ]
        for row in data["throughput"]:
            ours, theirs = row.get("stancer"), row.get("torch_model")
            ratio = f"{ours / theirs:.2f}x" if ours and theirs else "n/a"
            lines.append(
                f"| {row['dtype']} | {row['batch']} | {fmt(ours)} | {fmt(theirs)} | {fmt(row.get('torch_end_to_end'))} | {ratio} |"
            )
        methods = sorted({row.get("method", "") for row in data["throughput"]} - {""})
        lines += ["", "stancer: " + "; ".join(methods) + ". Both engines run the same batches (longest first, "
                  f"rows capped at the batch size, {BATCH_TOKENS}-token budget); tokenization is inside stancer's clock.", ""]
    if data["parity"]:
        lines += ["## Parity (cosine per paragraph)", "", "| pair | paragraphs | min | mean | NaN | gate | |", "|---|---|---|---|---|---|---|"]
        for row in data["parity"]:
            verdict = {True: "pass", False: "**FAIL**", None: "info"}[row["passed"]]
            gate = "" if row["gate"] is None else f">= {row['gate']}"
            lines.append(
                f"| {row['pair']} | {row['paragraphs']} | {row['min']:.7f} | {row['mean']:.7f} | {row['nan']} | {gate} | {verdict} |"
            )
        lines.append("")
    if "spread" in data:
        lines += [f"For scale: the mean cosine between neighbouring paragraphs (PyTorch f32) is {data['spread']:.4f}.", ""]
    for note in data.get("notes", []):
        lines.append(f"- {note}")
    if data.get("error"):
        lines += ["", f"**Stopped early:** {data['error']}"]
    return "\n".join(lines).rstrip() + "\n"


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    dtypes = [d for d in args.dtypes.split(",") if d]
    batch_sizes = [int(b) for b in args.batches.split(",") if b]
    for d in dtypes:
        if d not in GATES:
            raise SystemExit(f"gpu-check: unknown dtype '{d}' (f32, f16, bf16)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu-check: PyTorch sees no CUDA device; pass --device cpu for a dry run")
    torch.backends.cuda.matmul.allow_tf32 = False  # the f32 reference is true f32
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")

    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    results = Results(args.out)
    started = time.perf_counter()
    try:
        return check(args, dtypes, batch_sizes, work, results, started)
    except Exception as error:  # keep what was measured, say where it stopped
        results.set("error", f"{type(error).__name__}: {error}")
        log(f"error: {error}")
        return 2
    finally:
        results.set("seconds", time.perf_counter() - started)
        log(f"done in {time.perf_counter() - started:.0f} s")


def check(args, dtypes, batch_sizes, work, results, started) -> int:
    import transformers

    binary = args.stancer
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    driver = "n/a"
    if shutil.which("nvidia-smi"):
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip() or "?"
    results.set("environment", {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "gpu": gpu, "driver": driver, "stancer": version, "torch": torch.__version__,
        "transformers": transformers.__version__, "device": args.device, "python": platform.python_version(),
    })

    model = work / "model"
    make_model(model, args.data / "tokenizer.json", args.seed)
    rows, ids, dropped, tokenizer = load_corpus(args.data, args.paragraphs)
    texts = [row["text"] for row in rows]
    lengths = [len(s) for s in ids]
    results.set("corpus", {"paragraphs": len(rows), "tokens": sum(lengths), "mean_tokens": sum(lengths) / len(rows),
                           "max_tokens": max(lengths), "dropped_longer_than_limit": dropped, "seed": args.seed})
    corpus = work / "corpus.jsonl"
    write_jsonl(corpus, rows)
    cpu_count = min(args.cpu_paragraphs, len(rows))
    cpu_corpus = work / "corpus-cpu.jsonl"
    write_jsonl(cpu_corpus, rows[:cpu_count])
    log(f"{len(rows)} paragraphs, {sum(lengths)} tokens; model in {model} ({time.perf_counter() - started:.0f} s)")

    # The references: stancer on the CPU in f32, PyTorch in f32 on the device.
    reference_cpu = stancer_vectors(binary, model, cpu_corpus, "cpu", "f32", work / "stancer-cpu-f32.jsonl", ids[:cpu_count], args.timeout)
    torch_models = {"f32": torch_model(model, args.device, "f32")}
    reference_torch = torch_vectors(torch_models["f32"], ids, args.device)
    neighbours = cosines(reference_torch[:-1], reference_torch[1:])
    results.set("spread", float(neighbours.mean()))
    results.add("parity", parity_row("stancer cpu f32 vs PyTorch f32", reference_cpu, reference_torch[:cpu_count], GATES["f32"]))

    results.set("notes", [])
    for dtype in dtypes:
        vectors = stancer_vectors(binary, model, corpus, args.device, dtype, work / f"stancer-{dtype}.jsonl", ids, args.timeout)
        label = f"stancer {args.device} {dtype}"
        results.add("parity", parity_row(f"{label} vs stancer cpu f32", vectors[:cpu_count], reference_cpu, GATES[dtype]))
        results.add("parity", parity_row(f"{label} vs PyTorch f32", vectors, reference_torch, GATES[dtype]))
        if dtype not in torch_models:
            torch_models[dtype] = torch_model(model, args.device, dtype)
        if dtype != "f32":
            own = torch_vectors(torch_models[dtype], ids, args.device)
            results.add("parity", parity_row(f"PyTorch {dtype} vs PyTorch f32 (its own error)", own, reference_torch))
        log(f"parity {dtype} done ({time.perf_counter() - started:.0f} s)")

    for dtype in dtypes:
        for rows_per_batch in batch_sizes:
            ours = stancer_throughput(binary, model, corpus, work, args.device, dtype, rows_per_batch, args.passes,
                                      args.timeout)
            theirs = torch_throughput(torch_models[dtype], texts, ids, tokenizer, args.device, rows_per_batch, args.passes)
            results.add("throughput", {"dtype": dtype, "batch": rows_per_batch, "stancer": ours["paragraphs_per_second"],
                                       "method": ours["method"], "torch_model": theirs["model"],
                                       "torch_end_to_end": theirs["end_to_end"]})
            log(f"throughput {dtype} batch {rows_per_batch}: stancer {fmt(ours['paragraphs_per_second'])}, "
                f"PyTorch {fmt(theirs['model'])} paragraphs/s ({time.perf_counter() - started:.0f} s)")

    print(render(results.data))
    failed = [row["pair"] for row in results.data["parity"] if row["passed"] is False]
    if failed:
        log("parity gates failed: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
