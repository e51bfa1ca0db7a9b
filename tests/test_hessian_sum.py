"""hessian_sum: the per-row Hessians summed over the batch, or by group, without forming them.

Exact values by mpmath on small hard batches (the accuracy bound in the README), agreement
with the per-row Hessians summed, groups, reductions, layouts, threads, and bad input.
"""

import contextlib

import numpy as np
import pytest

import softmax_kernels as sk
from softmax_kernels._layout import packed_size

exact = pytest.importorskip("exact")  # tests/exact.py, which needs mpmath

# Classes of the short-row kernel, of the one past it, and of the BLAS-product path.
N_CLASSES = [1, 2, 5, 10, 16, 17, 40]


def _hard_batch(n_classes, dtype, rng, n_rows=40):
    """Confident rows, ties, masked classes and an extreme row among ordinary ones."""
    z = 3.0 * rng.standard_normal((n_rows, n_classes))
    if n_classes > 1:
        z[0, 0] = 60.0  # confident
        z[1, :] = 0.0  # all tied
        z[2, -1] = -np.inf  # a masked class
        z[3, 0] = 200.0 if dtype == np.float64 else 90.0  # an extreme row (span beyond the wide-path gap)
        z[4, : n_classes // 2] = 5.0  # partly tied maxima
    return z.astype(dtype)


def _exact_sum(z, y, groups, n_groups, options):
    """The exact summed Hessian (packed upper, per group) and the sums of |terms| and conditions."""
    per_row = exact.hessian(z, y, **options)
    n_classes = z.shape[-1]
    rows, cols = np.triu_indices(n_classes)
    order = np.argsort(cols * n_classes + rows, kind="stable")
    rows, cols = rows[order], cols[order]
    values = per_row.value[:, rows, cols]
    conditions = per_row.condition[:, rows, cols]
    shape = (n_groups, len(rows))
    total = np.empty(shape, dtype=object)
    scale = np.empty(shape, dtype=object)
    for g in range(n_groups):
        members = groups == g
        for q in range(len(rows)):
            total[g, q] = sum(values[members, q], exact.ZERO)
            scale[g, q] = sum((abs(v) + c for v, c in zip(values[members, q], conditions[members, q])), exact.ZERO)
    return total, scale


@pytest.mark.parametrize("n_classes", N_CLASSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("targets", ["none", "labels", "smoothed", "soft"])
def test_summed_hessian_is_exact_to_a_few_units_of_the_summed_terms(backend, n_classes, dtype, targets, rng):
    z = _hard_batch(n_classes, dtype, rng)
    n_rows = z.shape[0]
    options = {}
    y = None
    if targets in ("labels", "smoothed"):
        y = rng.integers(0, n_classes, n_rows)
        options["sample_weight"] = (rng.random(n_rows) + 0.5).astype(dtype)
        if targets == "smoothed":
            options["label_smoothing"] = 0.1
            options["class_weight"] = (rng.random(n_classes) + 0.5).astype(dtype)
    elif targets == "soft":
        y = rng.random((n_rows, n_classes)).astype(dtype)
    groups = rng.integers(0, 3, n_rows)
    for grouped in (False, True):
        kwargs = dict(options, groups=groups, n_groups=3) if grouped else options
        computed = backend.hessian_sum(z, y, **kwargs)
        total, scale = _exact_sum(z, y, groups if grouped else np.zeros(n_rows, int), 3 if grouped else 1, options)
        computed = computed.reshape(total.shape)
        # The off-diagonal elements of long rows come from a BLAS product over the batch: the
        # classical bound (n + 4) u for n rows; every other element: the contract's 4 u.
        factor = 4 + (n_rows if n_classes > 16 and not grouped else 0)
        exact.assert_within_contract(computed, total, scale, dtype=dtype, factor=factor,
                                     what=f"hessian_sum K={n_classes} {targets} grouped={grouped}")


@pytest.mark.parametrize("n_classes", N_CLASSES)
@pytest.mark.parametrize("layout", ["packed_upper", "packed_lower", "full"])
def test_summed_hessian_equals_the_per_row_hessians_summed(backend, n_classes, layout, rng):
    z = 2.0 * rng.standard_normal((500, n_classes))
    y = rng.integers(0, n_classes, 500)
    per_row = backend.hessian(z, y, label_smoothing=0.05, layout=layout)
    summed = backend.hessian_sum(z, y, label_smoothing=0.05, layout=layout)
    np.testing.assert_allclose(summed, per_row.sum(axis=0), rtol=1e-12, atol=1e-12 * np.abs(per_row).sum())


def test_layouts_store_the_same_summed_matrix(backend, rng):
    z = rng.standard_normal((300, 6))
    full = backend.hessian_sum(z, layout="full")
    np.testing.assert_array_equal(full, full.T)
    np.testing.assert_array_equal(sk.unpack(backend.hessian_sum(z), "packed_upper"), full)
    np.testing.assert_array_equal(sk.unpack(backend.hessian_sum(z, layout="packed_lower"), "packed_lower"), full)


@pytest.mark.parametrize("n_classes", [4, 30])
def test_groups_sum_their_own_rows(backend, n_classes, rng):
    z = rng.standard_normal((400, n_classes))
    y = rng.integers(0, n_classes, 400)
    groups = rng.integers(0, 5, 400)
    by_group = backend.hessian_sum(z, y, groups=groups, n_groups=7)
    assert by_group.shape == (7, packed_size(n_classes))
    for g in range(7):
        members = groups == g
        np.testing.assert_allclose(by_group[g], backend.hessian_sum(z[members], y[members]), rtol=1e-13, atol=1e-15)
    assert not by_group[5:].any()  # groups without rows sum to zero
    np.testing.assert_array_equal(backend.hessian_sum(z, y, groups=groups), by_group[:5])  # n_groups = max + 1


def test_mean_divides_by_the_denominator_of_the_per_row_functions(backend, rng):
    z = rng.standard_normal((200, 5))
    y = rng.integers(0, 5, 200)
    y[::9] = -1
    options = dict(sample_weight=rng.random(200) + 0.1, class_weight=rng.random(5) + 0.5, ignore_index=-1)
    total = backend.hessian_sum(z, y, **options)
    mean = backend.hessian_sum(z, y, reduction="mean", **options)
    kept = y != -1
    denominator = np.sum(options["sample_weight"][kept] * options["class_weight"][y[kept]])
    np.testing.assert_allclose(mean, total / denominator, rtol=1e-13)
    np.testing.assert_allclose(mean, backend.hessian(z, y, reduction="mean", **options).sum(axis=0), rtol=1e-12)


def test_invalid_row_makes_the_sum_nan_and_ignored_rows_count_nothing(backend, rng):
    z = rng.standard_normal((50, 4))
    y = rng.integers(0, 4, 50)
    y[3] = -100
    z[3] = np.nan  # ignored: not read
    clean = backend.hessian_sum(z[y != -100], y[y != -100])
    np.testing.assert_allclose(backend.hessian_sum(z, y, ignore_index=-100), clean, rtol=1e-14)
    z[7, 1] = np.nan
    assert np.isnan(backend.hessian_sum(z, y, ignore_index=-100)).all()
    groups = np.zeros(50, int)
    groups[7] = 1
    by_group = backend.hessian_sum(z, y, ignore_index=-100, groups=groups)
    assert np.isfinite(by_group[0]).all() and np.isnan(by_group[1]).all()


def test_empty_batch_sums_to_zero(backend):
    assert backend.hessian_sum(np.zeros((0, 3))).tolist() == [0.0] * 6
    assert backend.hessian_sum(np.zeros((0, 3)), groups=np.zeros(0, int)).shape == (0, 6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_sums_in_double_and_rounds_once(backend, dtype, rng):
    z = rng.standard_normal((20_000, 8)).astype(dtype)
    result = backend.hessian_sum(z)
    assert result.dtype == dtype
    reference = sk.reference.hessian_sum(z.astype(np.float64))
    np.testing.assert_allclose(result, reference, rtol=4 * np.finfo(dtype).eps / 2 * 8, atol=0)


@pytest.mark.parametrize("n_classes", [3, 16, 40])
def test_threads_do_not_change_the_summed_hessian(n_classes, rng):
    if sk.show_config()["backend"] != "compiled":
        pytest.skip("the compiled extension is not in use")
    z = rng.standard_normal((70_000, n_classes))
    y = rng.integers(0, n_classes, 70_000)
    groups = rng.integers(0, 4, 70_000)
    for kwargs in ({}, {"groups": groups}):
        results = [sk.hessian_sum(z, y, num_threads=t, **kwargs) for t in (1, 2, 3)]
        for other in results[1:]:
            np.testing.assert_array_equal(other, results[0])
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        one_blas_thread = sk.hessian_sum(z, y)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        np.testing.assert_array_equal(sk.hessian_sum(z, y), one_blas_thread)


def test_num_threads_limits_blas_in_the_summed_hessian_of_long_rows(monkeypatch, rng):
    if sk.show_config()["backend"] != "compiled":
        pytest.skip("the compiled extension is not in use")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not any(pool["user_api"] == "blas" for pool in threadpoolctl.threadpool_info()):
        pytest.skip("threadpoolctl sees no BLAS")
    from softmax_kernels import _threads

    seen = []
    limit = _threads.blas_threads

    @contextlib.contextmanager
    def recording(num_threads):
        with limit(num_threads):
            pools = threadpoolctl.threadpool_info()
            seen.append((num_threads, {pool["num_threads"] for pool in pools if pool["user_api"] == "blas"}))
            yield

    monkeypatch.setattr(_threads, "blas_threads", recording)
    z = rng.standard_normal((3000, 20))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        expected = sk.hessian_sum(z)
        np.testing.assert_array_equal(sk.hessian_sum(z, num_threads=1), expected)
    assert seen == [(None, {2}), (1, {1})]
    sk.hessian_sum(z[:, :10], num_threads=1)  # short rows: no BLAS product
    assert len(seen) == 2


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"groups": np.zeros(10)}, TypeError, "groups: expected integers"),
        ({"groups": np.zeros(9, int)}, ValueError, "groups: expected shape (10,)"),
        ({"groups": np.arange(10), "n_groups": 5}, ValueError, "groups: expected values in [0, 5), got groups[5] = 5"),
        ({"groups": -np.ones(10, int)}, ValueError, "groups: expected values in [0, 0)"),
        ({"n_groups": 3}, ValueError, "n_groups: only meaningful with groups"),
        ({"groups": np.zeros(10, int), "n_groups": -1}, ValueError, "n_groups: expected an int >= 0"),
        ({"groups": np.zeros(10, int), "n_groups": 2.0}, TypeError, "n_groups: expected an int"),
        ({"reduction": "none"}, ValueError, "reduction: expected one of 'sum', 'mean'"),
        ({"layout": "diagonal"}, ValueError, "layout: expected one of"),
    ],
)
def test_bad_input_names_the_argument_and_writes_nothing(backend, kwargs, error, fragment):
    out = np.full(packed_size(4) * (5 if "n_groups" in kwargs and kwargs.get("n_groups") == 5 else 1), 7.0)
    out = out.reshape(-1, packed_size(4)) if "n_groups" in kwargs and kwargs.get("n_groups") == 5 else out
    with pytest.raises(error, match=fragment.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        backend.hessian_sum(np.zeros((10, 4)), out=out, **kwargs)
    assert (out == 7.0).all()


def test_dask_hessian_sum_matches_memory(rng):
    da = pytest.importorskip("dask.array")
    import softmax_kernels.dask as skd

    z = rng.standard_normal((1000, 6))
    y = rng.integers(0, 6, 1000)
    groups = rng.integers(0, 3, 1000)
    for kwargs in ({}, {"reduction": "mean"}, {"groups": groups, "n_groups": 3, "layout": "full"}):
        lazy_kwargs = {k: da.from_array(v, chunks=150) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        lazy = skd.hessian_sum(da.from_array(z, chunks=(150, 6)), da.from_array(y, chunks=150), **lazy_kwargs)
        np.testing.assert_allclose(lazy.compute(scheduler="synchronous"), sk.hessian_sum(z, y, **kwargs), rtol=1e-13)
    with pytest.raises(ValueError, match="n_groups: required with groups on Dask"):
        skd.hessian_sum(da.from_array(z, chunks=(150, 6)), groups=da.from_array(groups, chunks=150))
