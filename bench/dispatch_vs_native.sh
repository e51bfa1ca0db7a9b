#!/usr/bin/env bash
# How close the portable build (runtime dispatch between x86-64-v4, -v3 and the baseline)
# comes to a build for this very CPU (-march=native, no dispatch), per benchmark case.
#
# Usage: bench/dispatch_vs_native.sh [ROUNDS]      (default 5)
#
# The native build is made in a scratch copy (tools/scratch_build.sh); the installed package
# is the portable build. Both are timed single-threaded, in alternating processes (one
# process cannot load two builds of the extension), ROUNDS times each; the table gives the
# median over rounds of each case's median time, and native / portable (>= 0.9 is the goal).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
rounds="${1:-5}"

# shellcheck source=tools/scratch_build.sh
source "$REPO/tools/scratch_build.sh"
scratch_copy native ""
echo "== building the -march=native copy"
scratch_build "-DSK_NO_DISPATCH -march=native" || exit 2

time_cases='
import json, sys
import softmax_kernels as sk
from softmax_kernels import benchmarks as b
out = {}
for case in b.select_cases():
    out[case.name] = b.median_time(b._ours(case, b.make_inputs(case), sk), repeats=5)
json.dump({"simd": sk.show_config()["simd"], "times": out}, sys.stdout)
'
runs_portable=() runs_native=()
for ((r = 1; r <= rounds; r++)); do
    runs_portable+=("$("$PYTHON" -c "$time_cases")")
    runs_native+=("$(PYTHONPATH="$tree/src" "$PYTHON" -c "$time_cases")")
done
"$PYTHON" - "${#runs_portable[@]}" "${runs_portable[@]}" "${runs_native[@]}" <<'PY'
import json, statistics, sys
n = int(sys.argv[1])
portable = [json.loads(s) for s in sys.argv[2:2 + n]]
native = [json.loads(s) for s in sys.argv[2 + n:]]
print(f"portable build: {portable[0]['simd']}; native build: {native[0]['simd']}; {n} rounds")
print("| case | portable (ms) | native (ms) | native / portable |")
print("|---|---|---|---|")
for name in portable[0]["times"]:
    p = statistics.median(run["times"][name] for run in portable)
    q = statistics.median(run["times"][name] for run in native)
    print(f"| {name} | {p * 1e3:.2f} | {q * 1e3:.2f} | {q / p:.2f} |")
PY
