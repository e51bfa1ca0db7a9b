"""The accuracy contract on long sums: the class sums of K = 100 000 and reductions over up to
a million rows keep it, and the careless one-accumulator sums would not (so the tests have teeth).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mpmath")

import exact  # noqa: E402
import softmax_kernels as sk  # noqa: E402
from helpers import FLOATS, IGNORE_INDEX, check_contract, exact_outputs, f32  # noqa: E402

# ----------------------------------------------------------------------------------
# K = 100 000 classes


def large_k_row():
    """One row of K = 100 000 logits drawn from 16 distinct float32 values (the exact cost scales with those)."""
    rng = np.random.default_rng(100_000)
    levels = f32(rng.normal(0.0, 3.0, 16))
    z = levels[rng.integers(0, 16, 100_000)][None, :]
    return z, np.array([12345])


@pytest.mark.parametrize("dtype", FLOATS)
def test_hundred_thousand_classes_keep_the_class_sums_accurate(backend, dtype):
    z, label = large_k_row()
    rng = np.random.default_rng(100_001)
    v = f32(rng.normal(0.0, 1.0, 8))[rng.integers(0, 8, z.shape)]
    check_contract(backend, dtype, z, label, v)


@pytest.mark.parametrize("dtype", FLOATS)
def test_hundred_thousand_classes_with_soft_targets_and_options(backend, dtype):
    z, _ = large_k_row()
    k = np.arange(z.shape[1])
    soft = f32([0.0, 2e-5, 1e-5, 5e-6])[k % 4][None, :]
    class_weight = f32([1.0, 0.5, 2.0, 0.25])[k % 4]
    check_contract(backend, dtype, z, soft, None, class_weight=class_weight, label_smoothing=0.01,
                   reduction="sum", outputs=("loss", "gradient", "hessian_diagonal"))


def test_sequential_class_sum_would_break_the_contract_at_large_k():
    """At K = 100 000 a one-accumulator sum of exp(z - m) is tens of u off: the K = 1e5 test has teeth."""
    z, label = large_k_row()
    reference = exact_outputs(z, label, None, ("loss",), {})
    m, p = z.max(), int(np.argmax(z[0]))
    e = np.exp(z[0] - m)
    e[p] = 0.0
    sequential_sum = np.add.accumulate(e)[-1]
    naive = np.array([(m - z[0, label[0]]) + np.log1p(sequential_sum)])
    assert exact.contract_ratio(naive, reference["loss"]).max() > 4


# ----------------------------------------------------------------------------------
# Reductions over many rows


def random_batch(n_rows=2000, n_classes=6, seed=2000):
    rng = np.random.default_rng(seed)
    z = f32(rng.normal(0.0, 3.0, (n_rows, n_classes)) * rng.choice([0.1, 1.0, 10.0], (n_rows, 1)))
    labels = rng.integers(0, n_classes, n_rows)
    labels[rng.random(n_rows) < 0.05] = IGNORE_INDEX
    soft = f32(rng.dirichlet(np.ones(n_classes), n_rows))
    return rng, z, labels, soft


@pytest.mark.parametrize("dtype", FLOATS)
def test_mean_over_2000_rows_is_accurate(backend, dtype):
    rng, z, labels, _ = random_batch()
    check_contract(backend, dtype, z, labels, outputs=("loss", "gradient"), reduction="mean",
                   ignore_index=IGNORE_INDEX, sample_weight=f32(rng.uniform(0.0, 2.0, len(z))),
                   class_weight=f32(rng.uniform(0.5, 2.0, z.shape[1])), label_smoothing=0.1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_sum_over_2000_rows_is_accurate(backend, dtype):
    rng, z, labels, soft = random_batch()
    check_contract(backend, dtype, z, soft, outputs=("loss",), reduction="sum")
    labels = np.where(labels == IGNORE_INDEX, 0, labels)
    check_contract(backend, dtype, z, labels, outputs=("loss",), reduction="sum",
                   sample_weight=f32(rng.normal(0.0, 1.0, len(z))))


def shuffled_repeats(n_distinct=2000, repeats=100, n_classes=6, seed=200_000):
    """2000 distinct rows, each repeated 100 times in shuffled order: 200 000 rows whose exact
    total is sum(count * exact row loss), cheap to evaluate, and whose order makes a one-accumulator
    sum drift like a random walk."""
    rng = np.random.default_rng(seed)
    z = f32(rng.normal(0.0, 1.0, (n_distinct, n_classes)))
    labels = rng.integers(0, n_classes, n_distinct)
    weights = f32(rng.uniform(0.5, 2.0, n_distinct))
    order = rng.permutation(np.repeat(np.arange(n_distinct), repeats))
    per_row = exact_outputs(z, labels, None, ("loss",), {"sample_weight": weights})["loss"]
    return z[order], labels[order], weights[order], per_row, repeats, weights


def exact_total(per_row, repeats, weights, reduction):
    """Sum (or mean) of repeated rows; with no input shared between rows the conditions add up."""
    total = exact.ctx.fsum(per_row.value) * repeats
    condition = exact.ctx.fsum(per_row.condition) * repeats
    if reduction == "mean":
        denominator = exact.ctx.fsum(exact.mpf(float(w)) for w in weights) * repeats
        total = total / denominator
        condition = condition / denominator + abs(total)  # D contributes |f|
    return exact.Exact(np.array(total, dtype=object), np.array(condition, dtype=object))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reduction_over_200_000_shuffled_rows_is_accurate(backend, dtype, reduction):
    z, labels, weights, per_row, repeats, distinct_weights = shuffled_repeats()
    computed = backend.loss(z.astype(dtype), labels, sample_weight=weights.astype(dtype), reduction=reduction)
    exact.assert_within_contract(computed, exact_total(per_row, repeats, distinct_weights, reduction),
                                 dtype=dtype, what=f"{reduction} loss of 200 000 rows")


def test_sequential_row_sum_would_break_the_contract():
    """A one-accumulator float64 sum of the 200 000 row losses misses the contract: the test above has teeth."""
    z, labels, weights, per_row, repeats, distinct_weights = shuffled_repeats()
    rows = sk.reference.loss(z, labels, sample_weight=weights)
    sequential = np.add.accumulate(rows)[-1]
    assert exact.contract_ratio(np.array(sequential), exact_total(per_row, repeats, distinct_weights, "sum")) > 4


PERIODIC_Z = f32([[0.1, 0.2, 0.3, 0.4], [3.0, -1.0, 0.5, 2.0], [50.0, 0.0, -3.0, 1.0], [-2.0, -2.5, 7.0, 6.0],
                  [0.0, 0.0, 0.0, 0.0], [1e4, 0.0, -1e4, 9990.0], [1.0, 1.0, 1.0, 30.0]])
PERIODIC_LABELS = np.array([0, 1, 0, 3, 2, 3, 0])
PERIODIC_WEIGHTS = f32([1.0, 0.5, 3.0, 0.25, 2.0, 1.5, 0.75])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reduction_over_a_million_rows_is_accurate(backend, dtype, reduction):
    """7 rows repeated 142 858 times in a cycle: the exact total is the count times the exact row values."""
    repeats = 142_858
    per_row = exact_outputs(PERIODIC_Z, PERIODIC_LABELS, None, ("loss",),
                            {"sample_weight": PERIODIC_WEIGHTS})["loss"]
    z = np.tile(PERIODIC_Z, (repeats, 1)).astype(dtype)
    computed = backend.loss(z, np.tile(PERIODIC_LABELS, repeats),
                            sample_weight=np.tile(PERIODIC_WEIGHTS, repeats).astype(dtype), reduction=reduction)
    exact.assert_within_contract(computed, exact_total(per_row, repeats, PERIODIC_WEIGHTS, reduction), dtype=dtype,
                                 what=f"{reduction} loss of 1e6 rows")
