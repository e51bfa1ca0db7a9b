#!/usr/bin/env bash
# Memcheck the compiled extension on a short run of every public function (valid calls,
# out= arrays, the OpenMP path, and every kind of rejected argument): tools/valgrind_exercise.py.
# Exits non-zero if memcheck reports an error (invalid read/write, use of uninitialised
# memory, bad free, ...) or a DEFINITE leak whose stack passes through softmax_kernels'
# compiled code, or if the exercise itself fails.
#
# Usage:
#   tools/valgrind.sh                 # about 2 minutes on 2 cores, most of it the build
#   VALGRIND_WORKDIR=/tmp/vg tools/valgrind.sh     # keep the build and the XML report there
#
# How CPython's noise is handled, instead of a hand-kept suppressions file:
# * PYTHONMALLOC=malloc: pymalloc hands out memory from its own arenas and reads
#   uninitialised arena headers on purpose (address_in_range); with plain malloc every
#   Python object is a separate heap block memcheck can track, and those false reports go.
# * Attribution, not suppression: memcheck writes XML; every error and definite leak is
#   kept only if one of its stack frames is in the extensions (_kernels*.so, _kernels.c/.pyx,
#   _vmath_accuracy*.so or include/softmax_kernels/*.h). A leak of an array allocated by NumPy on the driver's
#   behalf still counts, since the driver is on its allocation stack. Everything else
#   (CPython's deliberate at-exit leaks, NumPy/OpenMP runtime internals) is counted and
#   summarised, not failed on. Only "definite" leaks are considered: "possibly lost" and
#   "still reachable" are what CPython's interned/static objects look like at exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
# The interpreter binary itself: valgrind does not follow the exec of a launcher such as a
# pyenv shim (that would need --trace-children, which would also trace every subprocess).
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"
command -v valgrind > /dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }

# A private copy, so the repository and the installed package are untouched.
# shellcheck source=tools/scratch_build.sh
source "$REPO/tools/scratch_build.sh"
start=$SECONDS
scratch_copy valgrind "${VALGRIND_WORKDIR:-}"

# -g so the reports carry file and line (scratch_build.sh puts it last). The optimisation
# level stays -O3: we check the code that ships. Under valgrind the CPU reports no AVX-512
# (memcheck cannot run it), so dispatch picks the AVX2 (x86-64-v3) version or the baseline;
# sanitize.sh covers the AVX-512 version natively.
echo "== valgrind: building a -g copy in $tree"
scratch_build "-g" || { echo "valgrind.sh: build failed" >&2; exit 2; }
echo "== valgrind: built in $((SECONDS - start)) s"

xml="$work/memcheck.xml"
echo "== valgrind: memcheck of tools/valgrind_exercise.py (report: $xml)"
set +e
(
    cd "$tree"
    PYTHONMALLOC=malloc SOFTMAX_KERNELS_BACKEND=compiled PYTHONPATH="$tree/src" PYTHONDONTWRITEBYTECODE=1 \
        valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
        --errors-for-leak-kinds=definite --num-callers=60 --xml=yes --xml-file="$xml" \
        "$PYTHON" tools/valgrind_exercise.py
)
exercise_status=$?
set -e

set +e
"$PYTHON" - "$xml" <<'PY'
"""Summarise memcheck's XML; exit 1 if any error or definite leak passes through _kernels."""
import collections
import sys
import xml.etree.ElementTree as ET

OURS = ("_kernels", "_vmath_accuracy", "include/softmax_kernels/", "softmax_kernels/_kernels")


def frames(error):
    for frame in error.iter("frame"):
        yield {tag: (frame.findtext(tag) or "") for tag in ("obj", "fn", "dir", "file", "line")}


def ours(frame):
    where = f"{frame['obj']} {frame['dir']}/{frame['file']}"
    return any(mark in where for mark in OURS)


def describe(error):
    kind = error.findtext("kind")
    what = error.findtext("what") or error.findtext("xwhat/text") or ""
    lines = [f"{kind}: {what}"]
    for frame in frames(error):
        place = f"{frame['file']}:{frame['line']}" if frame["file"] else frame["obj"]
        marker = "  >>" if ours(frame) else "    "
        lines.append(f"{marker} {frame['fn'] or '???'} ({place})")
    return "\n".join(lines)


root = ET.parse(sys.argv[1]).getroot()
errors = root.findall("error")
attributable = [e for e in errors if any(ours(f) for f in frames(e))]
others = collections.Counter(e.findtext("kind") for e in errors if e not in attributable)
print(f"== valgrind: {len(errors)} memcheck error/leak record(s); {len(attributable)} in softmax_kernels")
if others:
    print("   not ours (CPython/NumPy/runtime), not failed on:", dict(others))
for error in attributable:
    print("\n" + describe(error))
sys.exit(1 if attributable else 0)
PY
report_status=$?
set -e

echo "== valgrind: exercise exit $exercise_status, total $((SECONDS - start)) s"
if (( exercise_status != 0 )); then
    echo "valgrind.sh: the exercise script failed under valgrind (see above)" >&2
    exit 1
fi
exit "$report_status"
