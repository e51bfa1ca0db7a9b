"""The kernels' own exp and log1p (include/softmax_kernels/vmath.h) are within about one ulp.

float exp is checked exhaustively, over every one of the 2^32 float bit patterns
(special values included); double exp and log1p by sampling, against long double.
The sweeps run in C on the instruction set the kernels dispatch to on this CPU.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import softmax_kernels as sk

pytestmark = pytest.mark.skipif(sk.show_config()["backend"] != "compiled", reason="compiled backend not in use")

# Measured maxima on the AVX-512 development machine: float exp 1.06 (all floats), double
# exp 0.99 and log1p 0.86 ulp (samples). The accuracy contract's analysis assumes about one ulp.
FLOAT_EXP_ULPS = 1.1
DOUBLE_EXP_ULPS = 1.05
DOUBLE_LOG1P_ULPS = 1.0


def test_float_exp_is_within_about_one_ulp_for_every_float():
    from softmax_kernels import _vmath_accuracy

    chunks = [(start, start + 2**27) for start in range(0, 2**32, 2**27)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # the sweep releases the GIL
        worst = max(pool.map(lambda chunk: _vmath_accuracy.exp_float32_max_ulp_error(*chunk), chunks))
    assert worst <= FLOAT_EXP_ULPS


def test_double_exp_is_within_about_one_ulp_on_samples():
    from softmax_kernels import _vmath_accuracy

    rng = np.random.default_rng(1)
    samples = np.concatenate([
        rng.uniform(-745.2, 709.8, 2_000_000),  # the whole finite range, subnormal results included
        rng.uniform(-1.0, 1.0, 500_000),
        rng.uniform(-745.2, -708.0, 500_000),  # results in the subnormal range
        [0.0, -0.0, np.inf, -np.inf, np.nan, 709.78, 709.79, -745.13, -745.14],
    ])
    assert _vmath_accuracy.exp_float64_max_ulp_error(samples) <= DOUBLE_EXP_ULPS


def test_double_log1p_is_within_about_one_ulp_on_samples():
    from softmax_kernels import _vmath_accuracy

    rng = np.random.default_rng(2)
    samples = np.concatenate([
        10.0 ** rng.uniform(-320, 9, 2_000_000),  # T ranges from denormal to K - 1
        rng.uniform(0.0, 2.0, 500_000),  # around the sqrt(2) switch of the reduction
        [0.0, 2.0**-1074, 1.0, np.inf, np.nan],
    ])
    assert _vmath_accuracy.log1p_float64_max_ulp_error(samples) <= DOUBLE_LOG1P_ULPS


def test_flushing_float_exp_equals_exp_where_normal_and_zero_below():
    # Every non-positive float (and the negative NaNs): bitwise equal to the full exp on
    # [-87, 0], 0 below, NaN for NaN. The kernels rely on this for rows spanning at most 80.
    from softmax_kernels import _vmath_accuracy

    chunks = [(start, start + 2**27) for start in range(2**31, 2**32, 2**27)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert sum(pool.map(lambda chunk: _vmath_accuracy.exp_nonpositive_float32_mismatches(*chunk), chunks)) == 0


def test_flushing_double_exp_equals_exp_where_normal_and_zero_below():
    from softmax_kernels import _vmath_accuracy

    rng = np.random.default_rng(3)
    samples = np.concatenate([
        -rng.uniform(0.0, 800.0, 2_000_000),
        -(10.0 ** rng.uniform(-320, 0, 200_000)),
        rng.uniform(-708.5, -707.5, 200_000),  # around the threshold
        [0.0, -0.0, -np.inf, np.nan, -708.0, np.nextafter(-708.0, 0.0), -600.0],
    ])
    assert _vmath_accuracy.exp_nonpositive_float64_mismatches(samples) == 0
