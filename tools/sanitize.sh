#!/usr/bin/env bash
# Build the compiled extension with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# test suite against that build. Exits non-zero if pytest fails OR any sanitizer report was
# written (by the test process or by any subprocess it starts).
#
# Usage:
#   tools/sanitize.sh                      # whole test suite
#   tools/sanitize.sh --fast               # CI subset: fast-equals-reference, edge values, input
#                                          # conventions, threads, backends, bad input
#   tools/sanitize.sh tests/test_layout.py -k packed     # any pytest arguments
#   tools/sanitize.sh --fast -x            # the subset plus extra pytest arguments
#
# Environment:
#   SANITIZE_WORKDIR=dir   build and run in dir and keep it (a rerun only recompiles what changed);
#                          default: a fresh mktemp directory, removed on exit.
#   SANITIZE_EXTRA_FLAGS   more compiler flags, e.g. "-fsanitize=float-cast-overflow".
#
# Nothing in the repository is written: the working tree is copied (without .git and build
# outputs) into the work directory, built there with `setup.py build_ext --inplace`, and the
# tests run from the copy with PYTHONPATH pointing at its src/. The system installation of
# the package is untouched.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
FAST_TESTS=(tests/test_fast_equals_reference.py tests/test_edge_values.py tests/test_input_conventions.py
            tests/test_threads.py tests/test_backends.py tests/test_bad_input.py)

pytest_args=()
fast=0
for arg in "$@"; do
    if [[ "$arg" == "--fast" ]]; then fast=1; else pytest_args+=("$arg"); fi
done
if (( fast )); then
    pytest_args=("${FAST_TESTS[@]}" "${pytest_args[@]}")
fi
# No path among the arguments: run the whole suite.
has_path=0
for arg in "${pytest_args[@]}"; do
    [[ "$arg" != -* && ( -e "$REPO/${arg%%::*}" || -e "${arg%%::*}" ) ]] && has_path=1
done
(( has_path )) || pytest_args+=(tests)

# shellcheck source=tools/scratch_build.sh
source "$REPO/tools/scratch_build.sh"
start=$SECONDS
echo "== sanitize: copying $REPO -> ${SANITIZE_WORKDIR:-a temporary folder}"
scratch_copy sanitize "${SANITIZE_WORKDIR:-}"
logs="$work/sanitizer-logs"
rm -rf "$logs" && mkdir -p "$logs"

# ---- the sanitizer runtime --------------------------------------------------------------
libasan="$(gcc -print-file-name=libasan.so)"
if [[ ! -e "$libasan" ]]; then
    echo "sanitize: gcc -print-file-name=libasan.so gave '$libasan', which does not exist" >&2
    exit 2
fi
libasan="$(readlink -f "$libasan")"

# ---- build ------------------------------------------------------------------------------
# The sanitizer flags go last (scratch_build.sh). -O3 is kept on purpose: the sanitized code is
# the optimised, vectorised code that ships (all three dispatched versions).
# -fno-sanitize-recover=all turns every UBSan finding into a hard stop (as halt_on_error=1).
san_flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g ${SANITIZE_EXTRA_FLAGS:-}"
echo "== sanitize: building with: $san_flags"
scratch_build "$san_flags" || { echo "sanitize: build failed" >&2; exit 2; }
so="$(ls "$tree"/src/softmax_kernels/_kernels*.so)"
# Not `grep -q`: it exits at the first match, ldd may then die of SIGPIPE, and pipefail
# would turn that into a false "not linked".
if ! ldd "$so" | grep "libasan" > /dev/null; then
    cat "$work/build.log" >&2
    echo "sanitize: $so is not linked against libasan; the flags did not reach the build" >&2
    exit 2
fi
echo "== sanitize: built $(basename "$so") in $((SECONDS - start)) s"

# ---- run --------------------------------------------------------------------------------
# LD_PRELOAD: CPython itself is not built with ASan, so the runtime must be the first library
# loaded (it has to intercept malloc/free before anything else allocates).
# detect_leaks=0: CPython deliberately never frees much of its memory at exit (interned
#   strings, static types, module state), and NumPy/torch/scipy add their own; LeakSanitizer
#   would report thousands of those. Leaks of this package are checked by tools/valgrind.sh,
#   which filters for _kernels frames instead.
# PYTHONMALLOC=malloc: route every Python object through malloc so ASan also sees object
#   overflows and use-after-free (a refcount bug in the Cython driver), not only array data.
# log_path: each process writes its reports to $logs/<name>.<pid>; this catches reports from
#   subprocesses started by the tests, and from reports that pytest output would bury. The
#   run fails if any such file appears.
# alloc_dealloc_mismatch=0: torch's and scipy's C++ code is not ours; a new/delete mismatch
#   there would abort the run for nothing (the package is C and never uses new/delete).
# handle_segv=1 (default) makes a crash print a stack to the log too.
export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=0:halt_on_error=1:log_path=$logs/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
export PYTHONMALLOC=malloc
export SOFTMAX_KERNELS_BACKEND=compiled
export PYTHONPATH="$tree/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
# Tests may consult this to skip what is meaningless under ASan.
export SOFTMAX_KERNELS_SANITIZED=1

cd "$tree"
"$PYTHON" - <<PY
import softmax_kernels as sk, os
path = sk._kernels.__file__
assert path.startswith("$tree/src/"), f"imported the wrong extension: {path}"
print("== sanitize: using", path, sk.show_config())
PY

echo "== sanitize: pytest ${pytest_args[*]}"
set +e
# tools/sanitize_pytest_plugin.py skips the RSS-growth tests (ASan's quarantine grows RSS).
PYTHONPATH="$tree/tools:$PYTHONPATH" \
    "$PYTHON" -m pytest -q -p no:cacheprovider -p sanitize_pytest_plugin "${pytest_args[@]}"
status=$?
set -e

reports=("$logs"/*)
if [[ -e "${reports[0]}" ]]; then
    echo "== sanitize: SANITIZER REPORTS (${#reports[@]} file(s)):" >&2
    for report in "${reports[@]}"; do
        echo "---- $report" >&2
        cat "$report" >&2
    done
    (( status != 0 )) || status=1
fi
echo "== sanitize: pytest exit $status, total $((SECONDS - start)) s"
exit "$status"
