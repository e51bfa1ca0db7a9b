"""The compiled kernels equal the NumPy reference, over functions x dtypes x shapes x memory orders x options.

One parametrised test in bottleneck's "fast equals slow" style: the case lists
below are the only place that enumerates what is covered.
"""

import itertools

import numpy as np
import pytest

import softmax_kernels as sk
from softmax_kernels import reference

pytestmark = pytest.mark.skipif(sk.show_config()["backend"] != "compiled", reason="compiled backend not in use")

SHAPES = [(1,), (5,), (0, 4), (7, 1), (13, 2), (64, 10), (3, 4, 9), (2, 300)]
DTYPES = [np.float32, np.float64]
ORDERS = ["C", "F", "strided"]
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
TARGET_FUNCTIONS = ["loss", "gradient", "loss_gradient", "loss_gradient_hessian", "hessian",
                    "hessian_vector_product", "hessian_diagonal"]
LAYOUTS = ["packed_upper", "packed_lower", "full"]


def _with_order(arr, order):
    if order == "F":
        return np.asfortranarray(arr)
    if order == "strided":
        padded = np.repeat(arr, 2, axis=-1)
        return padded[..., ::-2][..., ::-1]  # a non-contiguous view holding the same values
    return arr


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
            y.flat[0] = -100
            kwargs["ignore_index"] = -100
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
    return _with_order(z, order), y, v, kwargs


