"""The compiled kernels equal the NumPy reference, over operations x dtypes x shapes x memory orders x options.

One parametrised test over the registry in bottleneck's "fast equals slow" style: the case
lists below are the only place that enumerates what is covered.
"""

import itertools

import numpy as np
import pytest

import softmax_kernels as sk
from helpers import (FLOATS, IGNORE_INDEX, LAYOUT_OPERATIONS, TARGET_OPTIONAL_OPERATIONS, as_tuple,
                     assert_bitwise_equal, assert_close_ulps, call_operation, dtype_id, with_memory_order)
from softmax_kernels import reference
from softmax_kernels._layout import LAYOUTS, packed_size
from softmax_kernels._operations import NO_TARGETS, OPERATIONS

pytestmark = pytest.mark.skipif(sk.show_config()["backend"] != "compiled", reason="compiled backend not in use")

ULPS = 16
SHAPES = [(1,), (5,), (0, 4), (7, 1), (13, 2), (64, 10), (3, 4, 9), (2, 300)]
ORDERS = ["C", "F", "sliced_classes"]
TARGETS = ["labels", "soft", None]
OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "mean"},
    {"label_smoothing": 0.15, "reduction": "mean"},
    {"class_weight": True, "sample_weight": True},
    {"class_weight": True, "label_smoothing": 0.3, "reduction": "mean", "ignore_index": True},
    {"sample_weight": True, "reduction": "sum", "ignore_index": True},
]


def _make_case(shape, dtype, order, target, options, rng):
    n_classes = shape[-1]
    z = (rng.standard_normal(shape) * 4).astype(dtype)
    if z.size > 3:
        z.flat[1] = -np.inf  # a masked class
    batch = shape[:-1]
    kwargs = {}
    y = None
    if target == "labels":
        y = rng.integers(0, n_classes, size=batch)
        if options.get("ignore_index") and y.size:
            y.flat[0] = IGNORE_INDEX
            kwargs["ignore_index"] = IGNORE_INDEX
    elif target == "soft":
        y = rng.random(shape).astype(dtype)
    if target is not None:
        if options.get("class_weight"):
            kwargs["class_weight"] = rng.random(n_classes) + 0.5
        if "label_smoothing" in options:
            kwargs["label_smoothing"] = options["label_smoothing"]
    if options.get("sample_weight"):
        kwargs["sample_weight"] = rng.random(batch) + 0.1
    if "reduction" in options:
        kwargs["reduction"] = options["reduction"]
    v = rng.standard_normal(shape)
    return with_memory_order(z, order), y, v, kwargs


def _cases():
    """(operation, targets, options): softmax alone; y=None where targets are optional, with the
    options that go without y; ignore_index with labels only."""
    for name, operation in OPERATIONS.items():
        if operation.targets == NO_TARGETS:
            yield name, None, {}
            continue
        for target, options in itertools.product(TARGETS, OPTIONS):
            if target is None and (name not in TARGET_OPTIONAL_OPERATIONS
                                   or set(options) - {"reduction", "sample_weight"}):
                continue
            if target == "soft" and options.get("ignore_index"):
                continue
            yield name, target, options


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name,target,options", list(_cases()), ids=str)
def test_compiled_equals_reference(name, target, options, order, shape, dtype, rng):
    z, y, v, kwargs = _make_case(shape, dtype, order, target, options, rng)
    for layout in LAYOUTS if name in LAYOUT_OPERATIONS else (None,):
        extra = dict(kwargs, layout=layout) if layout else kwargs
        got = call_operation(sk, name, z, y, v, **extra)
        want = call_operation(reference, name, z, y, v, **extra)
        for g, w in zip(got, want, strict=True):
            assert_close_ulps(g, w, dtype, ULPS)


