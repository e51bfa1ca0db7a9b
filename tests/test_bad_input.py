"""Every bad input the spec lists raises the right exception, says what is wrong, and
writes nothing.

Each case names a function, how to call it, the exception type and the fragments
the message must contain: the argument's name, what was expected and what was
received. Every call is made with *all* the function's ``out`` arguments filled
with a sentinel (unless the case supplies its own bad ``out``), and afterwards
every ``out`` and every input must be exactly as before: validation happens
before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from helpers import (IN_PLACE_OUTS, LAYOUT_OPERATIONS, TARGET_OPERATIONS, TARGET_OPTIONAL_OPERATIONS,
                     TARGET_REQUIRED_OPERATIONS)
from softmax_kernels._layout import packed_size
from softmax_kernels._operations import LAYOUT_DEFAULT, NO_TARGETS, OPERATIONS, output_shape

SENTINEL = -12345.5
N_ROWS, N_CLASSES = 3, 4

_MISSING = object()


def good_z():
    return np.linspace(-2.0, 2.0, N_ROWS * N_CLASSES).reshape(N_ROWS, N_CLASSES)


def good_labels():
    return np.array([0, 3, 1])


def sentinel_outs(name: str, batch=(N_ROWS,), n_classes=N_CLASSES):
    """Outs shaped for the call with default options on z of shape batch + (K,), filled with the sentinel."""
    operation = OPERATIONS[name]
    return {out: np.full(output_shape(kind, batch, n_classes, "none", LAYOUT_DEFAULT), SENTINEL)
            for kind, out in zip(operation.outputs, operation.out_arguments)}


@dataclass
class Bad:
    """One bad call: ``function(z, [v], [y], **kwargs)`` must raise ``error`` mentioning ``fragments``."""

    id: str
    function: str
    error: type
    fragments: tuple
    z: object = field(default_factory=good_z)
    y: object = _MISSING  # _MISSING: good labels where the function takes y
    v: object = _MISSING  # _MISSING: a good v where the function takes v
    kwargs: dict = field(default_factory=dict)


def invoke(module, case: Bad):
    """Call the case with sentinel outs for every out argument it does not set itself."""
    operation = OPERATIONS[case.function]
    kwargs = dict(case.kwargs)
    z_shape = np.shape(case.z)
    batch, n_classes = (z_shape[:-1], z_shape[-1]) if len(z_shape) and z_shape[-1] else ((N_ROWS,), N_CLASSES)
    for out_name, out in sentinel_outs(case.function, batch, n_classes).items():
        kwargs.setdefault(out_name, out)
    args = [case.z]
    if operation.takes_v:
        args.append(np.ones(batch + (n_classes,)) if case.v is _MISSING else case.v)
    if operation.targets != NO_TARGETS:
        args.append(good_labels() if case.y is _MISSING else case.y)
    return getattr(module, case.function), args, kwargs


def _snapshot(values):
    return [np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in values]


def assert_raises_and_writes_nothing(module, case: Bad):
    function, args, kwargs = invoke(module, case)
    arrays = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    before = _snapshot(arrays)
    with pytest.raises(case.error) as info:
        function(*args, **kwargs)
    assert type(info.value) is case.error, f"raised {type(info.value).__name__}, expected {case.error.__name__}"
    message = str(info.value)
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} is not in the message {message!r}"
    for old, new in zip(before, arrays):
        np.testing.assert_array_equal(new, old, err_msg="an array was written before the error was raised")


# --- the cases ------------------------------------------------------------------------


def _z_cases():
    cases = []
    bad_z = [
        ("0-d", np.float64(1.5), ValueError, ("z", "(..., K)", "0-d")),
        ("0-d-list", 1.5, ValueError, ("z", "(..., K)", "0-d")),
        ("K=0", np.zeros((N_ROWS, 0)), ValueError, ("z", "at least one class", "(3, 0)")),
        ("complex", good_z() + 1j, TypeError, ("z", "real", "complex128")),
        ("object", good_z().astype(object), TypeError, ("z", "real", "object")),
        ("str", np.array([["a", "b"], ["c", "d"]]), TypeError, ("z", "real", "<U1")),
    ]
    for name in OPERATIONS:
        for label, z, error, fragments in bad_z:
            cases.append(Bad(f"{name}-z-{label}", name, error, fragments, z=z))
    return cases


def _label_cases():
    z234 = np.zeros((2, 4, 3))  # batch (2, 4), K = 3
    two_bad = np.array([[0, 1, 2, 0], [1, 2, 7, 9]])  # first bad position: [1, 2]
    cases = []
    for name in TARGET_OPERATIONS:
        cases += [
            Bad(f"{name}-label-too-big", name, ValueError, ("y", "[0, 3)", "y[1, 2] = 7"), z=z234, y=two_bad),
            Bad(
                f"{name}-label-too-big-with-ignore",
                name,
                ValueError,
                ("y", "[0, 3)", "ignore_index", "y[1, 2] = 7"),
                z=z234,
                y=two_bad,
                kwargs=dict(ignore_index=9),  # 9 is fine, 7 is not
            ),
            Bad(f"{name}-label-negative", name, ValueError, ("y", "[0, 4)", "y[1] = -1"), y=np.array([0, -1, -2])),
            Bad(
                f"{name}-label-negative-not-ignore",
                name,
                ValueError,
                ("y", "y[2] = -1"),
                y=np.array([0, -100, -1]),
                kwargs=dict(ignore_index=-100),
            ),
            Bad(f"{name}-label-equals-K", name, ValueError, ("y", "[0, 4)", "y[0] = 4"),
                y=np.array([4, 0, 0], dtype=np.uint8)),
            Bad(f"{name}-label-uint64-huge", name, ValueError, ("y", "[0, 4)", f"y[2] = {2**64 - 1}"),
                y=np.array([0, 1, 2**64 - 1], dtype=np.uint64)),
            Bad(f"{name}-label-int8-negative", name, ValueError, ("y", "[0, 4)", "y[0] = -5"),
                y=np.array([-5, 1, 2], dtype=np.int8)),
            Bad(f"{name}-label-big-endian-negative", name, ValueError, ("y", "[0, 4)", "y[1] = -3"),
                y=np.array([1, -3, 2], dtype=">i8")),
            Bad(f"{name}-label-strided-negative", name, ValueError, ("y", "[0, 4)", "y[2] = -1"),
                y=np.array([0, 9, 1, 9, -1, 9], dtype=np.int16)[::2]),
            Bad(f"{name}-python-int-label-out-of-range", name, ValueError, ("y", "[0, 4)", "y = 4"),
                z=np.zeros(N_CLASSES), y=4),
            Bad(f"{name}-python-int-label-negative", name, ValueError, ("y", "[0, 4)", "y = -1"),
                z=np.zeros(N_CLASSES), y=-1),
            Bad(f"{name}-label-float", name, TypeError, ("y", "integer", "float64"), y=np.array([0.0, 1.0, 2.0])),
            Bad(f"{name}-label-float32", name, TypeError, ("y", "integer", "float32"),
                y=np.array([0, 1, 2], dtype=np.float32)),
            Bad(f"{name}-y-wrong-shape", name, ValueError, ("y", "(3,)", "(3, 4)", "(2,)"), y=np.array([0, 1])),
            Bad(f"{name}-y-wrong-shape-2d", name, ValueError, ("y", "(3,)", "(3, 4)", "(3, 3)"), y=np.zeros((3, 3))),
            Bad(f"{name}-y-complex", name, TypeError, ("y", "complex"), y=np.zeros((3, 4), dtype=complex)),
            Bad(f"{name}-y-str", name, TypeError, ("y",), y=np.array(["a", "b", "c"])),
            Bad(
                f"{name}-ignore-index-with-soft-targets",
                name,
                ValueError,
                ("ignore_index", "soft"),
                y=np.full((N_ROWS, N_CLASSES), 0.25),
                kwargs=dict(ignore_index=-100),
            ),
        ]
    for name in TARGET_REQUIRED_OPERATIONS:
        cases.append(Bad(f"{name}-y-missing", name, ValueError, ("y", "(3,)", "(3, 4)"), y=None))
    return cases


def _options_without_y_cases():
    cases = []
    for name in TARGET_OPTIONAL_OPERATIONS:
        for option, value in (("class_weight", np.ones(N_CLASSES)), ("label_smoothing", 0.1), ("ignore_index", -100)):
            cases.append(
                Bad(f"{name}-{option}-without-y", name, ValueError, (option, "y"), y=None, kwargs={option: value})
            )
    return cases


def _option_value_cases():
    cases = []
    for name in TARGET_OPERATIONS:
        for label, value, error in (
            ("negative", -0.1, ValueError),
            ("above-one", 1.5, ValueError),
            ("nan", float("nan"), ValueError),
            ("str", "0.1", TypeError),
        ):
            cases.append(
                Bad(f"{name}-label-smoothing-{label}", name, error, ("label_smoothing", "[0, 1]", repr(value)),
                    kwargs=dict(label_smoothing=value))
            )
        for value in ("avg", "MEAN", None, 1):
            cases.append(
                Bad(f"{name}-reduction-{value}", name, ValueError,
                    ("reduction", "'none'", "'sum'", "'mean'", repr(value)),
                    kwargs=dict(reduction=value))
            )
        cases += [
            Bad(f"{name}-sample-weight-shape", name, ValueError, ("sample_weight", "(3,)", "(2,)"),
                kwargs=dict(sample_weight=np.ones(2))),
            Bad(f"{name}-sample-weight-2d", name, ValueError, ("sample_weight", "(3,)", "(3, 1)"),
                kwargs=dict(sample_weight=np.ones((3, 1)))),
            Bad(f"{name}-class-weight-shape", name, ValueError, ("class_weight", "(4,)", "(3,)"),
                kwargs=dict(class_weight=np.ones(3))),
            Bad(f"{name}-class-weight-scalar", name, ValueError, ("class_weight", "(4,)", "()"),
                kwargs=dict(class_weight=1.0)),
        ]
    for name in LAYOUT_OPERATIONS:
        for value in ("upper", "packed", "FULL", None):
            cases.append(
                Bad(f"{name}-layout-{value}", name, ValueError,
                    ("layout", "'packed_upper'", "'packed_lower'", "'full'", repr(value)),
                    kwargs=dict(layout=value))
            )
    for name in OPERATIONS:
        for value, error, expected in ((0, ValueError, ">= 1"), (-1, ValueError, ">= 1"), (1.5, TypeError, "int"),
                                       (True, TypeError, "int"), ("2", TypeError, "int")):
            cases.append(Bad(f"{name}-num-threads-{value!r}", name, error, ("num_threads", expected, str(value)),
                             kwargs=dict(num_threads=value)))
    hvp = "hessian_vector_product"
    cases += [
        Bad(f"{hvp}-v-shape", hvp, ValueError, ("v", "(3, 4)", "(3, 3)"), v=np.ones((3, 3))),
        Bad(f"{hvp}-v-1d", hvp, ValueError, ("v", "(3, 4)", "(4,)"), v=np.ones(4)),
        Bad(f"{hvp}-v-missing", hvp, ValueError, ("v", "(3, 4)", "None"), v=None),
    ]
    return cases


def _out_cases():
    """Wrong dtype, shape, contiguity, writeability, and overlap with an input."""
    cases = []
    for name in OPERATIONS:
        for out_name, good in sentinel_outs(name).items():
            wrong_shape = np.full(good.shape + (1,), SENTINEL)
            read_only = good.copy()
            read_only.flags.writeable = False
            cases += [
                Bad(f"{name}-{out_name}-dtype", name, TypeError, (out_name, "float64", "float32"),
                    kwargs={out_name: good.astype(np.float32)}),
                Bad(f"{name}-{out_name}-int-dtype", name, TypeError, (out_name, "float64", "int64"),
                    kwargs={out_name: good.astype(np.int64)}),
                Bad(f"{name}-{out_name}-shape", name, ValueError, (out_name, str(good.shape), str(wrong_shape.shape)),
                    kwargs={out_name: wrong_shape}),
                Bad(f"{name}-{out_name}-read-only", name, ValueError, (out_name, "writeable", "read-only"),
                    kwargs={out_name: read_only}),
                Bad(f"{name}-{out_name}-list", name, TypeError, (out_name, "ndarray", "list"),
                    kwargs={out_name: good.tolist()}),
            ]
            if good.ndim:
                strided = np.full(good.shape[:-1] + (2 * good.shape[-1],), SENTINEL)[..., ::2]
                cases.append(Bad(f"{name}-{out_name}-non-contiguous", name, ValueError, (out_name, "C-contiguous"),
                                 kwargs={out_name: strided}))
            if good.ndim == 2:
                fortran = np.asfortranarray(good)
                cases.append(Bad(f"{name}-{out_name}-fortran", name, ValueError, (out_name, "C-contiguous"),
                                 kwargs={out_name: fortran}))
    # Overlap with an input: the out is (a view of) one of the inputs. Each case gets its own
    # arrays, so a package that wrongly writes cannot spoil another case.
    def rows(value=1.0):
        return np.full((N_ROWS, N_CLASSES), value)

    soft, v, v2, z_is_out, z_is_out2, weights, weights2, matrix = (
        rows(0.25), rows(), rows(), rows(), rows(), np.ones(N_ROWS), np.ones(N_ROWS), rows())
    soft2 = rows(0.25)
    packed = packed_size(N_CLASSES)
    hess_buffer = np.zeros(N_ROWS * packed)
    z_in_hess = hess_buffer[: N_ROWS * N_CLASSES].reshape(N_ROWS, N_CLASSES)
    k1, k1_again = np.zeros((N_ROWS, 1)), np.zeros((N_ROWS, 1))
    cases += [
        Bad("gradient-out-is-soft-targets", "gradient", ValueError, ("out", "overlap", "y"), y=soft,
            kwargs=dict(out=soft)),
        Bad("loss_gradient-grad_out-is-soft-targets", "loss_gradient", ValueError, ("grad_out", "overlap", "y"),
            y=soft2, kwargs=dict(grad_out=soft2)),
        Bad("hvp-out-is-v", "hessian_vector_product", ValueError, ("out", "overlap", "v"), v=v, kwargs=dict(out=v)),
        Bad("hvp-out-is-z", "hessian_vector_product", ValueError, ("out", "overlap", "z"), z=v2, kwargs=dict(out=v2)),
        Bad("loss-out-is-sample-weight", "loss", ValueError, ("out", "overlap", "sample_weight"),
            kwargs=dict(sample_weight=weights, out=weights)),
        Bad("loss_gradient-loss_out-is-sample-weight", "loss_gradient", ValueError,
            ("loss_out", "overlap", "sample_weight"),
            kwargs=dict(sample_weight=weights2, loss_out=weights2)),
        Bad("gradient-out-holds-class-weight", "gradient", ValueError, ("out", "overlap", "class_weight"),
            kwargs=dict(class_weight=matrix[1], out=matrix)),
        Bad("hessian-out-overlaps-z", "hessian", ValueError, ("out", "overlap", "z"), z=z_in_hess, y=None,
            kwargs=dict(out=hess_buffer.reshape(N_ROWS, packed))),
        # out = z where the spec does not allow it
        Bad("hessian_diagonal-out-is-z", "hessian_diagonal", ValueError, ("out", "overlap", "z"), z=z_is_out, y=None,
            kwargs=dict(out=z_is_out)),
        Bad("hessian_diagonal-out-is-z-with-y", "hessian_diagonal", ValueError, ("out", "overlap", "z"), z=z_is_out2,
            kwargs=dict(out=z_is_out2)),
        # K = 1: a packed Hessian has z's shape, but only the outputs whose out may be z run in place.
        Bad("hessian-out-is-z-K1", "hessian", ValueError, ("out", "overlap", "z"), z=k1, y=None, kwargs=dict(out=k1)),
        Bad("loss_gradient_hessian-hess_out-is-z-K1", "loss_gradient_hessian", ValueError, ("hess_out", "overlap", "z"),
            z=k1_again, y=np.zeros(N_ROWS, dtype=int),
            kwargs=dict(hess_out=k1_again, grad_out=np.full((N_ROWS, 1), SENTINEL),
                        loss_out=np.full(N_ROWS, SENTINEL))),
    ]
    # A partial overlap of z is never allowed, not even where out may be z itself.
    def z_and_shifted_view():
        buffer = np.zeros(N_ROWS + N_ROWS * N_CLASSES)
        z = buffer[: N_ROWS * N_CLASSES].reshape(N_ROWS, N_CLASSES)
        return z, buffer[N_ROWS:].reshape(N_ROWS, N_CLASSES)  # shares all but 3 elements with z

    for name, out in IN_PLACE_OUTS:
        z, shifted = z_and_shifted_view()
        cases.append(Bad(f"{name}-{out}-partially-overlaps-z", name, ValueError, (out, "overlap", "z"), z=z,
                         kwargs={out: shifted}))
    return cases


CASES = _z_cases() + _label_cases() + _options_without_y_cases() + _option_value_cases() + _out_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_raises_and_writes_nothing(backend, case):
    assert_raises_and_writes_nothing(backend, case)


def test_bad_input_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


# --- pack / unpack ------------------------------------------------------------------


@pytest.mark.parametrize(
    "function, argument, layout, error, fragments",
    [
        ("pack", np.eye(3), "full", ValueError, ("layout", "'packed_upper'", "'packed_lower'", "'full'")),
        ("unpack", np.ones(6), "full", ValueError, ("layout", "'packed_upper'", "'packed_lower'", "'full'")),
        ("pack", np.eye(3), "upper", ValueError, ("layout", "'packed_upper'", "'upper'")),
        ("unpack", np.ones(6), None, ValueError, ("layout", "'packed_upper'", "None")),
        ("pack", np.ones((3, 2)), "packed_upper", ValueError, ("h", "(..., K, K)", "(3, 2)")),
        ("pack", np.ones(3), "packed_upper", ValueError, ("h", "(..., K, K)", "(3,)")),
        ("unpack", np.ones(5), "packed_lower", ValueError, ("hp", "K(K+1)/2", "5")),
        ("unpack", np.float64(1.0), "packed_upper", ValueError, ("hp", "0-d")),
        ("pack", np.array([["a"]]), "packed_upper", TypeError, ("h", "<U1")),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_pack_and_unpack_reject_bad_input_naming_the_argument(backend, function, argument, layout, error, fragments):
    with pytest.raises(error) as info:
        getattr(backend, function)(argument, layout=layout)
    assert type(info.value) is error
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
