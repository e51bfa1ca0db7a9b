#!/usr/bin/env bash
# Test the kernels as compiled for the instruction sets this CPU would not pick itself.
#
# A default build carries three versions of every block kernel (x86-64-v4, x86-64-v3 and the
# baseline) and runs the widest the CPU has, so the test suite on an AVX-512 machine only
# ever exercises the first. Here the extension is built once per level with dispatch off
# (-DSK_NO_DISPATCH) and -march=<level>, and the tests that compare every output with the
# reference and with exact values run against each build. These builds also stream every
# output that can be streamed (-DSK_STREAM_MIN_BYTES=0: labels gradients and short-row Hv),
# which a default build does only for outputs of 16 MiB and more on several threads, so
# those tests cover that path too. The tile transpositions of short rows are chosen at run
# time from the CPU, whatever the build's level; each build here keeps only the tiles a CPU
# of its level would run (x86-64-v3: AVX2, -DSK_NO_AVX512_TRANSPOSE; below: the element-wise
# loops, -DSK_NO_SIMD_TRANSPOSE), so that every path is tested on an AVX-512 machine.
#
# Usage:
#   tools/isa_builds.sh                  # x86-64-v3 (AVX2) and x86-64 (SSE2)
#   tools/isa_builds.sh x86-64-v2        # any -march levels
#
# Nothing in the repository is written (see tools/scratch_build.sh). x86-64 only.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TESTS=(tests/test_fast_equals_reference.py tests/test_accuracy.py tests/test_accuracy_of_sums.py
       tests/test_edge_values.py tests/test_input_conventions.py tests/test_threads.py tests/test_backends.py
       tests/test_derivatives.py tests/test_layout.py tests/test_vmath.py)

if [[ "$(uname -m)" != "x86_64" ]]; then
    echo "isa_builds: x86-64 only; nothing to do on $(uname -m)"
    exit 0
fi
levels=("$@")
(( ${#levels[@]} )) || levels=(x86-64-v3 x86-64)

# shellcheck source=tools/scratch_build.sh
source "$REPO/tools/scratch_build.sh"
status=0
for level in "${levels[@]}"; do
    start=$SECONDS
    probe="$(mktemp "${TMPDIR:-/tmp}/softmax_kernels_probe.XXXXXX")"
    printf 'int main(void) { __builtin_cpu_init(); return !__builtin_cpu_supports("%s"); }\n' "$level" \
        | gcc -x c - -o "$probe"
    if ! "$probe"; then
        echo "== isa_builds: this CPU cannot run -march=$level code; skipped"
        rm -f "$probe"
        continue
    fi
    rm -f "$probe"
    scratch_copy "isa_$level" ""
    echo "== isa_builds: building for -march=$level"
    case "$level" in
        x86-64-v4) tiles="" ;;
        x86-64-v3) tiles="-DSK_NO_AVX512_TRANSPOSE" ;;
        *) tiles="-DSK_NO_SIMD_TRANSPOSE" ;;
    esac
    scratch_build "-DSK_NO_DISPATCH -DSK_STREAM_MIN_BYTES=0 $tiles -march=$level" || { echo "isa_builds: build failed" >&2; exit 2; }
    simd="$(cd "$tree" && PYTHONPATH="$tree/src" SOFTMAX_KERNELS_BACKEND=compiled "$PYTHON" -c \
        'import softmax_kernels as sk; print(sk.show_config()["simd"])')" \
        || { echo "isa_builds: the $level build does not import" >&2; exit 2; }
    echo "== isa_builds: $level build reports simd=$simd"
    (cd "$tree" && PYTHONPATH="$tree/src" SOFTMAX_KERNELS_BACKEND=compiled \
        "$PYTHON" -m pytest -q -p no:cacheprovider "${TESTS[@]}") || status=1
    echo "== isa_builds: $level done in $((SECONDS - start)) s"
    rm -rf "$work"
    trap - EXIT
done
exit "$status"
