#!/usr/bin/env bash
# The kernels on aarch64: tools/aarch64/driver.c cross-compiled with aarch64-linux-gnu-gcc
# (static, with the flags of setup.py) and run under qemu-aarch64, against the same driver built
# natively. Per output of each case: the same NaN and infinity pattern, and elsewhere
# |aarch64 - native| <= 16 u (|native| + max |native|) + tiny, u and tiny those of the data
# type (the rule of tests/test_fast_equals_reference.py against the reference).
#
# Usage:
#   tools/aarch64_check.sh        # needs gcc-aarch64-linux-gnu and qemu-user (Debian packages)
#
# PYTHON (with NumPy) compares. Nothing in the repository is written.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
CROSS="${CROSS_CC:-aarch64-linux-gnu-gcc}"
for tool in "$CROSS" qemu-aarch64 gcc; do
    command -v "$tool" > /dev/null || { echo "aarch64_check: $tool not found" >&2; exit 2; }
done
# setup.py's flags and its default language mode (GNU C: floating-point contraction on, so the
# aarch64 build fuses multiply-adds as a real one does); tools/strict_warnings.sh checks -std=c99.
FLAGS=(-O3 -fno-math-errno -fno-trapping-math -fopenmp-simd -DSK_OPENMP_SIMD -Wall -Wextra -Werror
       -I"$REPO/include")

work="$(mktemp -d "${TMPDIR:-/tmp}/softmax_kernels_aarch64.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$CROSS" "${FLAGS[@]}" -static "$REPO/tools/aarch64/driver.c" -o "$work/driver-aarch64" -lm
gcc "${FLAGS[@]}" "$REPO/tools/aarch64/driver.c" -o "$work/driver-native" -lm
qemu-aarch64 "$work/driver-aarch64" > "$work/aarch64.txt"
"$work/driver-native" > "$work/native.txt"
echo "== aarch64_check: aarch64 build: $(head -1 "$work/aarch64.txt"); native: $(head -1 "$work/native.txt")"

"$PYTHON" - "$work/aarch64.txt" "$work/native.txt" <<'EOF'
import sys
from collections import defaultdict

import numpy as np


def read(path):
    outputs = defaultdict(list)
    with open(path) as f:
        next(f)  # the simd line
        for line in f:
            name, _, value = line.split()
            outputs[name].append(float(value))
    return {name: np.array(values) for name, values in outputs.items()}


cross, native = read(sys.argv[1]), read(sys.argv[2])
assert cross.keys() == native.keys(), "the two builds printed different outputs"
failures = 0
for name, want in native.items():
    got = cross[name]
    dtype = np.float64 if name.startswith("float64") else np.float32
    u, tiny = np.finfo(dtype).eps / 2, np.finfo(dtype).tiny
    same_special = np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(
        got[np.isinf(want)], want[np.isinf(want)]) and np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    scale = np.max(np.abs(want[finite]), initial=0.0)
    excess = np.abs(got[finite] - want[finite]) / (16 * u * (np.abs(want[finite]) + scale) + tiny)
    worst = float(np.max(excess, initial=0.0))
    if not same_special or worst > 1.0:
        failures += 1
        print(f"aarch64_check: {name}: NaN/inf pattern {'equal' if same_special else 'DIFFERS'}, "
              f"worst error {worst:.3g} of the tolerance", file=sys.stderr)
bitwise = sum(np.array_equal(cross[n], native[n], equal_nan=True) for n in native)
print(f"== aarch64_check: {len(native)} outputs compared, {bitwise} bitwise equal, {failures} beyond the tolerance")
sys.exit(1 if failures else 0)
EOF
