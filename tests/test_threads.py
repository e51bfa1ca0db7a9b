"""Threads: no result depends on the thread count, and the default count (num_threads=None)
follows OMP_NUM_THREADS and threadpoolctl."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_kernels as sk
from helpers import FLOATS, IGNORE_INDEX, Output, assert_bitwise_equal, dtype_id, every_output, run_python
from softmax_kernels._operations import OPERATIONS
from softmax_kernels._reduction import REDUCTIONS

needs_compiled = pytest.mark.skipif(sk.show_config()["backend"] != "compiled", reason="compiled backend not in use")
needs_openmp = pytest.mark.skipif(not sk.show_config()["openmp"], reason="needs the extension built with OpenMP")


# 20 000 rows: enough for the compiled driver to run rows on several threads (over 32 768
# elements, and 200 000 per packed Hessian).
N_ROWS = 20000


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_every_thread_count_gives_the_same_bits_and_rows_stay_independent(backend, dtype, reduction):
    """Every output of every operation agrees bitwise across thread counts; invalid rows are NaN,
    ignored rows zero, the others equal to a clean run."""
    rng = np.random.default_rng(24)
    n_classes = 4
    z = rng.normal(size=(N_ROWS, n_classes)).astype(dtype)
    y = rng.integers(0, n_classes, size=N_ROWS)
    ignored = np.arange(N_ROWS) % 7 == 0
    invalid = (np.arange(N_ROWS) % 11 == 3) & ~ignored
    y[ignored] = IGNORE_INDEX
    options = dict(class_weight=np.array([1.0, 0.5, 2.0, 1.5]), sample_weight=rng.uniform(0.5, 2.0, N_ROWS),
                   label_smoothing=0.1, ignore_index=IGNORE_INDEX, reduction=reduction)
    v = rng.normal(size=z.shape)
    clean = every_output(backend, z, y, v, **options)
    dirty_z = z.copy()
    dirty_z[ignored] = np.nan
    dirty_z[invalid, 1] = np.inf
    thread_counts = (1, 2, None)  # None: the OpenMP default
    runs = [every_output(backend, dirty_z, y, v, num_threads=threads, **options) for threads in thread_counts]
    for key, value in runs[0].items():
        for threads, other in zip(thread_counts[1:], runs[1:]):
            assert_bitwise_equal(other[key], value, f"{key}: num_threads={threads} and 1 disagree")
        if key.kind == "loss" and reduction != "none":
            assert np.isnan(value), key
            continue
        assert np.all(np.isnan(value[invalid])), key
        if OPERATIONS[key.operation].takes_target_options:  # without targets nothing is ignored
            assert np.all(value[ignored] == 0), key
        kept = ~invalid & ~ignored
        np.testing.assert_array_equal(value[kept], clean[key][kept], err_msg=str(key))


@needs_compiled
@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_a_mean_loss_over_many_rows_has_the_same_bits_on_any_thread_count(dtype):
    """A finite mean over the rows, and every output scaled by its denominator, has the bits
    it has on one thread."""
    rng = np.random.default_rng(20000)
    n_classes = 7
    z = rng.standard_normal((N_ROWS, n_classes)).astype(dtype)
    y = rng.integers(0, n_classes, N_ROWS)
    one_thread = every_output(sk, z, y, num_threads=1, reduction="mean")
    for threads in (2, 3, None):
        for key, value in every_output(sk, z, y, num_threads=threads, reduction="mean").items():
            assert_bitwise_equal(value, one_thread[key], f"{key}: num_threads={threads} and 1 disagree")
    assert np.isfinite(one_thread[Output("loss", "loss")])


@needs_openmp
def test_threadpool_info_lists_an_openmp_runtime_after_import():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    apis = {pool["user_api"] for pool in threadpoolctl.threadpool_info()}
    assert "openmp" in apis


@needs_openmp
@pytest.mark.parametrize("limit", [1, 3])
def test_threadpool_limits_set_the_default_thread_count_and_restore_it(limit):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = sk.show_config()["max_threads"]
    with threadpoolctl.threadpool_limits(limits=limit, user_api="openmp"):
        assert sk.show_config()["max_threads"] == limit
        z = np.random.default_rng(0).standard_normal((50_000, 8))
        expected = sk.softmax(z, num_threads=1)
        np.testing.assert_array_equal(sk.softmax(z), expected)  # num_threads=None follows the limit
    assert sk.show_config()["max_threads"] == before
    with threadpoolctl.threadpool_limits(limit):  # every library's pools, OpenMP's among them
        assert sk.show_config()["max_threads"] == limit
    assert sk.show_config()["max_threads"] == before


@needs_openmp
def test_default_thread_count_follows_omp_num_threads():
    code = "import softmax_kernels as sk; print(sk.show_config()['max_threads'])"
    result = run_python("-c", code, env={"SOFTMAX_KERNELS_BACKEND": "compiled", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
