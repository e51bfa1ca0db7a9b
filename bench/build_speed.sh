#!/usr/bin/env bash
# The installed (portable, GCC) build against another build of the same sources, per benchmark
# case, single-threaded:
#   native  -march=native with dispatch off: how close runtime dispatch comes to a build for
#           this very CPU (goal: native / installed >= 0.9)
#   clang   clang with libomp and runtime dispatch (goal: clang / installed <= 1.1)
#
# Usage: bench/build_speed.sh native|clang [ROUNDS]      (default 5 rounds)
#
# The other build is made in a scratch copy (tools/scratch_build.sh). Both are timed in
# alternating processes (one process cannot load two builds of the extension), ROUNDS times
# each; the table gives the median over rounds of each case's median time and their ratio.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
other="${1:?usage: bench/build_speed.sh native|clang [ROUNDS]}"
rounds="${2:-5}"

# shellcheck source=tools/scratch_build.sh
source "$REPO/tools/scratch_build.sh"
scratch_copy "$other" ""
echo "== building the $other copy"
case "$other" in
    native) scratch_build "-DSK_NO_DISPATCH -march=native" || exit 2 ;;
    clang) SCRATCH_CC="${CLANG:-clang}" scratch_build "" || exit 2 ;;
    *) echo "build_speed: the other build is 'native' or 'clang', not '$other'" >&2; exit 2 ;;
esac

# The cases of the registry's operations (the linear model's time is BLAS's, the same in both).
time_cases='
import json, sys
import softmax_kernels as sk
from softmax_kernels import benchmarks as b
from softmax_kernels._operations import OPERATIONS
out = {}
for case in b.select_cases():
    if case.operation in OPERATIONS:
        out[case.name] = b.median_time(b._ours(case, b.make_inputs(case), sk), repeats=5)
json.dump({"simd": sk.show_config()["simd"], "times": out}, sys.stdout)
'
runs_installed=() runs_other=()
for ((r = 1; r <= rounds; r++)); do
    runs_installed+=("$("$PYTHON" -c "$time_cases")")
    runs_other+=("$(PYTHONPATH="$tree/src" "$PYTHON" -c "$time_cases")")
done
"$PYTHON" - "$other" "${#runs_installed[@]}" "${runs_installed[@]}" "${runs_other[@]}" <<'PY'
import json, statistics, sys
other, n = sys.argv[1], int(sys.argv[2])
installed = [json.loads(s) for s in sys.argv[3:3 + n]]
others = [json.loads(s) for s in sys.argv[3 + n:]]
print(f"installed build: {installed[0]['simd']}; {other} build: {others[0]['simd']}; {n} rounds")
print(f"| case | installed (ms) | {other} (ms) | {other} / installed |")
print("|---|---|---|---|")
for name in installed[0]["times"]:
    p = statistics.median(run["times"][name] for run in installed)
    q = statistics.median(run["times"][name] for run in others)
    print(f"| {name} | {p * 1e3:.2f} | {q * 1e3:.2f} | {q / p:.2f} |")
PY
