#!/usr/bin/env bash
# The GPU check of issue 6: stancer's CUDA build against its own CPU output and PyTorch, with
# throughput side by side, on the lent H200 in one device call. See scripts/GPU.md.
#
#   scripts/gpu-check.sh prepare     # here: build the CUDA binary, fill .gpu-check/ (ignored) for `carry`
#   scripts/gpu-check.sh device      # there, in the device call: run the check, results to $OUT
#   scripts/gpu-check.sh dry-run     # here, on the CPU, small sizes: check the plumbing first
#
# Arguments after the mode go to scripts/gpu_check.py (e.g. `device --passes 5`).
# prepare: SKIP_BUILD=1 packs the binary already built; CORPUS=FILE takes paragraphs from a .jsonl
# with "text" fields (default ../shared/data/agnews-test.jsonl, else the repo's eval fixtures).
# dry-run: PYTHON=... a Python with torch, transformers and tokenizers (default: python3).
set -euo pipefail

mode=${1:-}
shift || true
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pack=$root/.gpu-check
cd "$root"

die() { echo "gpu-check: $*" >&2; exit 2; }

prepare() {
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        nice -n 19 scripts/cuda-build.sh build -- --bin stancer
    fi
    local binary=${CARGO_TARGET_DIR:-$HOME/.cache/stancer-cuda/target}/release/stancer
    [[ -x $binary ]] || die "no CUDA build at $binary; run without SKIP_BUILD=1"
    mkdir -p "$pack"
    # The release profile keeps line tables; the device needs none, and the call carries 64 MiB.
    objcopy --strip-debug "$binary" "$pack/stancer"
    gzip -9 -f "$pack/stancer"

    local tokenizer=${STANCER_HOME:-$HOME/.cache/stancer}/models/minilm-l6/tokenizer.json
    [[ -f $tokenizer ]] || die "no $tokenizer; run \`stancer models fetch minilm-l6\` once"
    cp "$tokenizer" "$pack/tokenizer.json"

    # Paragraphs for timing and parity on the device only; the data stays out of the repository.
    # Without the shared data, the fixture paragraphs are used, repeated to a few thousand.
    python3 - "${CORPUS:-$root/../shared/data/agnews-test.jsonl}" "$root/eval/fixtures" "$pack/corpus.jsonl" <<'PY'
import json, pathlib, sys
source, fixtures, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
if source.is_file():
    texts = [json.loads(line)["text"] for line in source.open() if line.strip()][:2048]
else:
    print(f"gpu-check: no {source}; using the fixture paragraphs", file=sys.stderr)
    found = [p.strip() for f in sorted(fixtures.glob("*.txt")) for p in f.read_text().split("\n\n")]
    found += [json.loads(l)["text"] for f in sorted(fixtures.glob("*.jsonl")) for l in f.open() if l.strip()]
    found = [t for t in found if len(t.split()) >= 8]
    texts = [found[i % len(found)] for i in range(2048)]
with open(target, "w") as f:
    for i, text in enumerate(texts):
        f.write(json.dumps({"id": f"p{i}", "text": text}) + "\n")
print(f"gpu-check: {len(texts)} paragraphs in {target}", file=sys.stderr)
PY
    echo "gpu-check: $pack is ready:" >&2
    du -h "$pack"/* >&2
    local total
    total=$(($(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n1 | cut -f1) + $(du -cb "$pack"/* | tail -n1 | cut -f1)))
    echo "gpu-check: working tree plus .gpu-check: $((total / 1048576)) MiB of the 64 MiB a call carries" >&2
    echo "gpu-check: now call the device tool: run(command=\"bash scripts/gpu-check.sh device\", carry=[\".gpu-check\"], timeout_s=480)" >&2
}

device() {
    local out=${OUT:-/tmp/gpu-check-out}
    mkdir -p "$out"
    exec > >(tee "$out/gpu-check.log") 2>&1
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv || true
    [[ -f $pack/stancer.gz ]] || die "no .gpu-check/stancer.gz: run \`scripts/gpu-check.sh prepare\` here and name .gpu-check in carry"
    local binary=/tmp/stancer-gpu/stancer
    mkdir -p /tmp/stancer-gpu
    gunzip -c "$pack/stancer.gz" >"$binary"
    chmod +x "$binary"
    # cuBLAS, cuRAND, NVRTC and the CUDA runtime come from the device's PyTorch installation; the
    # driver's libcuda.so.1 is already on the loader's path.
    local libraries
    libraries=$(python3 - <<'PY'
import glob, os, site, sys
import torch
roots = {os.path.dirname(os.path.dirname(torch.__file__)), *site.getsitepackages()}
hits = sorted(p for r in roots for p in glob.glob(os.path.join(r, "nvidia", "**", "libcublas.so.13"), recursive=True))
if not hits:
    hits = sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "**", "libcublas.so.13"), recursive=True))
print(os.path.dirname(hits[0]) if hits else "", end="")
PY
) || die "python3 cannot import torch; the check needs the device's PyTorch"
    [[ -n $libraries ]] || die "no libcublas.so.13 under the PyTorch installation; find one with \`find / -name 'libcublas.so.13*'\`"
    export LD_LIBRARY_PATH=$libraries${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "gpu-check: LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    if ldd "$binary" | grep 'not found'; then
        die "the binary misses the libraries above"
    fi
    "$binary" --version
    # The first CUDA run JIT-compiles candle's PTX (about 20 s); the driver's cache keeps the result
    # for the later runs, if it is large enough.
    export CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-4294967296}
    local status=0
    PYTHONUNBUFFERED=1 timeout 420 python3 scripts/gpu_check.py --stancer "$binary" --data "$pack" \
        --out "$out" "$@" || status=$?
    [[ $status == 124 ]] && echo "gpu-check: stopped after 420 s; $out keeps what was measured"
    sleep 1 # let tee write the end of the log before the call collects $OUT
    return "$status"
}

dry_run() {
    local python=${PYTHON:-python3}
    [[ -f $pack/stancer.gz ]] || die "no .gpu-check/stancer.gz: run \`scripts/gpu-check.sh prepare\` first"
    local binary=${STANCER:-}
    if [[ -z $binary ]]; then
        binary=/tmp/stancer-gpu-dry/stancer
        mkdir -p /tmp/stancer-gpu-dry
        gunzip -c "$pack/stancer.gz" >"$binary"
        chmod +x "$binary"
        # A CUDA build needs libcuda.so.1 even on the CPU path: the toolkit's stub stands in here.
        eval "$(scripts/cuda-toolchain.sh --env)"
    fi
    PYTHONUNBUFFERED=1 "$python" scripts/gpu_check.py --stancer "$binary" --data "$pack" \
        --out "${OUT:-/tmp/gpu-check-dry-out}" --work /tmp/gpu-check-dry --device cpu \
        --paragraphs 64 --cpu-paragraphs 32 --batches 16,128 --passes 1 --dtypes f32,bf16 "$@"
}

case $mode in
    prepare) prepare "$@" ;;
    device) device "$@" ;;
    dry-run) dry_run "$@" ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac
