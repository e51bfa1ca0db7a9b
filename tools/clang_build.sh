#!/usr/bin/env bash
# The extension built with clang (and its OpenMP runtime, libomp) in a scratch copy, and tests
# against that build: it must have OpenMP and, on an x86-64 CPU with AVX2 or AVX-512, pick
# the same SIMD level as the GCC build (runtime dispatch, portability.h).
#
# Usage:
#   tools/clang_build.sh                    # the whole test suite
#   tools/clang_build.sh tests/test_accuracy.py -k confident   # any pytest arguments
#
# Environment: CLANG (default clang) names the compiler; PYTHON the interpreter, with the
# package's build and test dependencies. Nothing in the repository is written (see
# tools/scratch_build.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
CLANG="${CLANG:-clang}"
command -v "$CLANG" > /dev/null || { echo "clang_build: $CLANG not found" >&2; exit 2; }
pytest_args=("$@")
(( ${#pytest_args[@]} )) || pytest_args=(tests)

# shellcheck source=tools/scratch_build.sh
source "$REPO/tools/scratch_build.sh"
start=$SECONDS
scratch_copy clang ""
echo "== clang_build: building with $("$CLANG" --version | head -1)"
SCRATCH_CC="$CLANG" scratch_build "" || { echo "clang_build: build failed" >&2; exit 2; }
echo "== clang_build: built in $((SECONDS - start)) s"
config="$(cd "$tree" && PYTHONPATH="$tree/src" SOFTMAX_KERNELS_BACKEND=compiled "$PYTHON" -c \
    'import softmax_kernels as sk; c = sk.show_config(); print(c["openmp"], c["simd"])')" \
    || { echo "clang_build: the build does not import" >&2; exit 2; }
echo "== clang_build: openmp, simd: $config"
[[ "$config" == True* ]] || { echo "clang_build: built without OpenMP" >&2; exit 1; }
# The level GCC's dispatch would pick on this CPU, from the same question clang's build asks.
if [[ "$(uname -m)" == "x86_64" ]]; then
    expected="$(printf '#include <stdio.h>\nint main(void) { __builtin_cpu_init();
        puts(__builtin_cpu_supports("x86-64-v4") ? "AVX512" : __builtin_cpu_supports("x86-64-v3") ? "AVX2" : "SSE2");
        return 0; }\n' | gcc -x c - -o "$work/level" && "$work/level")"
    [[ "$config" == *"$expected"* ]] \
        || { echo "clang_build: reports '$config', GCC's dispatch would pick $expected" >&2; exit 1; }
fi
(cd "$tree" && PYTHONPATH="$tree/src" SOFTMAX_KERNELS_BACKEND=compiled \
    "$PYTHON" -m pytest -q -p no:cacheprovider "${pytest_args[@]}")
echo "== clang_build: done in $((SECONDS - start)) s"
