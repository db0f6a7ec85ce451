#!/usr/bin/env bash
# Assembles a CUDA 13.0 toolkit from PyPI wheels, so that `--features cuda` builds on a machine
# without a system CUDA (no GPU needed), and prints the environment that points cargo at it.
#
#   eval "$(scripts/cuda-toolchain.sh)"      # assemble if needed, then export the environment
#   scripts/cuda-toolchain.sh --env          # the same export lines, assembling only if needed
#   scripts/cuda-toolchain.sh --force        # assemble again even if the stamp says it is done
#
# Users with their own CUDA toolkit need none of this: `cargo build --release --features cuda`.
#
# The toolkit goes to $STANCER_CUDA_HOME (default ~/.cache/stancer-cuda/toolkit), outside the
# repository, so every checkout and CI run on one machine shares it; a stamp file makes a second run
# a no-op. Progress goes to stderr, the export lines alone to stdout.
#
# What it does (see ../shared/guides/gpu.md for why each step is needed):
# 1. downloads the wheels pinned in scripts/cuda-requirements.txt, sha256-checked by pip;
# 2. unpacks them together: their `nvidia/cu13/` folder is a working CUDA_HOME (nvcc.profile finds
#    cicc and the headers), then adds `lib64 -> lib` and unversioned `lib*.so` links for the linker;
# 3. generates `lib/stubs/libcuda.so` (SONAME libcuda.so.1), a stand-in for the driver library that
#    no wheel ships: candle turns on cudarc's dynamic linking, so the link needs `-lcuda`. Every `cu*`
#    function in cudarc's driver bindings is exported and fails with CUDA_ERROR_NO_DEVICE; at run
#    time on a GPU machine the driver's real libcuda.so.1 is loaded instead.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

force=0
for arg in "$@"; do
    case $arg in
        --env) ;;
        --force) force=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "cuda-toolchain.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

log() { echo "cuda-toolchain: $*" >&2; }
die() { echo "cuda-toolchain: $*" >&2; exit 1; }

scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$scripts")
requirements=$scripts/cuda-requirements.txt
home=${STANCER_CUDA_HOME:-$HOME/.cache/stancer-cuda/toolkit}
cuda=$home/cu13
stubs=$cuda/lib/stubs

