"""Build the compiled core: one Cython extension over the C headers in include/.

OpenMP is detected by compiling and linking a tiny program with the compiler
setuptools will use. ``SOFTMAX_KERNELS_OPENMP=0`` forces the serial build; a
compiler without OpenMP support falls back to it automatically with a notice.
No ``-ffast-math`` (it would flush subnormals process-wide and break the
accuracy contract) and no ``-march=native`` (wheels must run anywhere).
"""

import glob
import os
import platform
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def openmp_flags(compiler_type):
    """Compile and link flags that enable OpenMP for this compiler family: MSVC's /openmp;
    Apple's clang, which takes the directive only through the preprocessor and links libomp
    (found through CFLAGS/LDFLAGS); GCC (libgomp) and clang (libomp) elsewhere."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def is_clang(compiler):
    """Whether the C compiler setuptools will call is clang (CC=clang, Apple's cc, either behind a
    wrapper such as ccache): whether it predefines __clang__."""
    command = getattr(compiler, "compiler_so", None)
    if not command:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe_clang.c")
        open(source, "w").close()
        try:
            macros = subprocess.run([*command, "-E", "-dM", source], capture_output=True, text=True,
                                    timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            return False
    return "#define __clang__ " in macros


def library_flags_from_ldflags():
    """The -L, -l and rpath flags of LDFLAGS: setuptools links shared objects with LDFLAGS but
    not executables, and the probe must find the same libomp the extension will link."""
    return [flag for flag in os.environ.get("LDFLAGS", "").split()
            if flag.startswith(("-L", "-l", "-Wl,-rpath"))]


def compiler_probe(compiler, source_text, compile_flags, link_flags=None):
    """Whether the C compiler compiles `source_text` with `compile_flags` and, when `link_flags`
    is given, links it into an executable with them."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(source_text)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_flags)
            if link_flags is not None:
                compiler.link_executable(
                    objects, os.path.join(tmp, "probe"), extra_preargs=library_flags_from_ldflags(),
                    extra_postargs=link_flags,
                )
        except Exception:
            return False
    return True


def compiler_accepts(compiler, flags):
    """Whether the C compiler compiles an empty file with `flags`."""
    return compiler_probe(compiler, "int probe_flags;\n", flags)


class BuildExtWithOpenMP(build_ext):
    def build_extensions(self):
        compiler_type = self.compiler.compiler_type
        clang = compiler_type == "unix" and is_clang(self.compiler)
        if compiler_type == "msvc":
            base = ["/O2", "/fp:precise"]
        else:
            # -fno-math-errno only stops libm calls from setting errno; results are unchanged.
            # -fno-trapping-math lets the compiler assume nobody reads the floating-point
            # exception flags, so it may turn the kernels' selects (clamps, masks) into
            # branch-free blends; rounding, NaN, infinities and subnormals are unchanged, and
            # no process-wide state is touched. Without it GCC refuses to vectorise exp for AVX2.
            # -fopenmp-simd honours the kernels' `omp simd` directives even in the serial build;
            # SK_OPENMP_SIMD tells the headers it is on (portability.h).
            base = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-DSK_OPENMP_SIMD",
                    "-Wno-unused-function"]
            if clang:
                # clang reports the `omp simd` loops it leaves scalar (a gather of class weights);
                # nothing is wrong with them.
                base.append("-Wno-pass-failed")
                # clang unrolls loops of a constant count (the kernels' lane loops) fully before
                # it vectorises them, after which its SLP vectoriser leaves compensated sums
                # scalar; kept rolled, they keep a one-trip loop that holds the lanes in memory.
                # Unrolling only loops of up to 4 trips leaves the lane loops to the loop
                # vectoriser and then unrolls its one-trip loop (docs/performance-notes.md,
                # "lane arrays"). SK_LANE_LOOPS_VECTORISED tells portability.h.
                unroll_limit = ["-mllvm", "-unroll-full-max-count=4"]
                if compiler_accepts(self.compiler, unroll_limit):
                    base += unroll_limit + ["-DSK_LANE_LOOPS_VECTORISED"]
            if compiler_type == "unix" and platform.machine().lower() in ("x86_64", "amd64"):
                # Only the AVX-512 version of the kernels is affected: use all 512 bits.
                base.append("-mprefer-vector-width=512")
        compile_flags, link_flags = list(base), []
        wanted = os.environ.get("SOFTMAX_KERNELS_OPENMP", "1") != "0"
        if wanted:
            omp_compile, omp_link = openmp_flags(compiler_type)
            if compiler_probe(self.compiler, OPENMP_PROBE, omp_compile, omp_link):
                compile_flags += omp_compile
                link_flags += omp_link
            else:
                runtime = " (clang needs an OpenMP runtime: libomp, e.g. Debian's libomp-dev)" \
                    if clang else ""
                print(f"softmax_kernels: the compiler has no usable OpenMP{runtime}; building the serial version")
        else:
            print("softmax_kernels: SOFTMAX_KERNELS_OPENMP=0; building the serial version")
        for ext in self.extensions:
            ext.extra_compile_args = compile_flags + ext.extra_compile_args
            ext.extra_link_args = link_flags + ext.extra_link_args
        super().build_extensions()


def kernel_extension(name):
    """An extension of the package over the C headers in include/."""
    return Extension(
        f"softmax_kernels.{name}",
        sources=[f"src/softmax_kernels/{name}.pyx"],
        depends=sorted(glob.glob("include/softmax_kernels/*.h")) + sorted(glob.glob("src/softmax_kernels/*.pxd")),
        include_dirs=["include", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


# The driver, and the accuracy sweeps of the vector exp and log1p that the tests run.
extensions = [kernel_extension("_kernels"), kernel_extension("_vmath_accuracy")]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
