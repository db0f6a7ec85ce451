"""Formats eval/RESULTS.md from the JSON reports that eval/run-benchmarks.sh writes."""
import datetime
import functools
import json
import os
import platform
import subprocess
import sys

out, model = sys.argv[1], sys.argv[2]
# Optionally a base run to compare with: its reports folder and model name.
base_out, base_model = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)
if base_out and not os.path.exists(os.path.join(base_out, "commands.tsv")):
    sys.exit(f"results.py: no base run in {base_out} (run eval/run-benchmarks.sh for {base_model} first)")
commands = dict(line.rstrip("\n").split("\t", 1) for line in open(os.path.join(out, "commands.tsv")))


@functools.cache
def load(name, folder=None):
    with open(os.path.join(folder or out, name + ".json")) as f:
        return json.load(f)


def delta(name, task, key):
    """This run's metric minus the base run's, in points, or '' without a base."""
    if not base_out:
        return ""
    base = load(name, base_out).get(task) or {}
    mine = load(name).get(task) or {}
    if mine.get(key) is None or base.get(key) is None:
        return " | –"
    difference = round(100 * (mine[key] - base[key]), 1)
    return f" | {difference:+.1f}" if difference != 0 else " | 0.0"


def header(columns, deltas):
    """A table's header and separator: `columns` up to the metrics, then the Δ columns when there is a base."""
    extra = "".join(f" | Δ {d}" for d in deltas) if base_out else ""
    print(f"| {' | '.join(columns)}{extra} | paragraphs/s | note |")
    print("|---|---|---:" + "|---" * (len(columns) - 3) + ("|---:" * len(deltas) if base_out else "") + "|---:|---|")


def metric(value, interval=None):
    if value is None:
        return "–"
    text = f"{100 * value:.1f}"
    if interval:
        text += f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
    return text


def speed(report):
    pps = report["run"].get("paragraphs_per_second")
    return f"{pps:.0f}" if pps else "–"


rows = [
    ("Fixtures (83 paragraphs, 4 documents)", "zero-shot", "fixtures-zero-shot", "scored on all rows"),
    ("Fixtures (83 paragraphs, 4 documents)", "trained, 5-fold CV", "fixtures-trained-cv", "folds by paragraph"),
    ("SemEval-2016 val (294 tweets, 5 targets)", "zero-shot", "semeval-zero-shot", "parameters fitted on the train split"),
    ("SemEval-2016 val (294 tweets, 5 targets)", "trained on train split", "semeval-trained", "2,620 training tweets"),
    ("VAST dev (2,062 comments, 497 targets)", "zero-shot", "vast-zero-shot", ""),
    ("VAST dev (2,062 comments, 497 targets)", "trained, 5-fold CV", "vast-trained-cv", "folds by target: every scored target unseen"),
    ("AG News test (7,600 news leads, 4 themes)", "zero-shot", "agnews-zero-shot", "schema eval/schemas/agnews.toml"),
    ("AG News test (7,600 news leads, 4 themes)", "trained, 5-fold CV", "agnews-trained-cv", "folds by paragraph"),
]

version = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print("# Results" if not base_out else f"# Results: {model}")
print()
if base_out:
    print(f"The same runs as eval/RESULTS.md, with `{model}` in place of `{base_model}`; the Δ columns are this")
    print(f"model's score minus `{base_model}`'s on the same rows (percentage points; the reports of `{base_model}`")
    print(f"are read from `{base_out}`). Differences smaller than the intervals are not evidence of a change.")
    print()
print(f"Measured {datetime.date.today().isoformat()} with `eval/run-benchmarks.sh` (commit {version}), model `{model}`,")
print(f"on {platform.machine()} with {os.cpu_count()} cores. Scores are percentages with 95% percentile-bootstrap")
print("intervals (1,000 resamples over paragraphs, seed 2016). Regenerate with `eval/run-benchmarks.sh`; the full")
print("reports (JSON, HTML with confusion matrices and misclassified paragraphs) land in `target/benchmarks/MODEL/`.")
print()
print("paragraphs/s is each whole `eval` run (embedding, heads, and for cross-validation the training of K heads)")
print("divided by its paragraphs, on whatever else the machine was doing at the time; encoder speed is measured")
print("properly, side by side with PyTorch and ONNX Runtime, in BENCHMARKS.md.")
print()
print("## Theme")
print()
header(["data", "heads", "n", "accuracy", "accuracy, alternatives accepted", "macro-F1"], ["accuracy", "macro-F1"])
for data, heads, name, note in rows:
    report = load(name)
    theme = report.get("theme")
    if not theme:
        continue
    also = metric(theme["accuracy_also"], theme["accuracy_also_ci"]) if theme["accuracy_also"] != theme["accuracy"] else "–"
    print(f"| {data} | {heads} | {theme['n']} | {metric(theme['accuracy'], theme['accuracy_ci'])} | {also} | "
          f"{metric(theme['macro_f1'], theme['macro_f1_ci'])}{delta(name, 'theme', 'accuracy')}"
          f"{delta(name, 'theme', 'macro_f1')} | {speed(report)} | {note} |")
print()
print("## Stance")
print()
print("F_avg = (F1_favor + F1_against) / 2 is SemEval-2016's metric; macro-F1 averages all three classes (VAST's metric).")
print()
header(["data", "heads", "rows", "macro-F1", "F_avg", "accuracy"], ["macro-F1", "F_avg"])
for data, heads, name, note in rows:
    report = load(name)
    stance = report.get("stance")
    if not stance:
        continue
    print(f"| {data} | {heads} | {stance['n']} | {metric(stance['macro_f1'], stance['macro_f1_ci'])} | "
          f"{metric(stance['f_avg'], stance['f_avg_ci'])} | {metric(stance['accuracy'], stance['accuracy_ci'])}"
          f"{delta(name, 'stance', 'macro_f1')}{delta(name, 'stance', 'f_avg')} | {speed(report)} | {note} |")
print()
print("Per target (SemEval-2016 val):")
print()
print("| target | zero-shot F_avg | trained F_avg | trained macro-F1 |")
print("|---|---|---|---|")
zero = {t["target"]: t for t in load("semeval-zero-shot")["stance"]["targets"]}
for t in load("semeval-trained")["stance"]["targets"]:
    z = zero.get(t["target"], {})
    print(f"| {t['target']} | {metric(z.get('f_avg'), z.get('f_avg_ci'))} | {metric(t['f_avg'], t['f_avg_ci'])} | "
          f"{metric(t['macro_f1'], t['macro_f1_ci'])} |")
print()
print("## Reference points (from ../shared/data/README.md; other splits, for orientation only)")
print()
print("- SemEval-2016 Task 6 **test** set, F_avg: SVM baseline 67.3, RoBERTa-base 68.0, BERTweet 71.2, best in TweetEval 72.9.")
print("  Our rows are on the **validation** split (294 tweets), so they are not directly comparable: the val split is")
print("  small (intervals about ±6 points) and drawn from the training distribution, which the test set is not.")
print("- VAST **test** set, macro-F1 (zero-shot): the dataset paper's model 65.7. Our row is 5-fold cross-validation on")
print("  the **dev** set with folds split by target, so every scored target is unseen in training, as in VAST's")
print("  zero-shot setting.")
print()
print("Other encoders side by side with this one, with paired tests: `eval/RESULTS-multilingual.md`")
print("(e5-small-multilingual, on the fixtures, their translations and these sets); stance models:")
print("`eval/RESULTS-stance.md`.")
print()
print("## Commands")
print()
for name, command in commands.items():
    print(f"- `{name}`: `{command}`")