# Short rows (K <= 16) are transposed by loops compiled once per K (or in tiles of rows, on
# AVX-512 or AVX2), and a block whose rows are all valid is written out whole: every K (and
# K = 17, the first long one), with the first block holding bad rows and ties, and a later
# all-valid block holding ties too.
@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("n_classes", range(1, 18))
def test_every_short_row_width_equals_reference(n_classes, dtype, rng):
    n_rows = 601  # at least three blocks of rows at any K, the last one partial
    z = (3 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
    y = rng.integers(0, n_classes, n_rows)
    v = rng.standard_normal((n_rows, n_classes)).astype(dtype)
    z[1] = np.nan                      # invalid
    z[2], y[2] = np.nan, IGNORE_INDEX  # ignored, whatever its logits hold
    z[3, 0] = -np.inf                  # a masked class
    if n_classes > 1:
        z[6, 0] = z[6].max() - 700     # extreme (a span beyond 600, or 80 for float32)
    for row in (4, 5, n_rows - 2, n_rows - 1):  # tied maxima, the label at one of them or not
        z[row, [0, -1]] = z[row].max() + 1
        y[row] = n_classes - 1 if row % 2 == 0 else n_classes // 2
    kwargs = {"ignore_index": IGNORE_INDEX}
    cases = [("loss_gradient", (z, y), kwargs), ("hessian", (z, y), kwargs), ("hessian", (z, None), {}),
             *[("hessian", (z, y), {**kwargs, "layout": layout}) for layout in ("packed_lower", "full")],
             ("hessian_vector_product", (z, v, y), kwargs), ("hessian_diagonal", (z, y), kwargs),
             ("hessian_diagonal", (z, None), {}), ("softmax", (z,), {}), ("log_softmax", (z,), {})]
    for name, args, options in cases:
        got, want = getattr(sk, name)(*args, **options), getattr(reference, name)(*args, **options)
        for g, w in zip(as_tuple(got), as_tuple(want), strict=True):
            assert_close_ulps(g, w, dtype, ULPS)
    in_place = z.copy()
    sk.gradient(in_place, y, out=in_place, **kwargs)
    assert_close_ulps(in_place, reference.gradient(z, y, **kwargs), dtype, ULPS)


# The tiled transpositions of short rows load and store whole vectors that reach past a
# row's end, masked (AVX-512) or left to element-wise loops (AVX2) where they would pass the
# block's, and the Hessian's tiles (16 float32 or 8 float64 rows) spill into room of their
# own: every count of rows around the tile sizes, each output inside a larger buffer whose
# guard values must survive.
@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("n_classes", range(1, 18))
def test_short_rows_write_nothing_outside_their_output(n_classes, dtype, rng):
    guard = 20
    packed = packed_size(n_classes)
    for n_rows in range(1, 36):
        z = (3 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
        y = rng.integers(0, n_classes, n_rows)
        v = rng.standard_normal((n_rows, n_classes)).astype(dtype)
        calls = {  # name: (call, output shape, the reference's result)
            "gradient": (lambda out: sk.loss_gradient(z, y, grad_out=out)[1], (n_rows, n_classes),
                         lambda: reference.gradient(z, y)),
            "hessian_vector_product": (lambda out: sk.hessian_vector_product(z, v, out=out), (n_rows, n_classes),
                                       lambda: reference.hessian_vector_product(z, v)),
            "hessian_diagonal": (lambda out: sk.hessian_diagonal(z, y, out=out), (n_rows, n_classes),
                                 lambda: reference.hessian_diagonal(z, y)),
            "softmax": (lambda out: sk.softmax(z, out=out), (n_rows, n_classes), lambda: reference.softmax(z)),
            "hessian": (lambda out: sk.hessian(z, y, out=out), (n_rows, packed), lambda: reference.hessian(z, y)),
            "hessian_lower": (lambda out: sk.hessian(z, y, layout="packed_lower", out=out), (n_rows, packed),
                              lambda: reference.hessian(z, y, layout="packed_lower")),
            "hessian_full": (lambda out: sk.hessian(z, y, layout="full", out=out), (n_rows, n_classes, n_classes),
                             lambda: reference.hessian(z, y, layout="full")),
        }
        for name, (call, shape, want) in calls.items():
            buffer = np.full(int(np.prod(shape)) + 2 * guard, 7.0, dtype)
            out = buffer[guard:-guard].reshape(shape)
            assert_close_ulps(call(out), want(), dtype, ULPS)
            assert (buffer[:guard] == 7).all() and (buffer[-guard:] == 7).all(), (name, n_rows)


# Labels gradients and short-row Hv of at least 16 MiB, on more than one thread, are written
# with streaming stores (SK_STREAM_MIN_BYTES) and on one thread with plain ones: both must
# give the same bits, including blocks holding rows that are ignored, extreme or NaN (which
# are not streamed), in place over z, and into an output that starts off a 16-byte boundary.
# K = 37 and 40 make blocks that end inside a cache line (blocks of short rows are whole
# lines of an aligned output, but not of the shifted one); K <= 16 and K > 16 take different
# paths (the Hv of long rows is not streamed).
@pytest.mark.parametrize("n_classes", [9, 10, 37, 40])
@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_streamed_large_outputs_equal_plain_stores(n_classes, dtype, rng):
    n_rows = (17 << 20) // (np.dtype(dtype).itemsize * n_classes)
    z = (3 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
    y = rng.integers(0, n_classes, n_rows)
    v = rng.standard_normal((n_rows, n_classes)).astype(dtype)
    z[5, 3] = np.nan
    z[n_rows // 2, 0] = -1e4  # an extreme row: recomputed in a wider type after the block
    y[7] = IGNORE_INDEX
    calls = {
        "loss_gradient": lambda n: sk.loss_gradient(z, y, ignore_index=IGNORE_INDEX, num_threads=n),
        "hessian_vector_product": lambda n: (sk.hessian_vector_product(z, v, num_threads=n),),
    }
    for name, call in calls.items():
        assert_bitwise_equal(call(2), call(1), name)
    want = sk.gradient(z, y, ignore_index=IGNORE_INDEX, num_threads=1)
    in_place = z.copy()
    sk.gradient(in_place, y, ignore_index=IGNORE_INDEX, out=in_place, num_threads=2)
    assert_bitwise_equal(in_place, want, "gradient in place")
    shifted = np.empty(n_rows * n_classes + 1, dtype)[1:].reshape(n_rows, n_classes)
    sk.gradient(z, y, ignore_index=IGNORE_INDEX, out=shifted, num_threads=2)
    assert_bitwise_equal(shifted, want, "gradient into a shifted out")
