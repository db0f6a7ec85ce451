#!/usr/bin/env bash
# Builds stancer with `--features cuda` against the PyPI CUDA 13.0 toolkit (scripts/cuda-toolchain.sh),
# on a machine with or without a GPU.
#
#   scripts/cuda-build.sh check   # cargo check --release --features cuda --all-targets
#   scripts/cuda-build.sh clippy  # the same with clippy's lints as errors (CI's step)
#   scripts/cuda-build.sh build   # cargo build --release --features cuda (the default)
#   scripts/cuda-build.sh build -- --bin stancer   # extra cargo arguments after --
#
# The target folder defaults to ~/.cache/stancer-cuda/target (CARGO_TARGET_DIR overrides it), so a
# cuda build never invalidates the CPU build's target/ and stays warm between runs and checkouts.
# The first build spends about 10 minutes in nvcc on candle's kernels; after that only stancer
# itself recompiles. check and clippy use the release profile so that they share the compiled
# kernels (build-script output) with `build`: one nvcc run serves all three.
# Users with their own CUDA toolkit run `cargo build --release --features cuda`.
set -euo pipefail

mode=${1:-build}
shift || true
[[ ${1:-} == -- ]] && shift
case $mode in
    check) command=(cargo check --locked --release --features cuda --all-targets) ;;
    clippy) command=(cargo clippy --locked --release --features cuda --all-targets) ;;
    build) command=(cargo build --locked --release --features cuda) ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "cuda-build.sh: unknown mode '$mode' (check, clippy or build)" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
environment=$("$root/scripts/cuda-toolchain.sh" --env)
eval "$environment"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/stancer-cuda/target}
# candle-kernels compiles its 26 .cu files through cudaforge, which runs nvcc on half the cores by
# default: one at a time on a 2-core machine. All of them halves the cold build there.
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}

cd "$root"
echo "cuda-build: ${command[*]} $* (CUDA_HOME=$CUDA_HOME, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)" >&2
if [[ $mode == clippy ]]; then
    "${command[@]}" "$@" -- -D warnings
else
    "${command[@]}" "$@"
fi
if [[ $mode == build ]]; then
    echo "cuda-build: $CARGO_TARGET_DIR/release/stancer" >&2
fi