def assert_close_ulps(actual, desired, dtype, ulps=16):
    """Equal NaN pattern and infinities; elsewhere within `ulps` units relative to the row scale."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.dtype == desired.dtype and actual.shape == desired.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(desired))
    finite = np.isfinite(desired)
    np.testing.assert_array_equal(actual[~finite & ~np.isnan(desired)], desired[~finite & ~np.isnan(desired)])
    if not finite.any():
        return
    u = np.finfo(dtype).eps / 2
    scale = np.max(np.abs(desired[finite]))
    tol = ulps * u * (np.abs(desired[finite]) + scale) + np.finfo(dtype).tiny
    err = np.abs(actual[finite].astype(np.float64) - desired[finite])
    assert np.all(err <= tol), f"worst excess {np.max(err / tol):.3g} of the tolerance"


def _target_cases():
    for function, target, options in itertools.product(TARGET_FUNCTIONS, TARGETS, OPTIONS):
        if target is None and function not in ("hessian", "hessian_vector_product", "hessian_diagonal"):
            continue
        if target is None and (set(options) - {"reduction", "sample_weight"}):
            continue
        if target == "soft" and options.get("ignore_index"):
            continue
        yield function, target, options


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("function,target,options", list(_target_cases()), ids=str)
def test_compiled_equals_reference(function, target, options, order, shape, dtype, rng):
    z, y, v, kwargs = _make_case(shape, dtype, order, target, options, rng)
    args = (z, v) if function == "hessian_vector_product" else (z,)
    layouts = LAYOUTS if "hessian" in function and function != "hessian_diagonal" and function != "hessian_vector_product" else [None]
    for layout in layouts:
        extra = dict(kwargs, layout=layout) if layout else kwargs
        got = getattr(sk, function)(*args, y, **extra)
        want = getattr(reference, function)(*args, y, **extra)
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            assert_close_ulps(g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("function", ["softmax", "log_softmax"])
def test_compiled_softmax_equals_reference(function, order, shape, dtype, rng):
    z, _, _, _ = _make_case(shape, dtype, order, None, {}, rng)
    assert_close_ulps(getattr(sk, function)(z), getattr(reference, function)(z), dtype)


# Short rows (K <= 16) are transposed by loops compiled once per K (or in tiles of rows, on
# AVX-512 or AVX2), and a block whose rows are all valid is written out whole: every K (and
# K = 17, the first long one), with the first block holding bad rows and ties, and a later
# all-valid block holding ties too.
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n_classes", range(1, 18))
def test_every_short_row_width_equals_reference(n_classes, dtype, rng):
    n_rows = 601  # at least three blocks of rows at any K, the last one partial
    z = (3 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
    y = rng.integers(0, n_classes, n_rows)
    v = rng.standard_normal((n_rows, n_classes)).astype(dtype)
    z[1] = np.nan                      # invalid
    z[2], y[2] = np.nan, -100          # ignored, whatever its logits hold
    z[3, 0] = -np.inf                  # a masked class
    if n_classes > 1:
        z[6, 0] = z[6].max() - 700     # extreme (a span beyond 600, or 80 for float32)
    for row in (4, 5, n_rows - 2, n_rows - 1):  # tied maxima, the label at one of them or not
        z[row, [0, -1]] = z[row].max() + 1
        y[row] = n_classes - 1 if row % 2 == 0 else n_classes // 2
    kwargs = {"ignore_index": -100}
    cases = [("loss_gradient", (z, y), kwargs), ("hessian", (z, y), kwargs), ("hessian", (z, None), {}),
             *[("hessian", (z, y), {**kwargs, "layout": layout}) for layout in ("packed_lower", "full")],
             ("hessian_vector_product", (z, v, y), kwargs), ("hessian_diagonal", (z, y), kwargs),
             ("hessian_diagonal", (z, None), {}), ("softmax", (z,), {}), ("log_softmax", (z,), {})]
    for name, args, options in cases:
        got, want = getattr(sk, name)(*args, **options), getattr(reference, name)(*args, **options)
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            assert_close_ulps(g, w, dtype)
    in_place = z.copy()
    sk.gradient(in_place, y, out=in_place, **kwargs)
    assert_close_ulps(in_place, reference.gradient(z, y, **kwargs), dtype)


# The tiled transpositions of short rows load and store whole vectors that reach past a
# row's end, masked (AVX-512) or left to element-wise loops (AVX2) where they would pass the
# block's, and the Hessian's tiles (16 float32 or 8 float64 rows) spill into room of their
# own: every count of rows around the tile sizes, each output inside a larger buffer whose
# guard values must survive.
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n_classes", range(1, 18))
def test_short_rows_write_nothing_outside_their_output(n_classes, dtype, rng):
    guard = 20
    packed = n_classes * (n_classes + 1) // 2
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
            assert_close_ulps(call(out), want(), dtype)
            assert (buffer[:guard] == 7).all() and (buffer[-guard:] == 7).all(), (name, n_rows)


@pytest.mark.parametrize("num_threads", [None, 1, 2, 3])
def test_results_do_not_depend_on_thread_count(num_threads, rng):
    z = rng.standard_normal((20000, 7))
    y = rng.integers(0, 7, 20000)
    baseline = sk.loss_gradient_hessian(z, y, reduction="mean", num_threads=1)
    for got, want in zip(sk.loss_gradient_hessian(z, y, reduction="mean", num_threads=num_threads), baseline):
        np.testing.assert_array_equal(got, want)


# Labels gradients and short-row Hv of at least 16 MiB, on more than one thread, are written
# with streaming stores (SK_STREAM_MIN_BYTES) and on one thread with plain ones: both must
# give the same bits, including blocks holding rows that are ignored, extreme or NaN (which
# are not streamed), in place over z, and into an output that starts off a 16-byte boundary.
# K = 37 and 40 make blocks that end inside a cache line (blocks of short rows are whole
# lines of an aligned output, but not of the shifted one); K <= 16 and K > 16 take different
# paths (the Hv of long rows is not streamed).
@pytest.mark.parametrize("n_classes", [9, 10, 37, 40])
@pytest.mark.parametrize("dtype", DTYPES)
def test_streamed_large_outputs_equal_plain_stores(n_classes, dtype, rng):
    n_rows = (17 << 20) // (np.dtype(dtype).itemsize * n_classes)
    z = (3 * rng.standard_normal((n_rows, n_classes))).astype(dtype)
    y = rng.integers(0, n_classes, n_rows)
    v = rng.standard_normal((n_rows, n_classes)).astype(dtype)
    z[5, 3] = np.nan
    z[n_rows // 2, 0] = -1e4  # an extreme row: recomputed in a wider type after the block
    y[7] = -100
    calls = {
        "loss_gradient": lambda n: sk.loss_gradient(z, y, ignore_index=-100, num_threads=n),
        "hessian_vector_product": lambda n: (sk.hessian_vector_product(z, v, num_threads=n),),
    }
    for name, call in calls.items():
        for got, want in zip(call(2), call(1)):
            np.testing.assert_array_equal(got, want, err_msg=name)
    want = sk.gradient(z, y, ignore_index=-100, num_threads=1)
    in_place = z.copy()
    sk.gradient(in_place, y, ignore_index=-100, out=in_place, num_threads=2)
    np.testing.assert_array_equal(in_place, want)
    shifted = np.empty(n_rows * n_classes + 1, dtype)[1:].reshape(n_rows, n_classes)
    sk.gradient(z, y, ignore_index=-100, out=shifted, num_threads=2)
    np.testing.assert_array_equal(shifted, want)
