#!/usr/bin/env bash
# CI step: the `cuda` feature must keep compiling, on a machine without a GPU or a CUDA install.
# Assembles CUDA 13.0 from PyPI (scripts/cuda-toolchain.sh, cached in ~/.cache/stancer-cuda) and runs
# clippy on the cuda build in its own target folder (scripts/cuda-build.sh), which type-checks every
# target with candle's CUDA backend and compiles candle's kernels with nvcc.
#
# Measured on the 2-core machine, shared and niced: cold (empty toolkit folder and target folder,
# wheels from pip's cache) 12 minutes, 15 s of it for the toolkit and about 9 in nvcc; warm (both
# cached in ~/.cache/stancer-cuda, a fresh clone elsewhere) 7 s. STANCER_SKIP_CUDA=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${STANCER_SKIP_CUDA:-0} == 1 ]]; then
    echo "== cuda build: skipped (STANCER_SKIP_CUDA=1)"
    exit 0
fi
started=$SECONDS
echo "== cuda toolkit (scripts/cuda-toolchain.sh)"
scripts/cuda-toolchain.sh --env >/dev/null
echo "   ready after $((SECONDS - started)) s"
echo "== cargo clippy --release --features cuda --all-targets (scripts/cuda-build.sh clippy)"
scripts/cuda-build.sh clippy
echo "   cuda build checked after $((SECONDS - started)) s"
