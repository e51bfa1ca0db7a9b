"""Input and output conventions, for every output of every operation: batch axes, any strides
or memory order, dtypes of z and of the other inputs, label types, 0-d reduced losses, ``out``
arrays (returned as passed, z itself where allowed) and inputs that are never modified."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import (FLOATS, IN_PLACE_OUTS, TARGET_VARIANTS, call_operation, dtype_id, every_output,
                     options_for, target_variant, with_memory_order)
from softmax_kernels._layout import LAYOUTS
from softmax_kernels._operations import LAYOUT_DEFAULT, OPERATIONS, output_shape
from softmax_kernels._reduction import REDUCTIONS

# --- batch axes and memory orders -------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", TARGET_VARIANTS)
@pytest.mark.parametrize("batch", [(2, 3), (2, 1, 3), (1, 4, 1, 2)], ids=str)
def test_several_batch_axes_equal_the_flattened_call(backend, dtype, reduction, variant_name, batch):
    n_classes = 5
    y, options = target_variant(variant_name, batch, n_classes, seed=11)
    rng = np.random.default_rng(12)
    z = rng.normal(size=batch + (n_classes,)).astype(dtype)
    v = rng.normal(size=z.shape).astype(dtype)
    n_rows = int(np.prod(batch))

    def flat(x):
        return None if x is None else x.reshape((n_rows,) + x.shape[len(batch):])

    flat_options = {k: flat(x) if k == "sample_weight" else x for k, x in options.items()}
    shaped = every_output(backend, z, y, v, reduction=reduction, **options)
    flattened = every_output(backend, flat(z), flat(y), flat(v), reduction=reduction, **flat_options)
    for key, value in shaped.items():
        if key.kind == "loss" and reduction != "none":
            expected = flattened[key]
        else:
            expected = flattened[key].reshape(batch + flattened[key].shape[1:])
        assert value.shape == expected.shape, key
        np.testing.assert_array_equal(value, expected, err_msg=str(key))


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("variant_name", TARGET_VARIANTS)
@pytest.mark.parametrize("order", ["F", "negative", "sliced", "classes_outermost"])
def test_any_strides_or_order_equal_the_contiguous_call(backend, dtype, reduction, variant_name, order):
    batch, n_classes = (4, 3), 5
    y, options = target_variant(variant_name, batch, n_classes, seed=13)
    rng = np.random.default_rng(14)
    z = rng.normal(size=batch + (n_classes,)).astype(dtype)
    v = rng.normal(size=z.shape).astype(dtype)
    contiguous = every_output(backend, z, y, v, reduction=reduction, **options)

    def relayout(x):
        return with_memory_order(x, order) if isinstance(x, np.ndarray) else x

    z2, v2 = relayout(z), relayout(v)
    assert not z2.flags.c_contiguous
    other = every_output(backend, z2, relayout(y), v2, reduction=reduction,
                         **{k: relayout(x) for k, x in options.items()})
    for key, value in other.items():
        np.testing.assert_array_equal(value, contiguous[key], err_msg=str(key))


# --- dtypes -----------------------------------------------------------------------------


@pytest.mark.parametrize("z_dtype", [np.float16, np.int8, np.int32, np.int64, np.uint8, np.bool_, np.longdouble],
                         ids=dtype_id)
@pytest.mark.parametrize("variant_name", TARGET_VARIANTS)
def test_other_real_dtypes_compute_in_float64(backend, z_dtype, variant_name):
    batch, n_classes = (6,), 3
    y, options = target_variant(variant_name, batch, n_classes, seed=15)
    z = np.array([[0, 1, 2], [3, -1, 0], [1, 1, 1], [0, 0, 1], [2, 0, 5], [1, 0, 0]]).astype(z_dtype)
    for reduction in REDUCTIONS:
        outputs = every_output(backend, z, y, reduction=reduction, **options)
        expected = every_output(backend, z.astype(np.float64), y, reduction=reduction, **options)
        for key, value in outputs.items():
            assert value.dtype == np.float64, f"{key}: {value.dtype}"
            np.testing.assert_array_equal(value, expected[key], err_msg=str(key))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("variant_name", TARGET_VARIANTS)
def test_float32_stays_float32_and_secondary_inputs_follow_z(backend, reduction, variant_name):
    """float32 z gives float32 everywhere; v, soft targets and weights are converted to float32."""
    batch, n_classes = (5,), 4
    y, options = target_variant(variant_name, batch, n_classes, seed=16)
    rng = np.random.default_rng(17)
    z = rng.normal(size=batch + (n_classes,)).astype(np.float32)
    v = rng.normal(size=z.shape)  # float64
    outputs = every_output(backend, z, y, v, reduction=reduction, **options)

    def as32(x):
        return x.astype(np.float32) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x

    options32 = {k: as32(x) for k, x in options.items()}
    expected = every_output(backend, z, as32(y), as32(v), reduction=reduction, **options32)
    for key, value in outputs.items():
        assert value.dtype == np.float32, f"{key}: {value.dtype}"
        np.testing.assert_array_equal(value, expected[key], err_msg=str(key))


@pytest.mark.parametrize("secondary_dtype", [np.int32, np.uint8, np.float16, np.bool_], ids=dtype_id)
def test_secondary_inputs_of_other_real_dtypes_are_converted(backend, secondary_dtype):
    z = np.array([[0.5, 1.0, -2.0], [3.0, 0.0, 1.0]])
    soft = np.array([[1, 0, 1], [0, 1, 1]])
    sw, cw, v = np.array([1, 2]), np.array([1, 0, 1]), np.array([[1, 0, 1], [1, 1, 0]])
    soft, sw, cw, v = (x.astype(secondary_dtype) for x in (soft, sw, cw, v))
    outputs = every_output(backend, z, soft, v, sample_weight=sw, class_weight=cw)
    expected = every_output(backend, z, soft.astype(float), v.astype(float), sample_weight=sw.astype(float),
                            class_weight=cw.astype(float))
    for key, value in outputs.items():
        assert value.dtype == np.float64
        np.testing.assert_array_equal(value, expected[key], err_msg=str(key))


# --- label types ------------------------------------------------------------------------


INTEGER_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@pytest.mark.parametrize("label_dtype", INTEGER_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_labels_of_any_integer_dtype_give_the_same_outputs(backend, label_dtype, reduction):
    rng = np.random.default_rng(18)
    z = rng.normal(size=(2, 3, 4))
    y = np.array([[0, 3, 1], [2, 2, 0]])
    options = dict(class_weight=np.array([1.0, 2.0, 0.5, 1.0]), label_smoothing=0.1, reduction=reduction)
    expected = every_output(backend, z, y, **options)
    outputs = every_output(backend, z, y.astype(label_dtype), **options)
    for key, value in outputs.items():
        np.testing.assert_array_equal(value, expected[key], err_msg=str(key))


@pytest.mark.parametrize("label_dtype", [np.dtype(">i8"), np.dtype(">u2"), np.dtype("<i4")], ids=str)
def test_labels_in_either_byte_order_or_strided_give_the_same_outputs(backend, label_dtype):
    z = np.random.default_rng(19).normal(size=(3, 4))
    y = np.array([0, 3, 1])
    strided = np.empty(6, dtype=label_dtype)[::2]
    strided[...] = y
    expected = every_output(backend, z, y)
    for labels in (y.astype(label_dtype), strided):
        outputs = every_output(backend, z, labels)
        for key, value in outputs.items():
            np.testing.assert_array_equal(value, expected[key], err_msg=str(key))


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int8, np.uint64], ids=dtype_id)
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
    for key, value in outputs.items():
        assert value.shape == batch_of_one[key].shape[1:], key
        np.testing.assert_array_equal(value, batch_of_one[key][0], err_msg=str(key))
    assert isinstance(backend.loss(z, label), np.ndarray) and backend.loss(z, label).shape == ()


def test_labels_may_be_a_list(backend):
    z = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(backend.loss(z, [2, 0]), backend.loss(z, np.array([2, 0])))


@pytest.mark.parametrize("soft_dtype", [np.int8, np.int64, np.uint8], ids=dtype_id)
@pytest.mark.parametrize("z_dtype", FLOATS, ids=dtype_id)
def test_integer_one_hot_soft_targets_equal_labels(backend, soft_dtype, z_dtype):
    rng = np.random.default_rng(19)
    z = rng.normal(size=(5, 4)).astype(z_dtype)
    labels = np.array([0, 3, 1, 1, 2])
    one_hot = np.eye(4, dtype=soft_dtype)[labels]
    tolerance = dict(rtol=1e-6, atol=1e-7) if z_dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    for reduction in REDUCTIONS:
        options = dict(label_smoothing=0.2, reduction=reduction)
        from_soft = every_output(backend, z, one_hot, **options)
        from_float_soft = every_output(backend, z, one_hot.astype(z_dtype), **options)
        from_labels = every_output(backend, z, labels, **options)
        for key, value in from_soft.items():
            assert value.dtype == z_dtype, key
            np.testing.assert_array_equal(value, from_float_soft[key], err_msg=str(key))
            np.testing.assert_allclose(value, from_labels[key], err_msg=str(key), **tolerance)


# --- return types and out arrays ----------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reduced_loss_is_a_0d_array(backend, dtype, reduction):
    z = np.array([[0.5, 1.0], [2.0, -1.0]], dtype=dtype)
    y = np.array([0, 1])
    for name, operation in OPERATIONS.items():
        if "loss" in operation.outputs:
            value = call_operation(backend, name, z, y, reduction=reduction)[operation.outputs.index("loss")]
            assert type(value) is np.ndarray and value.shape == () and value.dtype == dtype, name


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out_returns_the_very_object_passed(backend, reduction):
    rng = np.random.default_rng(20)
    z = rng.normal(size=(3, 4))
    y, v = np.array([0, 2, 3]), rng.normal(size=(3, 4))
    for name, operation in OPERATIONS.items():
        if operation.takes_target_options and reduction not in operation.reductions:
            continue
        for layout in LAYOUTS if operation.takes_layout else (None,):
            what = f"{name} {layout or ''}"
            options = options_for(name, dict(reduction=reduction, **({"layout": layout} if layout else {})))
            outs = {arg: np.empty(output_shape(kind, z.shape[:-1], z.shape[-1], reduction, layout or LAYOUT_DEFAULT))
                    for kind, arg in zip(operation.outputs, operation.out_arguments)}
            results = call_operation(backend, name, z, y, v, **options, **outs)
            assert len(results) == len(outs), what
            for got, given in zip(results, outs.values()):
                assert got is given, what
            # and the values are those of the call without out
            for got, want in zip(results, call_operation(backend, name, z, y, v, **options)):
                np.testing.assert_array_equal(got, want, err_msg=what)


def _in_place_cases():
    for name, out in IN_PLACE_OUTS:
        if OPERATIONS[name].takes_target_options:
            yield pytest.param(name, out, "labels", id=f"{name}-labels")
            yield pytest.param(name, out, "soft", id=f"{name}-soft")
        else:
            yield pytest.param(name, out, None, id=name)


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("name, out, targets", list(_in_place_cases()))
def test_out_may_be_z_itself_and_equals_out_of_place(backend, dtype, name, out, targets):
    n_rows, n_classes = 3, 4
    rng = np.random.default_rng(4)
    z = rng.normal(scale=3.0, size=(n_rows, n_classes)).astype(dtype)
    z[1, 2] = -np.inf  # a masked class too
    y, options = None, {}
    if targets is not None:
        soft = np.random.default_rng(3).dirichlet(np.ones(n_classes), size=n_rows).astype(dtype)
        y = np.array([0, 3, 1]) if targets == "labels" else soft
        options = dict(class_weight=np.array([1.0, 2.0, 0.5, 1.5]), label_smoothing=0.1, reduction="mean")
    expected = call_operation(backend, name, z.copy(), y, **options)
    outputs = call_operation(backend, name, z, y, **options, **{out: z})
    assert outputs[OPERATIONS[name].out_arguments.index(out)] is z
    for got, want in zip(outputs, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("n_classes", [3, 1000])
@pytest.mark.parametrize("name, out", [case for case in IN_PLACE_OUTS if OPERATIONS[case[0]].takes_target_options])
def test_in_place_gradient_when_the_soft_targets_are_z_too(backend, dtype, n_classes, name, out):
    """out=z is allowed for the gradient; if y is z as well the call must either refuse (the out
    overlaps the input y) or compute exactly what it computes out of place - never a mix."""
    z = np.random.default_rng(25).dirichlet(np.ones(n_classes), size=6).astype(dtype)
    expected = call_operation(backend, name, z.copy(), z.copy(), reduction="mean")
    try:
        result = call_operation(backend, name, z, z, reduction="mean", **{out: z})
    except ValueError as error:
        assert "overlap" in str(error) and "y" in str(error)
        return
    for got, want in zip(result, expected):
        np.testing.assert_array_equal(got, want)


# --- inputs are read only -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS + (np.int32,), ids=dtype_id)
@pytest.mark.parametrize("variant_name", TARGET_VARIANTS)
def test_inputs_are_never_modified_and_may_be_read_only(backend, dtype, variant_name):
    batch, n_classes = (4,), 3
    y, options = target_variant(variant_name, batch, n_classes, seed=21)
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


def test_non_contiguous_inputs_are_never_modified(backend):
    rng = np.random.default_rng(23)
    z = np.asfortranarray(rng.normal(size=(4, 3)))
    y = rng.dirichlet(np.ones(3), size=4)[::-1]
    v = rng.normal(size=(4, 6))[:, ::2]
    copies = [x.copy() for x in (z, y, v)]
    every_output(backend, z, y, v, reduction="mean")
    for x, original in zip((z, y, v), copies):
        np.testing.assert_array_equal(x, original)
