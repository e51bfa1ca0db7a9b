# Sourced by sanitize.sh and valgrind.sh: a private copy of the repository, built in place
# with extra compiler flags, so neither the repository nor the installed package is touched.
# Needs REPO and PYTHON; sets `work` (the scratch folder) and `tree` (the copy in it).

# scratch_copy NAME KEEP: KEEP, if not empty, is a folder to reuse (and keep); otherwise a
# fresh temporary folder removed on exit. tar keeps mtimes, so a kept folder only rebuilds
# when a source really changed; the repository's own build outputs (*.so, the generated
# _kernels.c, build/) must not leak in.
scratch_copy() {
    if [[ -n "$2" ]]; then
        work="$2"
        mkdir -p "$work"
    else
        work="$(mktemp -d "${TMPDIR:-/tmp}/softmax_kernels_$1.XXXXXX")"
        trap 'rm -rf "$work"' EXIT
    fi
    tree="$work/tree"
    mkdir -p "$tree"
    tar -C "$REPO" -cf - \
        --exclude=.git --exclude=./build --exclude='*.so' --exclude='src/softmax_kernels/*.c' \
        --exclude='.venv*' --exclude=.hypothesis --exclude=.pytest_cache --exclude=.benchmarks \
        --exclude=__pycache__ --exclude='*.egg-info' . | tar -C "$tree" -xf -
}

# scratch_build FLAGS: builds the extension in $tree with FLAGS appended LAST to every call of
# the compiler (SCRATCH_CC, default gcc). setup.py puts its own flags (-O3 -g0 ...) after
# $CFLAGS, so a -g there would be cancelled; a tiny compiler wrapper is used instead, for
# compiling, for the shared-object link (distutils derives LDSHARED from CC) and for
# setup.py's OpenMP try-compile alike.
# The build log is $work/build.log; returns non-zero (after printing it) if the build fails.
scratch_build() {
    printf '#!/bin/sh\nexec %s "$@" %s\n' "${SCRATCH_CC:-gcc}" "$1" > "$work/cc"
    chmod +x "$work/cc"
    (cd "$tree" && CC="$work/cc" "$PYTHON" setup.py -q build_ext --inplace > "$work/build.log" 2>&1) \
        || { cat "$work/build.log"; return 1; }
}