# cudarc's version decides which driver symbols the stub must export.
cudarc_version=$(awk '/^name = "cudarc"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")
[[ -n $cudarc_version ]] || die "no cudarc in Cargo.lock; is candle's cuda feature still wired in Cargo.toml?"

# The stamp names everything the result depends on, so a change to any of them rebuilds it.
stamp_text=$(
    sha256sum "$requirements" "${BASH_SOURCE[0]}" | awk '{ print $1 }'
    echo "cudarc $cudarc_version"
)

print_env() {
    # A real driver, where there is one, must win over the stub at run time.
    local runtime_path=$cuda/lib
    if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
        runtime_path=$runtime_path:$stubs
    fi
    printf 'export CUDA_HOME=%q\n' "$cuda"
    printf 'export CUDA_PATH=%q\n' "$cuda"
    printf 'export PATH=%q"${PATH:+:$PATH}"\n' "$cuda/bin"
    printf 'export CUDA_COMPUTE_CAP=%q\n' "${CUDA_COMPUTE_CAP:-90}"
    printf 'export LIBRARY_PATH=%q"${LIBRARY_PATH:+:$LIBRARY_PATH}"\n' "$cuda/lib:$stubs"
    printf 'export LD_LIBRARY_PATH=%q"${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\n' "$runtime_path"
}

mkdir -p "$home"
exec 9>"$home/.lock"
flock 9 # one assembler at a time (CI and a session may share the cache)

if [[ $force == 0 && -f $home/stamp && $(cat "$home/stamp") == "$stamp_text" ]]; then
    print_env
    exit 0
fi

started=$SECONDS
wheels=$home/wheels
mkdir -p "$wheels"
log "downloading CUDA 13.0 wheels into $wheels (about 650 MB the first time)"
# --python-version and --platform make the choice of wheel independent of the local Python; the
# wheels hold no Python code that stancer uses, only the toolkit's files.
python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$wheels" -r "$requirements" >&2 ||
    die "pip download failed (network, or a wheel whose sha256 differs from scripts/cuda-requirements.txt)"

log "unpacking"
staging=$home/.staging
rm -rf "$staging" "$cuda.old"
mkdir -p "$staging"
expected=$(grep -cE '^[a-z]' "$requirements")
count=0
while read -r name version; do
    wheel=$(ls "$wheels"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n1)
    [[ -n $wheel ]] || die "no wheel for $name==$version in $wheels"
    unzip -q -o "$wheel" 'nvidia/*' -d "$staging"
    count=$((count + 1))
done < <(sed -nE 's/^([a-z0-9-]+)==([^ ]+).*/\1 \2/p' "$requirements")
[[ $count == "$expected" ]] || die "unpacked $count wheels, expected $expected"
[[ -x $staging/nvidia/cu13/bin/nvcc ]] || die "the wheels hold no nvidia/cu13/bin/nvcc"

new=$staging/nvidia/cu13
ln -sfn lib "$new/lib64"
# The wheels ship only versioned names (libcublas.so.13); the linker looks for libcublas.so.
for library in "$new"/lib/lib*.so.*; do
    base=${library##*/}
    base=${base%%.so.*}.so
    [[ -e $new/lib/$base ]] || ln -s "${library##*/}" "$new/lib/$base"
done

log "generating the stub libcuda.so from cudarc $cudarc_version's driver bindings"
bindings=""
for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
    [[ -f $registry/cudarc-$cudarc_version/src/driver/sys/mod.rs ]] &&
        bindings=$registry/cudarc-$cudarc_version/src/driver/sys/mod.rs
done
if [[ -z $bindings ]]; then
    log "cudarc $cudarc_version is not in cargo's registry yet; fetching it"
    (cd "$root" && cargo fetch --locked >&2)
    for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
        [[ -f $registry/cudarc-$cudarc_version/src/driver/sys/mod.rs ]] &&
            bindings=$registry/cudarc-$cudarc_version/src/driver/sys/mod.rs
    done
fi
[[ -n $bindings ]] || die "cannot find cudarc-$cudarc_version/src/driver/sys/mod.rs under cargo's registry"
mkdir -p "$new/lib/stubs"
stub_source=$new/lib/stubs/libcuda-stub.c
{
    cat <<'C'
/* Stand-in for the CUDA driver library, generated by stancer's scripts/cuda-toolchain.sh so that
 * `-lcuda` links on a machine without a driver. Every entry point fails with
 * CUDA_ERROR_NO_DEVICE (100); the error-string functions say where the failure comes from. */
static const char stub_name[] = "CUDA_ERROR_NO_DEVICE";
static const char stub_text[] = "no CUDA driver on this machine (stancer's build stub libcuda.so.1 was loaded)";
int cuGetErrorName(int error, const char **text) { (void)error; if (text) *text = stub_name; return 0; }
int cuGetErrorString(int error, const char **text) { (void)error; if (text) *text = stub_text; return 0; }
C
    grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+' "$bindings" | awk '{ print $4 }' | sort -u |
        grep -vxE 'cuGetErrorName|cuGetErrorString' |
        awk '{ print "int " $1 "(void) { return 100; }" }'
} >"$stub_source"
symbols=$(grep -c 'return 100' "$stub_source")
[[ $symbols -gt 100 ]] || die "found only $symbols cu* functions in $bindings; has cudarc's layout changed?"
cc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$new/lib/stubs/libcuda.so.1" "$stub_source"
ln -sfn libcuda.so.1 "$new/lib/stubs/libcuda.so"

version=$("$new/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
[[ $version == 13.0 ]] || die "nvcc says release '$version', expected 13.0"

# Swap the finished toolkit in whole, so an interrupted run never leaves a half-made one.
[[ -e $cuda ]] && mv "$cuda" "$cuda.old"
mv "$new" "$cuda"
rm -rf "$staging" "$cuda.old"
echo "$stamp_text" >"$home/stamp"
log "CUDA $version ready in $cuda ($((symbols + 2)) driver symbols stubbed; $((SECONDS - started)) s)"
print_env
