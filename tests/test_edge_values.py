"""Edge values of the spec, for every output of every operation: empty batches, one class,
masked (-inf) classes, invalid rows (NaN or +inf logits) and ignored rows."""

from __future__ import annotations

import numpy as np
import pytest

import softmax_kernels as sk
from helpers import FLOATS, IGNORE_INDEX, TARGET_VARIANTS, dtype_id, every_output, target_variant
from softmax_kernels._operations import OPERATIONS, output_shape
from softmax_kernels._reduction import REDUCTIONS


def is_reduced_loss(key, reduction):
    return key.kind == "loss" and reduction != "none"


# --- N = 0 ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", TARGET_VARIANTS)
@pytest.mark.parametrize("batch", [(0,), (2, 0), (0, 3)], ids=str)
def test_empty_batch_gives_empty_results_sum_zero_mean_nan(backend, dtype, reduction, variant_name, batch):
    n_classes = 4
    y, options = target_variant(variant_name, batch, n_classes)
    z = np.zeros(batch + (n_classes,), dtype=dtype)
    outputs = every_output(backend, z, y, reduction=reduction, **options)
    for key, value in outputs.items():
        assert isinstance(value, np.ndarray) and value.dtype == dtype, key
        if is_reduced_loss(key, reduction):
            assert value.shape == (), key
            if reduction == "sum":
                assert value == 0, f"{key}: {value}"
            else:
                assert np.isnan(value), f"{key}: {value}"
        else:
            assert value.shape == output_shape(key.kind, batch, n_classes, "none", key.layout), key


# --- K = 1 ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", TARGET_VARIANTS)
def test_single_class_gives_zero_loss_gradient_and_hessian(backend, dtype, reduction, variant_name):
    batch = (5,)
    y, options = target_variant(variant_name, batch, 1)
    z = np.array([0.0, -3.5, 1e4, -1e4, 7.25], dtype=dtype)[:, None]
    outputs = every_output(backend, z, y, reduction=reduction, **options)
    for key, value in outputs.items():
        assert value.dtype == dtype, key
        if key.kind == "softmax":
            assert np.all(value == 1), value
        else:  # log_softmax, loss, gradient, Hessians, HVP, diagonal
            assert np.all(value == 0), f"{key}: {value}"


# --- -inf: masked classes -------------------------------------------------------------


