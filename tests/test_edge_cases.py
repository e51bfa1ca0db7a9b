"""Edge cases of the spec: empty batches, one class, masked (-inf) classes, invalid and
ignored rows, batch axes, memory layouts, dtypes, label types, ``out`` identity,
untouched inputs, ``show_config`` and the backend switch.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import softmax_kernels as sk

REDUCTIONS = ("none", "sum", "mean")
LAYOUTS = ("packed_upper", "packed_lower", "full")
FLOATS = (np.float32, np.float64)


def float_ids(dtype):
    return np.dtype(dtype).name


def every_output(backend, z, y=None, v=None, num_threads=None, **options):
    """Every output of every public function for one problem, keyed by a readable name.

    With y=None only the functions that accept it (and sample_weight/reduction) are called.
    """
    z_arr = np.asarray(z)
    if v is None:
        v = np.linspace(-1.0, 1.0, z_arr.size).reshape(z_arr.shape)
    options["num_threads"] = num_threads
    outputs = {
        "softmax": backend.softmax(z, num_threads=num_threads),
        "log_softmax": backend.log_softmax(z, num_threads=num_threads),
        "hessian_vector_product": backend.hessian_vector_product(z, v, y, **options),
        "hessian_diagonal": backend.hessian_diagonal(z, y, **options),
    }
    for layout in LAYOUTS:
        outputs[f"hessian {layout}"] = backend.hessian(z, y, layout=layout, **options)
    if y is None:
        return outputs
    outputs["loss"] = backend.loss(z, y, **options)
    outputs["gradient"] = backend.gradient(z, y, **options)
    outputs["loss_gradient loss"], outputs["loss_gradient gradient"] = backend.loss_gradient(z, y, **options)
    for layout in LAYOUTS:
        loss, grad, hess = backend.loss_gradient_hessian(z, y, layout=layout, **options)
        outputs.update({f"lgh loss {layout}": loss, f"lgh gradient {layout}": grad, f"lgh hessian {layout}": hess})
    return outputs


def is_loss(name):
    return name == "loss" or name.startswith(("loss_gradient loss", "lgh loss"))


def expected_width(name, n_classes):
    """The per-row shape of an output (after the batch axes)."""
    if is_loss(name):
        return ()
    if name.startswith(("hessian ", "lgh hessian ")):
        return (n_classes, n_classes) if name.endswith("full") else (n_classes * (n_classes + 1) // 2,)
    return (n_classes,)


def target_variants(batch, n_classes, rng):
    """(name, y, options) covering labels with every option, soft targets, and y=None."""
    labels = rng.integers(0, n_classes, size=batch)
    soft = rng.dirichlet(np.ones(n_classes), size=batch)
    cw = rng.uniform(0.5, 2.0, size=n_classes)
    sw = rng.uniform(0.5, 2.0, size=batch)
    return [
        ("labels", labels, {}),
        ("labels-options", labels, dict(class_weight=cw, label_smoothing=0.2, sample_weight=sw, ignore_index=-100)),
        ("soft", soft, dict(class_weight=cw, label_smoothing=0.1, sample_weight=sw)),
        ("no-y", None, dict(sample_weight=sw)),
    ]


VARIANT_NAMES = ["labels", "labels-options", "soft", "no-y"]


def variant(name, batch, n_classes, seed=0):
    (found,) = [v for v in target_variants(batch, n_classes, np.random.default_rng(seed)) if v[0] == name]
    return found[1], found[2]


# --- N = 0 ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", VARIANT_NAMES)
@pytest.mark.parametrize("batch", [(0,), (2, 0), (0, 3)], ids=str)
def test_empty_batch_gives_empty_results_sum_zero_mean_nan(backend, dtype, reduction, variant_name, batch):
    n_classes = 4
    y, options = variant(variant_name, batch, n_classes)
    z = np.zeros(batch + (n_classes,), dtype=dtype)
    outputs = every_output(backend, z, y, reduction=reduction, **options)
    for name, value in outputs.items():
        assert isinstance(value, np.ndarray) and value.dtype == dtype, name
        if is_loss(name) and reduction != "none":
            assert value.shape == (), name
            if reduction == "sum":
                assert value == 0, f"{name}: {value}"
            else:
                assert np.isnan(value), f"{name}: {value}"
        else:
            assert value.shape == batch + expected_width(name, n_classes), name


# --- K = 1 ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", VARIANT_NAMES)
def test_single_class_gives_zero_loss_gradient_and_hessian(backend, dtype, reduction, variant_name):
    batch = (5,)
    y, options = variant(variant_name, batch, 1)
    z = np.array([0.0, -3.5, 1e4, -1e4, 7.25], dtype=dtype)[:, None]
    outputs = every_output(backend, z, y, reduction=reduction, **options)
    for name, value in outputs.items():
        assert value.dtype == dtype, name
        if name == "softmax":
            assert np.all(value == 1), value
        else:  # log_softmax, loss, gradient, Hessians, HVP, diagonal
            assert np.all(value == 0), f"{name}: {value}"


# --- -inf: masked classes -------------------------------------------------------------


MASKED_Z = np.array(
    [
        [1.0, -np.inf, 0.5, -2.0],
        [-np.inf, 3.0, -np.inf, 2.0],
        [0.25, 0.5, 1.5, -np.inf],
    ]
)
KEPT = ~np.isinf(MASKED_Z)  # each row keeps 3, 2, 3 classes


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
def test_masked_class_has_zero_probability(backend, dtype):
    z = MASKED_Z.astype(dtype)
    s = backend.softmax(z)
    log_s = backend.log_softmax(z)
    assert np.all(s[~KEPT] == 0)
    assert np.all(log_s[~KEPT] == -np.inf)
    for row in range(len(z)):  # the kept classes are the softmax of the kept logits
        np.testing.assert_array_equal(s[row, KEPT[row]], backend.softmax(z[row, KEPT[row]]))
        np.testing.assert_array_equal(log_s[row, KEPT[row]], backend.log_softmax(z[row, KEPT[row]]))


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
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


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
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
        for name, value in full.items():
            assert np.all(~np.isnan(value)), f"row {row} {name}: {value}"
            if is_loss(name):
                assert np.isfinite(value), f"row {row} {name}: {value}"
                np.testing.assert_allclose(value, kept[name], err_msg=f"row {row} {name}", **tolerance)
                continue
            if name.startswith(("hessian ", "lgh hessian ")):
                value = sk.unpack(value, name.split()[-1]) if not name.endswith("full") else value
                expected = kept[name] if name.endswith("full") else sk.unpack(kept[name], name.split()[-1])
                assert value.shape == (4, 4) and expected.shape == (n_kept, n_kept)
                np.testing.assert_allclose(value[np.ix_(KEPT[row], KEPT[row])], expected, err_msg=name, **tolerance)
                assert np.all(value[~KEPT[row]] == 0) and np.all(value[:, ~KEPT[row]] == 0), name
                continue
            if name == "log_softmax":
                assert np.all(value[~KEPT[row]] == -np.inf)
            else:
                assert np.all(value[~KEPT[row]] == 0), f"row {row} {name}: {value}"
            np.testing.assert_allclose(value[KEPT[row]], kept[name], err_msg=f"row {row} {name}", **tolerance)


# --- invalid rows ---------------------------------------------------------------------


INVALID_ROWS = {
    "all-minus-inf": [-np.inf, -np.inf, -np.inf, -np.inf],
    "nan": [0.5, np.nan, 1.0, 2.0],
    "plus-inf": [0.5, np.inf, 1.0, 2.0],
    "plus-and-minus-inf": [np.inf, -np.inf, 1.0, 2.0],
    "nan-and-minus-inf": [-np.inf, -np.inf, np.nan, -np.inf],
    "two-plus-inf": [np.inf, 0.0, np.inf, 2.0],
}


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", VARIANT_NAMES)
@pytest.mark.parametrize("bad_name", INVALID_ROWS)
def test_invalid_row_is_nan_everywhere_and_other_rows_untouched(backend, dtype, reduction, variant_name, bad_name):
    batch, n_classes, bad_row = (5,), 4, 2
    y, options = variant(variant_name, batch, n_classes, seed=7)
    if y is not None and y.ndim == 1:
        y[bad_row] = 0  # not ignored (ignore_index=-100 is in the options of one variant)
    rng = np.random.default_rng(8)
    clean_z = rng.normal(size=batch + (n_classes,)).astype(dtype)
    bad_z = clean_z.copy()
    bad_z[bad_row] = INVALID_ROWS[bad_name]
    clean = every_output(backend, clean_z, y, reduction=reduction, **options)
    bad = every_output(backend, bad_z, y, reduction=reduction, **options)
    others = np.arange(batch[0]) != bad_row
    for name, value in bad.items():
        assert value.dtype == dtype, name
        if is_loss(name) and reduction != "none":
            assert np.isnan(value), f"{name}: {value}"
            continue
        assert np.all(np.isnan(value[bad_row])), f"{name}: row {bad_row} is {value[bad_row]}"
        np.testing.assert_array_equal(value[others], clean[name][others], err_msg=name)


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
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
    affected = ["hessian_vector_product"] if where == "v" else [n for n in bad if n not in ("softmax", "log_softmax")]
    for name, value in bad.items():
        if name in affected:
            assert np.all(np.isnan(value[bad_row])), f"{name}: {value[bad_row]}"
        else:
            np.testing.assert_array_equal(value[bad_row], clean[name][bad_row], err_msg=name)
        np.testing.assert_array_equal(value[others], clean[name][others], err_msg=name)


# --- ignored rows ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [-100, 1, 2**40])
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
    for name, value in outputs.items():
        if name in ("softmax", "log_softmax"):
            continue  # no targets: nothing is ignored
        if is_loss(name) and reduction != "none":
            np.testing.assert_array_equal(value, reference_outputs[name], err_msg=name)
            assert np.isfinite(value), name
            continue
        assert np.all(value[ignored] == 0), f"{name}: {value[ignored]}"
        np.testing.assert_array_equal(value, reference_outputs[name], err_msg=name)


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_large_batch_rows_stay_independent_across_threads(backend, dtype, reduction):
    """Big enough for the compiled driver to run rows on several threads: invalid rows are NaN,
    ignored rows zero, the others equal to a clean run, and every thread count agrees bitwise."""
    rng = np.random.default_rng(24)
    n_rows, n_classes = 20000, 4  # 80 000 elements, and 200 000 per packed Hessian
    z = rng.normal(size=(n_rows, n_classes)).astype(dtype)
    y = rng.integers(0, n_classes, size=n_rows)
    ignored = np.arange(n_rows) % 7 == 0
    invalid = (np.arange(n_rows) % 11 == 3) & ~ignored
    y[ignored] = -100
    options = dict(class_weight=np.array([1.0, 0.5, 2.0, 1.5]), sample_weight=rng.uniform(0.5, 2.0, n_rows),
                   label_smoothing=0.1, ignore_index=-100, reduction=reduction)
    v = rng.normal(size=z.shape)
    clean = every_output(backend, z, y, v, **options)
    dirty_z = z.copy()
    dirty_z[ignored] = np.nan
    dirty_z[invalid, 1] = np.inf
    runs = [every_output(backend, dirty_z, y, v, num_threads=threads, **options) for threads in (1, 2, None)]
    for name, value in runs[0].items():
        for other in runs[1:]:
            np.testing.assert_array_equal(other[name], value, err_msg=f"{name}: thread counts disagree")
        if is_loss(name) and reduction != "none":
            assert np.isnan(value), name
            continue
        assert np.all(np.isnan(value[invalid])), name
        if name not in ("softmax", "log_softmax"):  # these have no targets, so nothing is ignored
            assert np.all(value[ignored] == 0), name
        kept = ~invalid & ~ignored
        np.testing.assert_array_equal(value[kept], clean[name][kept], err_msg=name)


# --- batch axes and memory layouts ----------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", VARIANT_NAMES)
@pytest.mark.parametrize("batch", [(2, 3), (2, 1, 3), (1, 4, 1, 2)], ids=str)
def test_several_batch_axes_equal_the_flattened_call(backend, dtype, reduction, variant_name, batch):
    n_classes = 5
    y, options = variant(variant_name, batch, n_classes, seed=11)
    rng = np.random.default_rng(12)
    z = rng.normal(size=batch + (n_classes,)).astype(dtype)
    v = rng.normal(size=z.shape).astype(dtype)
    n_rows = int(np.prod(batch))

    def flat(x):
        return None if x is None else x.reshape((n_rows,) + x.shape[len(batch):])

    flat_options = {k: flat(x) if k == "sample_weight" else x for k, x in options.items()}
    shaped = every_output(backend, z, y, v, reduction=reduction, **options)
    flattened = every_output(backend, flat(z), flat(y), flat(v), reduction=reduction, **flat_options)
    for name, value in shaped.items():
        if is_loss(name) and reduction != "none":
            expected = flattened[name]
        else:
            expected = flattened[name].reshape(batch + flattened[name].shape[1:])
        assert value.shape == expected.shape, name
        np.testing.assert_array_equal(value, expected, err_msg=name)


def _same_values_other_layout(x: np.ndarray, how: str) -> np.ndarray:
    """An array equal to ``x`` but laid out in memory as ``how`` says."""
    if how == "fortran":
        return np.asfortranarray(x)
    if how == "negative-strides":
        return np.ascontiguousarray(x[tuple(slice(None, None, -1) for _ in x.shape)])[
            tuple(slice(None, None, -1) for _ in x.shape)
        ]
    if how == "strided-slice":
        big = np.zeros(tuple(2 * n for n in x.shape), dtype=x.dtype)
        view = big[tuple(slice(None, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if how == "classes-outermost":  # the class axis has the largest stride
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, -1, 0)), 0, -1)
    raise AssertionError(how)


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("variant_name", VARIANT_NAMES)
@pytest.mark.parametrize("how", ["fortran", "negative-strides", "strided-slice", "classes-outermost"])
def test_any_strides_or_order_equal_the_contiguous_call(backend, dtype, reduction, variant_name, how):
    batch, n_classes = (4, 3), 5
    y, options = variant(variant_name, batch, n_classes, seed=13)
    rng = np.random.default_rng(14)
    z = rng.normal(size=batch + (n_classes,)).astype(dtype)
    v = rng.normal(size=z.shape).astype(dtype)
    contiguous = every_output(backend, z, y, v, reduction=reduction, **options)

    def relayout(x):
        return _same_values_other_layout(x, how) if isinstance(x, np.ndarray) else x

    z2, v2 = relayout(z), relayout(v)
    assert not z2.flags.c_contiguous
    other = every_output(backend, z2, relayout(y), v2, reduction=reduction,
                         **{k: relayout(x) for k, x in options.items()})
    for name, value in other.items():
        np.testing.assert_array_equal(value, contiguous[name], err_msg=name)


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("n_classes", [3, 1000])
@pytest.mark.parametrize("function, out_name", [("gradient", "out"), ("loss_gradient", "grad_out"),
                                                ("loss_gradient_hessian", "grad_out")])
def test_in_place_gradient_when_the_soft_targets_are_z_too(backend, dtype, n_classes, function, out_name):
    """out=z is allowed for the gradient; if y is z as well the call must either refuse (the out
    overlaps the input y) or compute exactly what it computes out of place - never a mix."""
    z = np.random.default_rng(25).dirichlet(np.ones(n_classes), size=6).astype(dtype)
    expected = getattr(backend, function)(z.copy(), z.copy(), reduction="mean")
    try:
        result = getattr(backend, function)(z, z, reduction="mean", **{out_name: z})
    except ValueError as error:
        assert "overlap" in str(error) and "y" in str(error)
        return
    expected = expected if isinstance(expected, tuple) else (expected,)
    result = result if isinstance(result, tuple) else (result,)
    for got, want in zip(result, expected):
        np.testing.assert_array_equal(got, want)


# --- dtypes -----------------------------------------------------------------------------


@pytest.mark.parametrize("z_dtype", [np.float16, np.int8, np.int32, np.int64, np.uint8, np.bool_, np.longdouble],
                         ids=float_ids)
@pytest.mark.parametrize("variant_name", VARIANT_NAMES)
def test_other_real_dtypes_compute_in_float64(backend, z_dtype, variant_name):
    batch, n_classes = (6,), 3
    y, options = variant(variant_name, batch, n_classes, seed=15)
    z = np.array([[0, 1, 2], [3, -1, 0], [1, 1, 1], [0, 0, 1], [2, 0, 5], [1, 0, 0]]).astype(z_dtype)
    for reduction in REDUCTIONS:
        outputs = every_output(backend, z, y, reduction=reduction, **options)
        expected = every_output(backend, z.astype(np.float64), y, reduction=reduction, **options)
        for name, value in outputs.items():
            assert value.dtype == np.float64, f"{name}: {value.dtype}"
            np.testing.assert_array_equal(value, expected[name], err_msg=name)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", VARIANT_NAMES)
def test_float32_stays_float32_and_secondary_inputs_follow_z(backend, reduction, variant_name):
    """float32 z gives float32 everywhere; v, soft targets and weights are converted to float32."""
    batch, n_classes = (5,), 4
    y, options = variant(variant_name, batch, n_classes, seed=16)
    rng = np.random.default_rng(17)
    z = rng.normal(size=batch + (n_classes,)).astype(np.float32)
    v = rng.normal(size=z.shape)  # float64
    outputs = every_output(backend, z, y, v, reduction=reduction, **options)

    def as32(x):
        return x.astype(np.float32) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x

    options32 = {k: as32(x) for k, x in options.items()}
    expected = every_output(backend, z, as32(y), as32(v), reduction=reduction, **options32)
    for name, value in outputs.items():
        assert value.dtype == np.float32, f"{name}: {value.dtype}"
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


@pytest.mark.parametrize("secondary_dtype", [np.int32, np.uint8, np.float16, np.bool_], ids=float_ids)
def test_secondary_inputs_of_other_real_dtypes_are_converted(backend, secondary_dtype):
    z = np.array([[0.5, 1.0, -2.0], [3.0, 0.0, 1.0]])
    soft = np.array([[1, 0, 1], [0, 1, 1]])
    sw, cw, v = np.array([1, 2]), np.array([1, 0, 1]), np.array([[1, 0, 1], [1, 1, 0]])
    soft, sw, cw, v = (x.astype(secondary_dtype) for x in (soft, sw, cw, v))
    outputs = every_output(backend, z, soft, v, sample_weight=sw, class_weight=cw)
    expected = every_output(backend, z, soft.astype(float), v.astype(float), sample_weight=sw.astype(float),
                            class_weight=cw.astype(float))
    for name, value in outputs.items():
        assert value.dtype == np.float64
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


# --- label types ------------------------------------------------------------------------


INTEGER_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@pytest.mark.parametrize("label_dtype", INTEGER_DTYPES, ids=float_ids)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_labels_of_any_integer_dtype(backend, label_dtype, reduction):
    rng = np.random.default_rng(18)
    z = rng.normal(size=(2, 3, 4))
    y = np.array([[0, 3, 1], [2, 2, 0]])
    options = dict(class_weight=np.array([1.0, 2.0, 0.5, 1.0]), label_smoothing=0.1, reduction=reduction)
    expected = every_output(backend, z, y, **options)
    outputs = every_output(backend, z, y.astype(label_dtype), **options)
    for name, value in outputs.items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int8, np.uint64], ids=float_ids)
def test_ignore_index_matches_labels_of_small_dtypes(backend, label_dtype):
    ignore_index = {np.uint8: 255, np.int8: -1, np.uint64: 2**64 - 1}[label_dtype]
    z = np.array([[0.5, 1.0, -1.0], [np.nan, 2.0, 1.0], [3.0, 0.0, 1.0]])
    y = np.array([0, ignore_index, 2], dtype=label_dtype)
    loss = backend.loss(z, y, ignore_index=ignore_index)
    assert loss[1] == 0 and np.all(np.isfinite(loss))
    np.testing.assert_array_equal(loss[[0, 2]], backend.loss(z[[0, 2]], np.array([0, 2])))
    assert backend.loss(z, y, ignore_index=ignore_index, reduction="mean") == backend.loss(
        z[[0, 2]], np.array([0, 2]), reduction="mean"
    )


@pytest.mark.parametrize("label", [2, np.int16(2), np.uint64(2), np.array(2)], ids=["int", "int16", "uint64", "0-d"])
def test_integer_scalar_label_for_a_single_row(backend, label):
    z = np.array([0.5, -1.0, 2.0, 0.0])
    batch_of_one = every_output(backend, z[None], np.array([2]))
    outputs = every_output(backend, z, label)
    for name, value in outputs.items():
        assert value.shape == batch_of_one[name].shape[1:], name
        np.testing.assert_array_equal(value, batch_of_one[name][0], err_msg=name)
    assert isinstance(backend.loss(z, label), np.ndarray) and backend.loss(z, label).shape == ()


def test_labels_as_a_list(backend):
    z = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(backend.loss(z, [2, 0]), backend.loss(z, np.array([2, 0])))


@pytest.mark.parametrize("soft_dtype", [np.int8, np.int64, np.uint8], ids=float_ids)
@pytest.mark.parametrize("z_dtype", FLOATS, ids=float_ids)
def test_integer_one_hot_soft_targets_equal_labels(backend, soft_dtype, z_dtype):
    rng = np.random.default_rng(19)
    z = rng.normal(size=(5, 4)).astype(z_dtype)
    labels = np.array([0, 3, 1, 1, 2])
    one_hot = np.eye(4, dtype=soft_dtype)[labels]
    for reduction in REDUCTIONS:
        options = dict(label_smoothing=0.2, reduction=reduction)
        from_soft = every_output(backend, z, one_hot, **options)
        from_float_soft = every_output(backend, z, one_hot.astype(z_dtype), **options)
        from_labels = every_output(backend, z, labels, **options)
        for name, value in from_soft.items():
            assert value.dtype == z_dtype, name
            np.testing.assert_array_equal(value, from_float_soft[name], err_msg=name)
            tolerance = dict(rtol=1e-6, atol=1e-7) if z_dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(value, from_labels[name], err_msg=name, **tolerance)


# --- return types, out identity, untouched inputs ---------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=float_ids)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reduced_loss_is_a_0d_array(backend, dtype, reduction):
    z = np.array([[0.5, 1.0], [2.0, -1.0]], dtype=dtype)
    y = np.array([0, 1])
    results = [
        backend.loss(z, y, reduction=reduction),
        backend.loss_gradient(z, y, reduction=reduction)[0],
        backend.loss_gradient_hessian(z, y, reduction=reduction)[0],
    ]
    for value in results:
        assert type(value) is np.ndarray and value.shape == () and value.dtype == dtype


OUT_NAMES = ("out", "loss_out", "grad_out", "hess_out")


def _out_calls(backend, z, y, v, reduction):
    """(description, function, args, kwargs of the right outs) for every out argument."""
    n_rows, n_classes = z.shape
    loss_shape = (n_rows,) if reduction == "none" else ()

    def rows():
        return np.empty((n_rows, n_classes))

    calls = [
        ("softmax", backend.softmax, (z,), dict(out=rows())),
        ("log_softmax", backend.log_softmax, (z,), dict(out=rows())),
        ("loss", backend.loss, (z, y), dict(out=np.empty(loss_shape), reduction=reduction)),
        ("gradient", backend.gradient, (z, y), dict(out=rows(), reduction=reduction)),
        ("loss_gradient", backend.loss_gradient, (z, y),
         dict(loss_out=np.empty(loss_shape), grad_out=rows(), reduction=reduction)),
        ("hessian_vector_product", backend.hessian_vector_product, (z, v, y), dict(out=rows(), reduction=reduction)),
        ("hessian_diagonal", backend.hessian_diagonal, (z, y), dict(out=rows(), reduction=reduction)),
    ]
    for layout in LAYOUTS:
        hess_shape = (n_rows, n_classes, n_classes) if layout == "full" else (n_rows, n_classes * (n_classes + 1) // 2)
        calls.append((f"hessian {layout}", backend.hessian, (z, y),
                      dict(out=np.empty(hess_shape), layout=layout, reduction=reduction)))
        calls.append((f"loss_gradient_hessian {layout}", backend.loss_gradient_hessian, (z, y),
                      dict(loss_out=np.empty(loss_shape), grad_out=rows(), hess_out=np.empty(hess_shape),
                           layout=layout, reduction=reduction)))
    return calls


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out_returns_the_very_object_passed(backend, reduction):
    rng = np.random.default_rng(20)
    z = rng.normal(size=(3, 4))
    y, v = np.array([0, 2, 3]), rng.normal(size=(3, 4))
    for name, function, args, kwargs in _out_calls(backend, z, y, v, reduction):
        outs = [value for key, value in kwargs.items() if key in OUT_NAMES]
        result = function(*args, **kwargs)
        results = result if isinstance(result, tuple) else (result,)
        assert len(results) == len(outs), name
        for got, given in zip(results, outs):
            assert got is given, name
        # and the values are those of the call without out
        plain = function(*args, **{k: x for k, x in kwargs.items() if k not in OUT_NAMES})
        plain = plain if isinstance(plain, tuple) else (plain,)
        for got, want in zip(results, plain):
            np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("dtype", FLOATS + (np.int32,), ids=float_ids)
@pytest.mark.parametrize("variant_name", VARIANT_NAMES)
def test_inputs_are_never_modified_and_may_be_read_only(backend, dtype, variant_name):
    batch, n_classes = (4,), 3
    y, options = variant(variant_name, batch, n_classes, seed=21)
    rng = np.random.default_rng(22)
    z = (rng.normal(size=batch + (n_classes,)) * 3).astype(dtype)
    v = rng.normal(size=z.shape)
    inputs = [z, v] + ([y] if y is not None else []) + [x for x in options.values() if isinstance(x, np.ndarray)]
    copies = [x.copy() for x in inputs]
    for x in inputs:
        x.flags.writeable = False
    for reduction in REDUCTIONS:
        every_output(backend, z, y, v, reduction=reduction, **options)
    for x, original in zip(inputs, copies):
        np.testing.assert_array_equal(x, original)


def test_inputs_are_never_modified_non_contiguous(backend):
    rng = np.random.default_rng(23)
    z = np.asfortranarray(rng.normal(size=(4, 3)))
    y = rng.dirichlet(np.ones(3), size=4)[::-1]
    v = rng.normal(size=(4, 6))[:, ::2]
    copies = [x.copy() for x in (z, y, v)]
    every_output(backend, z, y, v, reduction="mean")
    for x, original in zip((z, y, v), copies):
        np.testing.assert_array_equal(x, original)


# --- show_config and the backend switch -------------------------------------------------


def test_show_config_keys_and_types():
    config = sk.show_config()
    expected_types = dict(version=str, backend=str, compiled=bool, openmp=bool, max_threads=int, simd=str)
    for key, kind in expected_types.items():
        assert key in config, key
        assert type(config[key]) is kind, f"{key}: {type(config[key]).__name__}"
    assert config["version"] == sk.__version__
    assert config["backend"] in ("compiled", "numpy")
    assert config["max_threads"] >= 1
    if config["backend"] == "compiled":
        assert config["compiled"] is True
    if os.environ.get("SOFTMAX_KERNELS_BACKEND", "").strip().lower() == "compiled":
        assert config["backend"] == "compiled"


def _environment(backend_value: str | None) -> dict:
    env = dict(os.environ)
    env.pop("SOFTMAX_KERNELS_BACKEND", None)
    if backend_value is not None:
        env["SOFTMAX_KERNELS_BACKEND"] = backend_value
    return env


def _python(code: str, backend_value: str | None):
    return subprocess.run([sys.executable, "-c", code], env=_environment(backend_value), capture_output=True, text=True,
                          timeout=120)


def test_backend_switch_numpy_uses_the_reference():
    code = (
        "import numpy as np, softmax_kernels as sk\n"
        "c = sk.show_config(); assert c['backend'] == 'numpy', c\n"
        "z = np.array([[1.0, 2.0, -1.0]]); y = np.array([1])\n"
        "assert np.array_equal(sk.loss(z, y), sk.reference.loss(z, y))\n"
        "print('ok', c['backend'])\n"
    )
    result = _python(code, "numpy")
    assert result.returncode == 0, result.stderr
    assert "ok numpy" in result.stdout


@pytest.mark.parametrize("value", ["bogus", "cython", "numpyy"])
def test_backend_switch_invalid_value_fails_the_import(value):
    result = _python("import softmax_kernels", value)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "SOFTMAX_KERNELS_BACKEND" in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["compiled", None], ids=["compiled", "unset"])
def test_backend_switch_compiled_or_unset_uses_the_extension(value):
    if not sk.show_config()["compiled"]:
        pytest.skip("the compiled extension is not built here")
    code = "import softmax_kernels as sk; print(sk.show_config()['backend'])"
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True, text=True,
                            timeout=120, env=_environment(value))
    assert result.returncode == 0, result.stderr  # and no fallback warning
    assert result.stdout.strip() == "compiled"


def test_max_threads_follows_omp_num_threads():
    if not sk.show_config()["openmp"]:
        pytest.skip("built without OpenMP")
    env = _environment("compiled")
    env["OMP_NUM_THREADS"] = "1"
    code = "import softmax_kernels as sk; print(sk.show_config()['max_threads'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_max_threads_follows_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not sk.show_config()["openmp"]:
        pytest.skip("built without OpenMP")
    with threadpoolctl.threadpool_limits(1):
        assert sk.show_config()["max_threads"] == 1
