#!/usr/bin/env bash
# The C headers as strict C99: a tiny file including kernels.h and vmath_accuracy.h compiled
# with -std=c99 -Wall -Wextra -pedantic -Werror by every compiler present (gcc, clang, or
# those named in CC_LIST), with full OpenMP, with the serial build's -fopenmp-simd, with
# neither, and with dispatch off; any warning fails.
#
# Usage:
#   tools/strict_warnings.sh                 # gcc and clang, where installed
#   CC_LIST="gcc-13 clang-17" tools/strict_warnings.sh
#
# Nothing in the repository is written.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
read -r -a compilers <<< "${CC_LIST:-gcc clang}"
STRICT=(-std=c99 -Wall -Wextra -pedantic -Werror -O2 -I"$REPO/include")
VARIANTS=("-fopenmp" "-fopenmp-simd -DSK_OPENMP_SIMD" "" "-fopenmp -DSK_NO_DISPATCH")

work="$(mktemp -d "${TMPDIR:-/tmp}/softmax_kernels_strict.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cat > "$work/strict.c" <<'EOF'
#include "softmax_kernels/kernels.h"
#include "softmax_kernels/vmath_accuracy.h"

int main(void)
{
    const double x = -1.0;
    return sk_block_function(SK_KERNEL_TARGETS, 1) == 0 || sk_exp_d_max_ulp_error(&x, 1) > 1.0;
}
EOF

checked=0
for cc in "${compilers[@]}"; do
    if ! command -v "$cc" > /dev/null; then
        echo "== strict_warnings: $cc not found; skipped"
        continue
    fi
    for variant in "${VARIANTS[@]}"; do
        # shellcheck disable=SC2086 # a variant is several flags, or none
        "$cc" "${STRICT[@]}" $variant -c "$work/strict.c" -o "$work/strict.o" \
            || { echo "strict_warnings: $cc ${variant:-(no OpenMP)} warns" >&2; exit 1; }
        echo "== strict_warnings: $cc ${variant:-(no OpenMP)}: no warnings"
        checked=$((checked + 1))
    done
done
(( checked )) || { echo "strict_warnings: no compiler found" >&2; exit 1; }