MASKED_Z = np.array(
    [
        [1.0, -np.inf, 0.5, -2.0],
        [-np.inf, 3.0, -np.inf, 2.0],
        [0.25, 0.5, 1.5, -np.inf],
    ]
)
KEPT = ~np.isinf(MASKED_Z)  # each row keeps 3, 2, 3 classes


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_masked_class_has_zero_probability(backend, dtype):
    z = MASKED_Z.astype(dtype)
    s = backend.softmax(z)
    log_s = backend.log_softmax(z)
    assert np.all(s[~KEPT] == 0)
    assert np.all(log_s[~KEPT] == -np.inf)
    for row in range(len(z)):  # the kept classes are the softmax of the kept logits
        np.testing.assert_array_equal(s[row, KEPT[row]], backend.softmax(z[row, KEPT[row]]))
        np.testing.assert_array_equal(log_s[row, KEPT[row]], backend.log_softmax(z[row, KEPT[row]]))


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize(
    "how, y, options",
    [
        ("label", [1, 0, 3], {}),
        ("label-weighted", [1, 2, 3], dict(class_weight=[1.0, 2.0, 3.0, 0.5], sample_weight=[2.0, 1.0, 0.5])),
        ("soft-positive-weight", [[0.5, 0.1, 0.4, 0.0], [0.1, 0.5, 0.0, 0.4], [0.2, 0.2, 0.2, 0.4]], {}),
        ("tiny-soft-weight", [[0.5, 1e-30, 0.5, 0.0], [1e-30, 0.5, 1e-30, 0.5], [0.25, 0.25, 0.5, 1e-30]], {}),
        ("label-smoothing", [0, 1, 2], dict(label_smoothing=0.1)),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_positive_target_weight_on_a_masked_class_gives_infinite_loss(backend, dtype, how, y, options):
    z = MASKED_Z.astype(dtype)
    y = np.array(y, dtype=dtype if np.ndim(y) == 2 else np.int64)
    options = {k: np.array(value, dtype=dtype) if isinstance(value, list) else value for k, value in options.items()}
    loss = backend.loss(z, y, **options)
    assert np.all(loss == np.inf), loss
    for reduction in ("sum", "mean"):
        assert backend.loss(z, y, reduction=reduction, **options) == np.inf


def _dropped(z_row, y_row, v_row, cw_row, kept):
    """One row with its masked classes removed (a label is renumbered, soft targets are sliced)."""
    if np.ndim(y_row) == 0:
        y_row = int(np.flatnonzero(np.flatnonzero(kept) == y_row)[0])
    else:
        y_row = y_row[kept]
    return z_row[kept], y_row, v_row[kept], (None if cw_row is None else cw_row[kept])


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize(
    "how, y, cw",
    [
        ("labels", [0, 1, 2], None),
        ("labels-cw", [2, 3, 0], [1.0, 2.0, 3.0, 0.5]),
        ("soft-zero-weight", [[0.5, 0.0, 0.4, 0.1], [0.0, 0.7, 0.0, 0.3], [0.2, 0.2, 0.6, 0.0]], None),
        ("soft-zero-weight-cw", [[0.5, 0.0, 0.4, 0.1], [0.0, 0.7, 0.0, 0.3], [0.2, 0.2, 0.6, 0.0]],
         [1.0, 2.0, 3.0, 0.5]),
        ("soft-positive-weight-cw0", [[0.5, 0.2, 0.4, 0.1], [0.3, 0.7, 0.1, 0.3], [0.2, 0.2, 0.6, 0.2]],
         [[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_masked_class_with_zero_target_weight_is_as_if_absent(backend, dtype, how, y, cw):
    """A zero target weight on a -inf logit contributes 0 (not 0 * inf = NaN): every output of the
    row equals that of the row with the masked classes removed, and is zero at the masked classes."""
    z = MASKED_Z.astype(dtype)
    y = np.array(y, dtype=dtype if np.ndim(y) == 2 else np.int64)
    v = np.linspace(-1.0, 2.0, z.size).reshape(z.shape).astype(dtype)
    cw_rows = [None] * 3 if cw is None else np.broadcast_to(np.array(cw, dtype=dtype), z.shape)
    # Dropping exact zeros may regroup the class sums: equal up to a few rounding errors.
    tolerance = dict(rtol=1e-6, atol=0) if dtype == np.float32 else dict(rtol=1e-14, atol=0)
    for row in range(len(z)):
        options = {} if cw_rows[row] is None else dict(class_weight=cw_rows[row])
        z_row, y_row, v_row, cw_kept = _dropped(z[row], y[row], v[row], cw_rows[row], KEPT[row])
        kept_options = {} if cw_kept is None else dict(class_weight=cw_kept)
        full = every_output(backend, z[row], y[row], v[row], **options)
        kept = every_output(backend, z_row, y_row, v_row, **kept_options)
        n_kept = KEPT[row].sum()
        for key, value in full.items():
            assert np.all(~np.isnan(value)), f"row {row} {key}: {value}"
            if key.kind == "loss":
                assert np.isfinite(value), f"row {row} {key}: {value}"
                np.testing.assert_allclose(value, kept[key], err_msg=f"row {row} {key}", **tolerance)
                continue
            if key.kind == "hessian":
                value = value if key.layout == "full" else sk.unpack(value, key.layout)
                expected = kept[key] if key.layout == "full" else sk.unpack(kept[key], key.layout)
                assert value.shape == (4, 4) and expected.shape == (n_kept, n_kept)
                np.testing.assert_allclose(value[np.ix_(KEPT[row], KEPT[row])], expected, err_msg=str(key),
                                           **tolerance)
                assert np.all(value[~KEPT[row]] == 0) and np.all(value[:, ~KEPT[row]] == 0), key
                continue
            if key.kind == "log_softmax":
                assert np.all(value[~KEPT[row]] == -np.inf)
            else:
                assert np.all(value[~KEPT[row]] == 0), f"row {row} {key}: {value}"
            np.testing.assert_allclose(value[KEPT[row]], kept[key], err_msg=f"row {row} {key}", **tolerance)


# --- invalid rows ---------------------------------------------------------------------


INVALID_ROWS = {
    "all-minus-inf": [-np.inf, -np.inf, -np.inf, -np.inf],
    "nan": [0.5, np.nan, 1.0, 2.0],
    "plus-inf": [0.5, np.inf, 1.0, 2.0],
    "plus-and-minus-inf": [np.inf, -np.inf, 1.0, 2.0],
    "nan-and-minus-inf": [-np.inf, -np.inf, np.nan, -np.inf],
    "two-plus-inf": [np.inf, 0.0, np.inf, 2.0],
}


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", TARGET_VARIANTS)
@pytest.mark.parametrize("bad_name", INVALID_ROWS)
def test_invalid_row_is_nan_everywhere_and_other_rows_untouched(backend, dtype, reduction, variant_name, bad_name):
    batch, n_classes, bad_row = (5,), 4, 2
    y, options = target_variant(variant_name, batch, n_classes, seed=7)
    if y is not None and y.ndim == 1:
        y[bad_row] = 0  # not ignored (one variant has an ignore_index)
    rng = np.random.default_rng(8)
    clean_z = rng.normal(size=batch + (n_classes,)).astype(dtype)
    bad_z = clean_z.copy()
    bad_z[bad_row] = INVALID_ROWS[bad_name]
    clean = every_output(backend, clean_z, y, reduction=reduction, **options)
    bad = every_output(backend, bad_z, y, reduction=reduction, **options)
    others = np.arange(batch[0]) != bad_row
    for key, value in bad.items():
        assert value.dtype == dtype, key
        if is_reduced_loss(key, reduction):
            assert np.isnan(value), f"{key}: {value}"
            continue
        assert np.all(np.isnan(value[bad_row])), f"{key}: row {bad_row} is {value[bad_row]}"
        np.testing.assert_array_equal(value[others], clean[key][others], err_msg=str(key))


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("where", ["soft-target", "sample-weight", "v"])
def test_nan_in_a_secondary_input_makes_that_row_nan(backend, dtype, where):
    batch, n_classes, bad_row = (4,), 3, 1
    rng = np.random.default_rng(9)
    z = rng.normal(size=batch + (n_classes,)).astype(dtype)
    y = rng.dirichlet(np.ones(n_classes), size=batch).astype(dtype)
    sw = np.ones(batch, dtype=dtype)
    v = rng.normal(size=z.shape).astype(dtype)
    clean = every_output(backend, z, y, v, sample_weight=sw)
    if where == "soft-target":
        y = y.copy()
        y[bad_row, 1] = np.nan
    elif where == "sample-weight":
        sw = sw.copy()
        sw[bad_row] = np.nan
    else:
        v = v.copy()
        v[bad_row, 2] = np.nan
    bad = every_output(backend, z, y, v, sample_weight=sw)
    others = np.arange(batch[0]) != bad_row
    for key, value in bad.items():
        operation = OPERATIONS[key.operation]
        affected = operation.takes_v if where == "v" else operation.takes_target_options
        if affected:
            assert np.all(np.isnan(value[bad_row])), f"{key}: {value[bad_row]}"
        else:
            np.testing.assert_array_equal(value[bad_row], clean[key][bad_row], err_msg=str(key))
        np.testing.assert_array_equal(value[others], clean[key][others], err_msg=str(key))


# --- ignored rows ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [IGNORE_INDEX, 1, 2**40])
@pytest.mark.parametrize("ignored_logits", ["finite", "nan", "plus-inf", "all-minus-inf", "huge"])
def test_ignored_rows_are_exactly_zero_and_their_logits_are_not_read(
    backend, dtype, reduction, ignore_index, ignored_logits
):
    rng = np.random.default_rng(10)
    n_classes = 4
    z = rng.normal(size=(6, n_classes)).astype(dtype)
    y = np.array([0, ignore_index, 3, ignore_index, 2, 0], dtype=np.int64)
    ignored = y == ignore_index
    options = dict(
        class_weight=np.array([1.0, 0.5, 2.0, 1.5], dtype=dtype),
        sample_weight=np.linspace(0.5, 2.0, 6).astype(dtype),
        label_smoothing=0.15,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    reference_outputs = every_output(backend, z, y, **options)
    fill = {"finite": 0.5, "nan": np.nan, "plus-inf": np.inf, "all-minus-inf": -np.inf, "huge": 1e30}[ignored_logits]
    z_bad = z.copy()
    z_bad[ignored] = fill
    z_bad[1, 2] = 3.0  # a mixed row
    outputs = every_output(backend, z_bad, y, **options)
    for key, value in outputs.items():
        if not OPERATIONS[key.operation].takes_target_options:
            continue  # no targets: nothing is ignored
        if is_reduced_loss(key, reduction):
            np.testing.assert_array_equal(value, reference_outputs[key], err_msg=str(key))
            assert np.isfinite(value), key
            continue
        assert np.all(value[ignored] == 0), f"{key}: {value[ignored]}"
        np.testing.assert_array_equal(value, reference_outputs[key], err_msg=str(key))
