"""Hypothesis property tests: identities that hold for every input, within stated tolerances.

With s = softmax(z), a the effective target vector and c = sum(a) (c = w without targets):
* H 1 = 0 (rows of the Hessian sum to zero), up to the rounding of its elements;
* the full Hessian is bitwise symmetric, and every layout stores bitwise the same numbers;
* H / c is positive semidefinite, so H is PSD whenever c >= 0 (non-negative weights and targets);
* the gradient of a row sums to c - sum(a) = 0 for every option (labels or soft targets,
  weights of any sign, smoothing), up to rounding of its elements;
* shifting the logits by t leaves softmax, log_softmax, loss, gradient, Hessian, its diagonal
  and the HVP unchanged; when z + t is exact (grid values) the outputs are bitwise identical,
  because the kernels only ever see z - max(z);
* hessian_vector_product(z, v) = unpack(hessian(z)) @ v, hessian_diagonal = diag(hessian);
* softmax sums to 1 and log_softmax = log(softmax) wherever softmax is a normal number;
* the compiled kernels and the NumPy reference agree to 8 u (|value| + condition + tiny).

Logits stay within +-40 so that exp(z - max z) is a normal number even in float32:
the underflow range has its own accuracy tests (test_accuracy.py).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis")
pytest.importorskip("mpmath")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

import exact  # noqa: E402
import softmax_kernels as sk  # noqa: E402
from helpers import IGNORE_INDEX, NO_TARGET_OPERATIONS, every_output  # noqa: E402
from softmax_kernels._operations import OPERATIONS  # noqa: E402
from softmax_kernels._layout import PACKED_LAYOUTS  # noqa: E402
from softmax_kernels._reduction import REDUCTIONS  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])


@st.composite
def problems(draw, targets=("labels", "soft", None), nonnegative=False, grid=False):
    """A random batch: logits (some masked with -inf), targets, v and options, in float32 or float64."""
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n_rows, n_classes = draw(st.integers(1, 4)), draw(st.integers(1, 7))
    if grid:  # multiples of 1/8: z + t is exact for integer t
        elements = st.integers(-512, 512).map(lambda i: i / 8.0)
    else:
        elements = st.floats(-40.0, 40.0, width=32)
    z = draw(arrays(np.float64, (n_rows, n_classes), elements=elements))
    mask = draw(arrays(np.bool_, (n_rows, n_classes), elements=st.booleans())) & draw(st.booleans())
    mask[np.arange(n_rows), np.argmax(z, axis=1)] = False  # every row keeps a finite logit
    z[mask] = -np.inf
    kind = draw(st.sampled_from(targets))
    low = 0.0 if nonnegative else -3.0
    weight = st.floats(low, 3.0, width=32)
    options = {}
    if kind == "labels":
        y = draw(arrays(np.int64, n_rows, elements=st.integers(0, n_classes - 1)))
        if draw(st.booleans()):
            options["ignore_index"] = IGNORE_INDEX
            y[draw(arrays(np.bool_, n_rows, elements=st.booleans()))] = IGNORE_INDEX
    elif kind == "soft":
        y = draw(arrays(np.float64, (n_rows, n_classes), elements=st.floats(low if low < 0 else 0.0, 2.0, width=32)))
    else:
        y = None
    if draw(st.booleans()):
        options["sample_weight"] = draw(arrays(np.float64, n_rows, elements=weight))
    if kind is not None:
        if draw(st.booleans()):
            options["class_weight"] = draw(arrays(np.float64, n_classes, elements=weight))
        options["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0.0, 1.0))
    options["reduction"] = draw(st.sampled_from(REDUCTIONS))
    v = draw(arrays(np.float64, (n_rows, n_classes), elements=st.floats(-4.0, 4.0, width=32)))
    problem = Problem(dtype, z, y, v, options)
    if options["reduction"] == "mean" and abs(problem.denominator) < 1e-3:
        options["reduction"] = "sum"  # a (near-)zero denominator: no finite mean to test
        problem = Problem(dtype, z, y, v, options)
    return problem


class Problem:
    """Inputs cast to the dtype under test, with c per row and the "mean" denominator in float64."""

    def __init__(self, dtype, z, y, v, options):
        self.dtype = dtype
        self.z = z.astype(dtype)
        self.y = y if y is None or y.dtype.kind == "i" else y.astype(dtype)
        self.v = v.astype(dtype)
        self.options = {k: (x.astype(dtype) if isinstance(x, np.ndarray) else x) for k, x in options.items()}
        n_rows = z.shape[0]
        weights = self.options.get("sample_weight", np.ones(n_rows)).astype(np.float64)
        if y is None:
            self.c = weights
            self.abs_a = np.abs(weights)
            ignored = np.zeros(n_rows, dtype=bool)
        else:
            target_options = {k: x for k, x in self.options.items() if k != "reduction"}
            a, ignored = exact.effective_targets(z.shape, self.y, **target_options)
            self.c = a.sum(axis=1)
            self.abs_a = np.abs(a).sum(axis=1)
        if y is not None and y.dtype.kind == "i":
            class_weight = self.options.get("class_weight", np.ones(z.shape[1])).astype(np.float64)
            labels = np.where(ignored, 0, y)
            self.denominator = float(np.sum(np.where(ignored, 0.0, weights * class_weight[labels])))
        else:
            self.denominator = float(weights.sum())
        if self.options["reduction"] != "mean":
            self.denominator = 1.0
        self.u = exact.unit_roundoff(dtype)
        self.tiny = float(np.finfo(dtype).tiny)
        finite = np.where(np.isfinite(z), z, np.nan)
        self.spread = np.nan_to_num(np.nanmax(finite, axis=1) - np.nanmin(finite, axis=1))  # max |z_k - m| per row
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero "mean" denominator is replaced by "sum"
            self.floor = 8 * z.shape[1] * self.tiny * np.maximum(1.0, np.abs(self.c) / abs(self.denominator))

    def __repr__(self):
        return (f"Problem({np.dtype(self.dtype).name}, z={self.z.tolist()!r}, y={None if self.y is None else self.y.tolist()!r}, "
                f"v={self.v.tolist()!r}, options={ {k: (x.tolist() if isinstance(x, np.ndarray) else x) for k, x in self.options.items()} !r})")

    def target_args(self):
        return (self.y,) if self.y is not None else ()


def full_hessian(backend, p, layout="full"):
    h = backend.hessian(p.z, *p.target_args(), layout=layout, **p.options)
    return (h if layout == "full" else sk.unpack(h, layout)).astype(np.float64)


@SETTINGS
@given(p=problems())
def test_hessian_rows_sum_to_zero(backend, p):
    h = full_hessian(backend, p)
    tolerance = 16 * p.u * (1 + p.spread)[:, None] * np.abs(h).sum(axis=-1) + p.floor[:, None]
    assert (np.abs(h.sum(axis=-1)) <= tolerance).all(), (h.sum(axis=-1), tolerance)


@SETTINGS
@given(p=problems())
def test_full_hessian_is_bitwise_symmetric_and_every_layout_stores_the_same_numbers(backend, p):
    full = backend.hessian(p.z, *p.target_args(), layout="full", **p.options)
    np.testing.assert_array_equal(full, np.swapaxes(full, -1, -2))
    for layout in PACKED_LAYOUTS:
        np.testing.assert_array_equal(sk.unpack(backend.hessian(p.z, *p.target_args(), layout=layout,
                                                                **p.options), layout), full)


@SETTINGS
@given(p=problems(nonnegative=True))
def test_hessian_is_positive_semidefinite_when_weights_and_targets_are_nonnegative(backend, p):
    assert (p.c >= 0).all()
    h = full_hessian(backend, p)
    eigenvalues = np.linalg.eigvalsh(h)
    norms = np.sqrt((h ** 2).sum(axis=(-1, -2)))
    tolerance = 32 * p.u * (1 + p.spread) * norms + p.floor
    assert (eigenvalues.min(axis=-1) >= -tolerance).all(), (eigenvalues, tolerance)


@SETTINGS
@given(p=problems(targets=("labels", "soft")))
def test_gradient_rows_sum_to_c_minus_sum_of_targets_which_is_zero(backend, p):
    """sum_k g_k = c sum_k s_k - sum_k a_k = c - c = 0, for every option and weights of any sign."""
    g = backend.gradient(p.z, p.y, **p.options).astype(np.float64)
    scale = (p.abs_a + np.abs(p.c)) / abs(p.denominator)
    tolerance = 16 * p.u * (1 + p.spread) * scale + p.floor
    assert (np.abs(g.sum(axis=-1)) <= tolerance).all(), (g.sum(axis=-1), tolerance)


@SETTINGS
@given(p=problems(grid=True), shift=st.integers(-1000, 1000))
def test_every_output_is_bitwise_invariant_under_an_exact_shift_of_the_logits(backend, p, shift):
    """z + t is exact on the 1/8 grid, and the kernels only see z - max z: identical outputs."""
    shifted = (p.z.astype(np.float64) + shift).astype(p.dtype)
    assert (shifted.astype(np.float64) - shift == p.z).all()  # the shift is exact
    np.testing.assert_array_equal(backend.softmax(shifted), backend.softmax(p.z))
    np.testing.assert_array_equal(backend.log_softmax(shifted), backend.log_softmax(p.z))
    args = p.target_args()
    for layout in ("packed_upper", "full"):
        np.testing.assert_array_equal(backend.hessian(shifted, *args, layout=layout, **p.options),
                                      backend.hessian(p.z, *args, layout=layout, **p.options))
    np.testing.assert_array_equal(backend.hessian_diagonal(shifted, *args, **p.options),
                                  backend.hessian_diagonal(p.z, *args, **p.options))
    np.testing.assert_array_equal(backend.hessian_vector_product(shifted, p.v, *args, **p.options),
                                  backend.hessian_vector_product(p.z, p.v, *args, **p.options))
    if p.y is not None:
        for a, b in zip(backend.loss_gradient(shifted, p.y, **p.options), backend.loss_gradient(p.z, p.y, **p.options)):
            np.testing.assert_array_equal(a, b)


@SETTINGS
@given(p=problems(), shift=st.floats(-1e3, 1e3))
def test_softmax_gradient_and_hessian_are_invariant_under_any_shift(backend, p, shift):
    """For a rounded z + t the inputs move by up to u |z + t|: outputs move by their condition on that."""
    shifted = (p.z.astype(np.float64) + shift).astype(p.dtype)
    with np.errstate(invalid="ignore"):  # -inf - -inf at masked classes
        moved = np.abs(shifted.astype(np.float64) - shift - p.z)  # what the rounding of z + t changed
    moved = np.where(np.isfinite(moved), moved, 0.0).max(axis=1)
    # s_k moves by about s_k (2 max|dz|) from the inputs, plus both computations' rounding
    # (a few u each: exp within about one ulp, the sum, the division)
    relative = 4 * moved + 2 * (8 + p.spread) * p.u
    s, s_shifted = backend.softmax(p.z).astype(np.float64), backend.softmax(shifted).astype(np.float64)
    assert (np.abs(s_shifted - s) <= (relative[:, None] * s + 4 * p.tiny)).all()
    h = full_hessian(backend, p)
    p_shifted = Problem(p.dtype, shifted.astype(np.float64), p.y, p.v.astype(np.float64), p.options)
    h_shifted = full_hessian(backend, p_shifted)
    bound = (3 * relative[:, None, None] + 32 * p.u * (1 + p.spread[:, None, None])) * np.abs(h) + p.floor[:, None, None]
    assert (np.abs(h_shifted - h) <= bound).all()


@SETTINGS
@given(p=problems())
def test_hessian_vector_product_equals_unpacked_hessian_times_v(backend, p):
    h = full_hessian(backend, p, layout="packed_upper")
    v = p.v.astype(np.float64)
    product = backend.hessian_vector_product(p.z, p.v, *p.target_args(), **p.options).astype(np.float64)
    scale = np.einsum("nij,nj->ni", np.abs(h), np.abs(v))
    tolerance = 16 * p.u * (1 + p.spread)[:, None] * scale + p.floor[:, None] * (1 + np.abs(v).max())
    assert (np.abs(product - np.einsum("nij,nj->ni", h, v)) <= tolerance).all()


@SETTINGS
@given(p=problems())
def test_hessian_diagonal_equals_the_diagonal_of_the_hessian(backend, p):
    diagonal = backend.hessian_diagonal(p.z, *p.target_args(), **p.options)
    full = backend.hessian(p.z, *p.target_args(), layout="full", **p.options)
    np.testing.assert_array_equal(diagonal, np.diagonal(full, axis1=-2, axis2=-1))


@SETTINGS
@given(p=problems(targets=(None,)))
def test_softmax_sums_to_one(backend, p):
    s = backend.softmax(p.z).astype(np.float64)
    assert (s >= 0).all() and (s <= 1).all()
    assert (np.abs(s.sum(axis=-1) - 1.0) <= 8 * (p.z.shape[1] + 3) * p.u).all()


@SETTINGS
@given(p=problems(targets=(None,)))
def test_log_softmax_is_the_log_of_softmax_where_softmax_is_normal(backend, p):
    s = backend.softmax(p.z).astype(np.float64)
    log_s = backend.log_softmax(p.z).astype(np.float64)
    assert (np.isneginf(log_s) == np.isneginf(p.z)).all()  # masked classes, and only they
    normal = s >= p.tiny
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) - -inf at masked classes
        error = np.abs(log_s - np.log(s))
    tolerance = 8 * p.u * (4 + 2 * np.abs(log_s) + np.log(p.z.shape[1]))
    assert (error[normal] <= tolerance[normal]).all()
    assert (log_s <= 0).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_compiled_equals_reference_within_a_few_units_of_roundoff(p):
    """Every output of every operation and layout: |compiled - reference| <= 8 u (|reference| +
    condition + tiny), the condition from tests/exact.py (Hessians compared unpacked)."""
    if sk.show_config()["backend"] != "compiled":
        pytest.skip("the compiled extension is not in use")
    compiled = every_output(sk, p.z, p.y, p.v, **p.options)
    reference = every_output(sk.reference, p.z, p.y, p.v, **p.options)
    kinds = dict.fromkeys(key.kind for key in compiled)
    no_target_kinds = {kind for name in NO_TARGET_OPERATIONS for kind in OPERATIONS[name].outputs}
    exact_options = p.options if p.y is not None else {k: p.options[k] for k in ("sample_weight", "reduction")
                                                       if k in p.options}
    conditions = exact.evaluate(p.z, outputs=[kind for kind in kinds if kind in no_target_kinds])
    conditions.update(exact.evaluate(p.z, p.y, p.v, outputs=[kind for kind in kinds if kind not in no_target_kinds],
                                     **exact_options))
    for key, value in compiled.items():
        want = reference[key]
        if key.kind == "hessian" and key.layout != "full":
            value, want = sk.unpack(value, key.layout), sk.unpack(want, key.layout)
        exact.assert_within_contract(value, want.astype(np.float64), conditions[key.kind].cond, dtype=p.dtype,
                                     factor=8, what=f"compiled vs reference {key}")
