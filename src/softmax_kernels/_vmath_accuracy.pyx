# cython: language_level=3
"""Accuracy sweeps of the kernels' vectorisable exp and log1p (include/softmax_kernels/vmath.h),
for tests/test_vmath.py: a module of its own, so that the production driver carries no test code."""

from libc.stdint cimport int64_t, uint64_t

import numpy as np

cdef extern from "softmax_kernels/vmath_accuracy.h" nogil:
    ctypedef int64_t sk_index
    double sk_exp_f_max_ulp_error(uint64_t begin, uint64_t end)
    double sk_exp_d_max_ulp_error(const double *x, sk_index n)
    double sk_log1p_d_max_ulp_error(const double *x, sk_index n)
    uint64_t sk_exp_nonpositive_f_mismatches(uint64_t begin, uint64_t end)
    double sk_exp_nonpositive_d_mismatches(const double *x, sk_index n)


def exp_float32_max_ulp_error(begin, end):
    """Largest ulp error of the kernels' float exp over float bit patterns in [begin, end)."""
    cdef uint64_t b = begin, e = end
    cdef double worst
    with nogil:
        worst = sk_exp_f_max_ulp_error(b, e)
    return worst


ctypedef double (*_sweep_fn)(const double *x, sk_index n) noexcept nogil


cdef double _sweep(_sweep_fn sweep, x) except? -1:
    cdef const double[::1] values = np.ascontiguousarray(x, dtype=np.float64)
    cdef double result = 0.0
    if values.shape[0]:
        with nogil:
            result = sweep(&values[0], values.shape[0])
    return result


def exp_float64_max_ulp_error(x):
    """Largest ulp error of the kernels' double exp over the float64 array x."""
    return _sweep(sk_exp_d_max_ulp_error, x)


def log1p_float64_max_ulp_error(x):
    """Largest ulp error of the kernels' double log1p over the float64 array x (x >= 0)."""
    return _sweep(sk_log1p_d_max_ulp_error, x)


def exp_nonpositive_float32_mismatches(begin, end):
    """Float bit patterns in [begin, end) where the kernels' flushing exp breaks its promise."""
    cdef uint64_t b = begin, e = end, count
    with nogil:
        count = sk_exp_nonpositive_f_mismatches(b, e)
    return count


def exp_nonpositive_float64_mismatches(x):
    """Values of the float64 array x where the kernels' flushing exp breaks its promise."""
    return int(_sweep(sk_exp_nonpositive_d_mismatches, x))
