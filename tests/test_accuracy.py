"""The accuracy contract of issue 2, against exact mpmath results (tests/exact.py).

For every output element f: |computed - exact| <= 4 u (|exact| + sum_x |df/dx| |x| + tiny),
u = 2**-53 (float64) or 2**-24 (float32), on rows designed to break careless
kernels: confident rows (the issue's [50, 0, -3]), ties, -inf masks, huge and
tiny logits, K = 1, 2, 1000 and 100 000, every option and reduction, and long
batches whose reductions need accurate summation. Every output is checked
through every function that returns it (loss, loss_gradient,
loss_gradient_hessian, ...) and every Hessian layout (unpacked to full).

Most inputs are exactly representable in float32, so one exact evaluation
serves both dtypes; exact results are cached per input.
"""

from __future__ import annotations

import numpy as np
import pytest

import exact
import softmax_kernels as sk

DTYPES = (np.float64, np.float32)
LAYOUTS = ("packed_upper", "packed_lower", "full")
IGNORE = -100
HESSIAN_MAX_K = 64  # the exact K x K Hessian costs K**2 mpmath evaluations per row
INF = np.inf


def f32(values) -> np.ndarray:
    """float64 array of float32-representable values (one exact result serves both dtypes)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


# ----------------------------------------------------------------------------------
# The checker


_EXACT_CACHE: dict = {}


def _key(x):
    """Equal for equal values, so float32 inputs that float64 holds exactly share one exact result."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "f":
            x = x.astype(np.float64)
        return (x.dtype.str, x.shape, x.tobytes())
    return repr(x)


def exact_outputs(z, y, v, outputs, options) -> dict:
    key = (_key(z), _key(y), _key(v), tuple(outputs), tuple(sorted((k, _key(x)) for k, x in options.items())))
    if key not in _EXACT_CACHE:
        _EXACT_CACHE[key] = exact.evaluate(z, y, v, outputs=outputs, **options)
    return _EXACT_CACHE[key]


def _cast(x, dtype):
    if x is None:
        return None
    arr = np.asarray(x)
    return arr if arr.dtype.kind in "iu" else arr.astype(dtype)


def default_outputs(y, v, n_classes):
    outputs = ["softmax", "log_softmax"] if y is None else ["loss", "gradient"]
    if n_classes <= HESSIAN_MAX_K:
        outputs.append("hessian")
    outputs.append("hessian_diagonal")
    if v is not None:
        outputs.append("hessian_vector_product")
    return tuple(outputs)


def computed_outputs(backend, name, z, y, v, options):
    """(how, array) for every way the package returns output ``name`` (Hessians unpacked to full)."""
    target_options = options
    if name == "softmax":
        yield "softmax", backend.softmax(z)
    elif name == "log_softmax":
        yield "log_softmax", backend.log_softmax(z)
    elif name in ("loss", "gradient"):
        index = 0 if name == "loss" else 1
        yield name, getattr(backend, name)(z, y, **target_options)
        yield "loss_gradient", backend.loss_gradient(z, y, **target_options)[index]
        if z.shape[-1] <= HESSIAN_MAX_K:  # its Hessian would not fit at K = 100 000
            yield "loss_gradient_hessian", backend.loss_gradient_hessian(z, y, **target_options)[index]
    elif name == "hessian":
        for layout in LAYOUTS:
            results = [("hessian", backend.hessian(z, y, layout=layout, **target_options))]
            if y is not None:
                results.append(("loss_gradient_hessian",
                                backend.loss_gradient_hessian(z, y, layout=layout, **target_options)[2]))
            for how, h in results:
                yield f"{how} layout={layout}", h if layout == "full" else sk.unpack(h, layout)
    elif name == "hessian_diagonal":
        yield name, backend.hessian_diagonal(z, y, **target_options)
    elif name == "hessian_vector_product":
        yield name, backend.hessian_vector_product(z, v, y, **target_options)
    else:
        raise ValueError(name)


def check_contract(backend, dtype, z, y=None, v=None, *, outputs=None, factor=4, **options):
    """Compute every requested output in ``dtype`` and assert the contract against the exact values."""
    z = np.asarray(z, dtype=dtype)
    y = _cast(y, dtype)
    v = _cast(v, dtype)
    options = {k: _cast(x, dtype) if k in ("sample_weight", "class_weight") else x for k, x in options.items()}
    if outputs is None:
        outputs = default_outputs(y, v, z.shape[-1])
    reference = exact_outputs(z, y, v, outputs, options)
    backend_name = "compiled" if backend is sk else "reference"
    for name in outputs:
        call_options = options if name not in ("softmax", "log_softmax") else {}
        for how, computed in computed_outputs(backend, name, z, y, v, call_options):
            assert computed.dtype == dtype, f"{how} returned {computed.dtype}"
            exact.assert_within_contract(computed, reference[name], dtype=dtype, factor=factor,
                                         what=f"{backend_name} {np.dtype(dtype).name} {name} via {how}")
    return reference


# ----------------------------------------------------------------------------------
# The issue's example, and proof that the check has teeth


ISSUE_ROW = np.array([[50.0, 0.0, -3.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_issue_example_loss_is_2e_22_not_zero(backend, dtype):
    reference = check_contract(backend, dtype, ISSUE_ROW, np.array([0]), v=np.array([[1.0, -2.0, 0.5]]))
    true_loss = float(reference["loss"].value[0])
    assert true_loss == pytest.approx(2.0216880e-22, rel=1e-6)
    computed = backend.loss(ISSUE_ROW.astype(dtype), np.array([0]))
    assert computed[0] == pytest.approx(true_loss, rel=8 * exact.unit_roundoff(dtype))
    gradient = backend.gradient(ISSUE_ROW.astype(dtype), np.array([0]))
    assert gradient[0, 0] == pytest.approx(-true_loss, rel=1e-6)  # s_0 - 1 = -(T / S), not 0


def naive_loss_gradient(z, label):
    """What torch / JAX / scikit-learn compute: log_softmax by log(sum(exp)), gradient softmax - onehot."""
    shifted = z - z.max(axis=-1, keepdims=True)
    log_sum = np.log(np.sum(np.exp(shifted), axis=-1))
    loss = log_sum - shifted[np.arange(len(z)), label]
    grad = np.exp(shifted) / np.sum(np.exp(shifted), axis=-1, keepdims=True)
    grad[np.arange(len(z)), label] -= 1.0
    return loss, grad


def test_contract_rejects_the_zero_that_peers_return():
    reference = exact.evaluate(ISSUE_ROW, np.array([0]), outputs=("loss", "gradient"))
    naive_loss, naive_grad = naive_loss_gradient(ISSUE_ROW, np.array([0]))
    assert naive_loss[0] == 0.0 and naive_grad[0, 0] == 0.0
    for computed, name in ((naive_loss, "loss"), (naive_grad, "gradient")):
        with pytest.raises(AssertionError, match="accuracy contract violated"):
            exact.assert_within_contract(computed, reference[name], dtype=np.float64)
    # ... and so is a result that is merely one percent off.
    with pytest.raises(AssertionError, match="ratio"):
        exact.assert_within_contract(reference["loss"].hi * 1.01, reference["loss"], dtype=np.float64)


def test_torch_cross_entropy_violates_the_contract_on_the_issue_row():
    torch = pytest.importorskip("torch")
    z = torch.tensor(ISSUE_ROW, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(z, torch.tensor([0]), reduction="sum")
    loss.backward()
    reference = exact.evaluate(ISSUE_ROW, np.array([0]), outputs=("loss", "gradient"))
    with pytest.raises(AssertionError):
        exact.assert_within_contract(np.array([loss.item()]), reference["loss"], dtype=np.float64)
    with pytest.raises(AssertionError):
        exact.assert_within_contract(z.grad.numpy(), reference["gradient"], dtype=np.float64)


def test_scikit_learn_multinomial_loss_violates_the_contract_on_the_issue_row():
    loss_module = pytest.importorskip("sklearn._loss.loss")
    half_multinomial = loss_module.HalfMultinomialLoss(n_classes=3)
    reference = exact.evaluate(ISSUE_ROW, np.array([0]), outputs=("loss", "gradient"))
    loss = half_multinomial.loss(y_true=np.array([0.0]), raw_prediction=ISSUE_ROW)
    gradient = half_multinomial.gradient(y_true=np.array([0.0]), raw_prediction=ISSUE_ROW)
    with pytest.raises(AssertionError):
        exact.assert_within_contract(loss, reference["loss"], dtype=np.float64)
    with pytest.raises(AssertionError):
        exact.assert_within_contract(gradient, reference["gradient"], dtype=np.float64)


def test_sequential_class_sum_would_break_the_contract_at_large_k():
    """At K = 100 000 a one-accumulator sum of exp(z - m) is tens of u off: the K = 1e5 test has teeth."""
    z, label = LARGE_K_ROW()
    reference = exact_outputs(z, label, None, ("loss",), {})
    m, p = z.max(), int(np.argmax(z[0]))
    e = np.exp(z[0] - m)
    e[p] = 0.0
    sequential_sum = np.add.accumulate(e)[-1]
    naive = np.array([(m - z[0, label[0]]) + np.log1p(sequential_sum)])
    assert exact.contract_ratio(naive, reference["loss"]).max() > 4


# ----------------------------------------------------------------------------------
# Hard rows


GAPS = (10, 20, 37, 50, 100, 300, 700, 740, 745, 760, 1000)
CONFIDENT = f32([[g, 0.0, -3.0] for g in GAPS] + [[-1000.0, -1050.0, -1053.0], [0.0, -40.0, -40.0]])
CONFIDENT_V = np.tile(f32([1.0, -2.0, 0.5]), (len(CONFIDENT), 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label", [0, 1], ids=["label_on_the_winner", "label_on_a_loser"])
def test_loss_of_confident_row_keeps_all_digits(backend, dtype, label):
    labels = np.full(len(CONFIDENT), label)
    check_contract(backend, dtype, CONFIDENT, labels, CONFIDENT_V)


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_rows_with_every_option_keep_all_digits(backend, dtype):
    n = len(CONFIDENT)
    check_contract(backend, dtype, CONFIDENT, np.arange(n) % 3, CONFIDENT_V,
                   sample_weight=f32(np.linspace(0.25, 3.0, n)), class_weight=f32([2.0, 0.5, 1.5]),
                   label_smoothing=1e-3)


# Rows whose exp(z_k - m) leaves the normal range of the dtype the kernel computes exp in
# (float64: gap > 708; float32 if exp runs in float: gap > 87), and a sample weight that lifts
# the results back to where the contract asks for more digits than a subnormal (or zero) has.
UNDERFLOW_ROWS = {
    np.float64: (f32([[740.0, 0.0], [745.0, 0.0], [800.0, 0.0], [720.0, -1.0]]), np.array([100.0, 1e6, 1e40, 8.0])),
    np.float32: (f32([[100.0, 0.0], [110.0, 0.0], [95.0, -2.0], [90.0, 1.0]]), f32([100.0, 1e10, 64.0, 8.0])),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label", [0, 1], ids=["label_on_the_winner", "label_on_a_loser"])
def test_weights_that_lift_an_underflowing_exponential_keep_the_contract(backend, dtype, label):
    """c s_k with s_k below the normal range: a subnormal (or zero) e_k scaled by c loses the digits
    that c brings back into range, e.g. w = 1e40 * exp(-800) = 3.6e-308 is a normal float64."""
    z, weights = UNDERFLOW_ROWS[dtype]
    v = f32([[10.0, -10.0]] * len(z))
    labels = np.full(len(z), label)
    check_contract(backend, dtype, z, labels, v, sample_weight=weights)
    check_contract(backend, dtype, z, None, v, sample_weight=weights, outputs=("hessian", "hessian_diagonal",
                                                                               "hessian_vector_product"))


# Tiny sample weights push c s_k (and the per-row loss) below the normal range although the
# results are normal numbers: "mean" divides by D = w again, and v - sigma scales c s_k up.
TINY_WEIGHT_ROWS = {
    np.float64: [([0.0, -300.0], 1e-200), ([0.0, -30.0], 1e-300), ([0.0, -500.0], 1e-95), ([3.0, 0.0], 1e-310)],
    np.float32: [([0.0, -80.0], 1e-38), ([0.0, -30.0], 1e-30), ([3.0, 0.0], 1e-44)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_tiny_sample_weights_keep_the_contract(backend, dtype, reduction):
    v = f32([[10.0, -10.0]])
    for row, weight in TINY_WEIGHT_ROWS[dtype]:
        z, weights = np.array([row]), np.array([weight], dtype=dtype)
        for label in (0, 1):
            check_contract(backend, dtype, z, np.array([label]), v, sample_weight=weights, reduction=reduction)
        check_contract(backend, dtype, z, None, v, sample_weight=weights, reduction=reduction,
                       outputs=("hessian", "hessian_diagonal", "hessian_vector_product"))


TIES = f32([[3.0, 3.0, 3.0, 3.0], [7.0, 7.0, 0.0, -7.0], [0.0, 1.0, 1.0, -30.0], [-2.0, 5.0, -2.0, 5.0],
            [1e4, 1e4, 1e4, -1e4], [0.0, 0.0, 0.0, 1e-30]])
TIES_V = f32([[1.0, -1.0, 2.0, 0.0], [0.5, 0.5, -3.0, 1.0], [2.0, -2.0, 1.0, 4.0], [1.0, 2.0, 3.0, 4.0],
              [-1.0, 1.0, 0.25, 8.0], [1.0, 1.0, 1.0, 1.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tied_logits_meet_the_contract(backend, dtype):
    check_contract(backend, dtype, TIES, np.array([0, 1, 2, 3, 0, 3]), TIES_V)
    check_contract(backend, dtype, TIES, np.array([3, 2, 0, 1, 3, 0]), TIES_V, label_smoothing=0.25,
                   class_weight=f32([1.0, 2.0, 3.0, 4.0]))


MASKED = np.array([[-INF, 0.0, 1.0, 2.0], [0.0, -INF, -INF, 5.0], [-INF, -INF, 3.0, -INF],
                   [-INF, 50.0, 0.0, -3.0], [-INF, -INF, -1e4, 1e4]])
MASKED_V = f32([[1.0, 2.0, -1.0, 0.5]] * 5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_masked_classes_meet_the_contract(backend, dtype, reduction):
    labels = np.array([2, 3, 2, 1, 3])
    check_contract(backend, dtype, MASKED, labels, MASKED_V, reduction=reduction)
    check_contract(backend, dtype, MASKED, labels, MASKED_V, reduction=reduction,
                   sample_weight=f32([1.0, 0.5, 2.0, 3.0, 0.0]), class_weight=f32([0.0, 0.0, 1.0, 2.0]))
    # soft targets with zero weight on every masked class: finite losses
    soft = f32([[0.0, 0.25, 0.25, 0.5], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, -0.5, 0.5],
                [0.0, 0.0, 0.5, 0.5]])
    check_contract(backend, dtype, MASKED, soft, MASKED_V, reduction=reduction)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_on_a_masked_class_gives_infinite_loss_and_accurate_derivatives(backend, dtype):
    # label 0 of row 0 is masked; smoothing puts eps/K on every masked class
    reference = check_contract(backend, dtype, MASKED, np.array([0, 3, 2, 1, 3]), MASKED_V)
    assert np.isposinf(float(reference["loss"].value[0]))
    reference = check_contract(backend, dtype, MASKED, np.array([2, 3, 2, 1, 3]), MASKED_V, label_smoothing=0.1)
    assert all(np.isposinf(float(x)) for x in reference["loss"].value)
    assert all(np.isfinite(float(x)) for x in reference["gradient"].value.ravel())


HUGE_BOTH = f32([[1e4, -1e4, 0.0, 9999.0], [-1e4, -1e4, -1e4, -9999.5], [1e4, 1e4, -1e4, 0.0]])
HUGE_FLOAT64 = np.array([[1e30, -1e30, 0.0, 1e30], [8e307, -8e307, 0.0, 1.0], [-1e300, 1e300, 0.0, -5e299]])
HUGE_FLOAT32 = f32([[3.0e38, -3.0e38, 1e38, 3.4e38], [-3.4e38, 1.0, 0.0, -1.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logits_meet_the_contract(backend, dtype):
    v = f32([[1.0, -1.0, 2.0, 0.5]] * 3)
    for labels in (np.array([1, 3, 0]), np.array([3, 0, 2])):
        check_contract(backend, dtype, HUGE_BOTH, labels, v)
        check_contract(backend, dtype, HUGE_BOTH, labels, v, label_smoothing=0.5, reduction="mean",
                       class_weight=f32([1.0, 2.0, 0.5, 3.0]))
    if dtype == np.float64:
        check_contract(backend, dtype, HUGE_FLOAT64, np.array([1, 1, 0]), v)
        check_contract(backend, dtype, HUGE_FLOAT64, f32([[0.5, 0.5, 0.0, 0.0], [0.25, 0.5, 0.25, 0.0],
                                                          [1.0, 0.0, 0.0, 1.0]]), v, reduction="sum")
    else:  # results stay below float32's max (3.40e38): the label never sits 3.4e38 below a 3.4e38
        check_contract(backend, dtype, HUGE_FLOAT32, np.array([2, 0]), v[:2])
        check_contract(backend, dtype, HUGE_FLOAT32, np.array([3, 1]), v[:2], sample_weight=f32([0.5, 2.0]))


TINY_FLOAT64 = np.array([[1e-300, -1e-300, 0.0, 5e-324], [2.2e-308, 1e-310, -1e-320, 0.0]])
TINY_FLOAT32 = f32([[1e-40, -1e-45, 0.0, 1e-38], [1.2e-38, -1e-39, 0.0, 3e-45]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_logits_meet_the_contract(backend, dtype):
    z = TINY_FLOAT64 if dtype == np.float64 else TINY_FLOAT32
    v = f32([[1.0, -1.0, 2.0, 0.5], [1e-30, 3.0, -2.0, 0.0]])
    check_contract(backend, dtype, z, np.array([0, 3]), v)
    check_contract(backend, dtype, z, np.array([1, 2]), v, label_smoothing=0.3, sample_weight=f32([2.0, 0.5]),
                   reduction="mean")
    check_contract(backend, dtype, z, f32([[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0]]), v, reduction="sum")


SINGLE_CLASS = f32([[3.0], [-1e4], [0.0], [1e30]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_class_outputs_are_exactly_zero(backend, dtype):
    z, v = SINGLE_CLASS, f32([[1.0], [2.0], [-3.0], [0.5]])
    for y, options in ((np.zeros(4, dtype=np.int64), {}),
                       (np.zeros(4, dtype=np.int64), {"label_smoothing": 0.5, "class_weight": f32([2.0])}),
                       (f32([[0.7], [2.0], [-1.0], [0.0]]), {"sample_weight": f32([1.0, 2.0, 3.0, 4.0])})):
        check_contract(backend, dtype, z, y, v, **options)
        z_cast = z.astype(dtype)
        loss, grad, hess = backend.loss_gradient_hessian(z_cast, _cast(y, dtype), **options)
        assert not loss.any() and not grad.any() and not hess.any()
    assert (backend.softmax(z.astype(dtype)) == 1).all()
    assert not backend.log_softmax(z.astype(dtype)).any()


TWO_CLASSES = f32([[0.0, 40.0], [40.0, 0.0], [0.0, 1e-8], [-1e4, 1e4], [0.0, 0.0], [-INF, 3.0], [7.0, 7.5]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_classes_meet_the_contract(backend, dtype):
    v = f32([[1.0, -1.0]] * 7)
    check_contract(backend, dtype, TWO_CLASSES, np.array([0, 0, 1, 0, 1, 1, 0]), v)
    check_contract(backend, dtype, TWO_CLASSES, np.array([1, 0, 0, 1, 0, 1, 1]), v, class_weight=f32([3.0, 0.5]),
                   reduction="mean")


def THOUSAND_CLASSES():
    rng = np.random.default_rng(1000)
    z = f32(rng.normal(0.0, 4.0, (3, 1000)))
    z[1, 17] = np.float32(z[1].max() + 60.0)  # confident
    z[2, rng.permutation(1000)[:500]] = -INF  # half masked
    z[2, 3] = 2.0
    v = f32(rng.normal(0.0, 1.0, (3, 1000)))
    return z, np.array([5, 17, 3]), v


@pytest.mark.parametrize("dtype", DTYPES)
def test_thousand_classes_meet_the_contract(backend, dtype):
    z, labels, v = THOUSAND_CLASSES()
    check_contract(backend, dtype, z, labels, v)
    rng = np.random.default_rng(1001)
    soft = f32(rng.dirichlet(np.full(1000, 0.1), 3))
    soft[2][z[2] == -INF] = 0.0  # no weight on masked classes: finite losses
    check_contract(backend, dtype, z, soft, v, class_weight=f32(rng.uniform(0.5, 2.0, 1000)),
                   sample_weight=f32([1.0, 2.5, 0.5]), label_smoothing=0.0, reduction="mean")


def LARGE_K_ROW():
    """One row of K = 100 000 logits drawn from 16 distinct float32 values (the exact cost scales with those)."""
    rng = np.random.default_rng(100_000)
    levels = f32(rng.normal(0.0, 3.0, 16))
    z = levels[rng.integers(0, 16, 100_000)][None, :]
    return z, np.array([12345])


@pytest.mark.parametrize("dtype", DTYPES)
def test_hundred_thousand_classes_keep_the_class_sums_accurate(backend, dtype):
    z, label = LARGE_K_ROW()
    rng = np.random.default_rng(100_001)
    v = f32(rng.normal(0.0, 1.0, 8))[rng.integers(0, 8, z.shape)]
    check_contract(backend, dtype, z, label, v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hundred_thousand_classes_with_soft_targets_and_options(backend, dtype):
    z, _ = LARGE_K_ROW()
    k = np.arange(z.shape[1])
    soft = f32([0.0, 2e-5, 1e-5, 5e-6])[k % 4][None, :]
    class_weight = f32([1.0, 0.5, 2.0, 0.25])[k % 4]
    check_contract(backend, dtype, z, soft, None, class_weight=class_weight, label_smoothing=0.01,
                   reduction="sum", outputs=("loss", "gradient", "hessian_diagonal"))


# ----------------------------------------------------------------------------------
# Every option combination on a batch of hard finite rows


COMBO_Z = f32([[20.0, 0.0, -3.0, 1.0, 2.0],         # confident: the label-0 loss is ~e^-18
               [40.0, 40.0, 0.0, -5.0, 3.0],        # tie at the max
               [0.5, -0.25, 0.125, 2.0, -1.0],      # moderate
               [1e4, -1e4, 0.0, 9999.0, 1.0],       # huge, with a near tie
               [-7.0, -7.5, 30.0, 29.75, 0.0],      # near tie
               [3.0, 1.0, 4.0, 1.0, 5.0]])
COMBO_V = f32([[1.0, -2.0, 0.5, 0.25, 3.0], [0.0, 1.0, -1.0, 2.0, 0.5], [1.5, 1.5, 1.5, -1.5, 0.0],
               [2.0, -2.0, 1.0, 0.0, 4.0], [-1.0, 3.0, 0.5, 0.5, 1.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
COMBO_LABELS = np.array([0, 1, 3, 2, 2, 4])
COMBO_TARGETS = {
    "labels": COMBO_LABELS,
    "labels_with_ignored_row": np.array([0, 1, 3, 2, IGNORE, 4]),
    "soft_probabilities": f32([[1.0, 0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0], [0.2] * 5,
                               [0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.0, 0.25, 0.75, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]]),
    "soft_unnormalised": f32([[2.0, 0.5, 0.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 4.0, 0.0, 0.0],
                              [0.3, 0.0, 0.7, 2.0, 0.1], [5.0, 0.0, 0.0, 0.0, 0.5], [0.0, 0.125, 0.0, 0.25, 0.0]]),
    "soft_signed": f32([[1.0, -0.5, 0.0, 2.0, -1.0], [0.5, 0.5, -1.0, 0.0, 0.25], [-0.2, 0.4, 0.6, 0.0, 0.2],
                        [1.0, 0.0, -1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [-1.0, -1.0, 0.5, 0.5, 2.0]]),
}
COMBO_WEIGHTS = {
    "no_options": {},
    "positive_weights_and_smoothing": {"sample_weight": f32([0.5, 2.0, 1.0, 0.25, 3.0, 1.5]),
                                       "class_weight": f32([1.0, 2.0, 0.5, 0.25, 4.0]), "label_smoothing": 0.1},
    "signed_and_zero_weights_and_smoothing": {"sample_weight": f32([1.0, -0.5, 0.0, 2.0, -1.0, 0.75]),
                                              "class_weight": f32([1.0, -1.0, 0.0, 2.0, 0.5]),
                                              "label_smoothing": 0.1},
    "full_smoothing": {"label_smoothing": 1.0},
    "sample_weight_only": {"sample_weight": f32([0.5, 2.0, 1.0, 0.25, 3.0, 1.5])},
    "signed_class_weight_only": {"class_weight": f32([1.0, -1.0, 0.0, 2.0, 0.5])},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weights", list(COMBO_WEIGHTS))
@pytest.mark.parametrize("targets", list(COMBO_TARGETS))
def test_every_option_combination_meets_the_contract(backend, dtype, targets, weights, reduction):
    options = dict(COMBO_WEIGHTS[weights], reduction=reduction)
    if targets == "labels_with_ignored_row":
        options["ignore_index"] = IGNORE
    check_contract(backend, dtype, COMBO_Z, COMBO_TARGETS[targets], COMBO_V, **options)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("sample_weight", [None, "positive", "signed"])
def test_hessian_without_targets_meets_the_contract(backend, dtype, reduction, sample_weight):
    weights = {None: None, "positive": f32([0.5, 2.0, 1.0, 0.25, 3.0, 1.5]),
               "signed": f32([1.0, -0.5, 0.0, 2.0, -1.0, 0.75])}[sample_weight]
    options = {"reduction": reduction}
    if weights is not None:
        options["sample_weight"] = weights
    check_contract(backend, dtype, COMBO_Z, None, COMBO_V,
                   outputs=("hessian", "hessian_diagonal", "hessian_vector_product"), **options)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", ["confident", "ties", "masked", "huge", "tiny", "two_classes", "combo",
                                  "thousand_classes"])
def test_softmax_and_log_softmax_meet_the_contract(backend, dtype, rows):
    z = {"confident": CONFIDENT, "ties": TIES, "masked": MASKED, "two_classes": TWO_CLASSES, "combo": COMBO_Z,
         "huge": HUGE_BOTH if dtype == np.float32 else np.concatenate([HUGE_BOTH, HUGE_FLOAT64]),
         "tiny": TINY_FLOAT64 if dtype == np.float64 else TINY_FLOAT32,
         "thousand_classes": THOUSAND_CLASSES()[0]}[rows]
    check_contract(backend, dtype, z, outputs=("softmax", "log_softmax"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_full_mantissa_inputs_meet_the_contract(backend, dtype):
    """Random float64 inputs that float32 cannot hold (float32 gets its own exact values)."""
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 10.0, (12, 7))
    v = rng.normal(0.0, 1.0, (12, 7))
    check_contract(backend, dtype, z, rng.integers(0, 7, 12), v, sample_weight=rng.uniform(0, 2, 12),
                   class_weight=rng.uniform(0, 2, 7), label_smoothing=1.0 / 3.0, reduction="mean")
    check_contract(backend, dtype, z, rng.dirichlet(np.ones(7), 12), v, label_smoothing=0.07, reduction="sum")


# ----------------------------------------------------------------------------------
# Reductions over many rows


def random_batch(n_rows=2000, n_classes=6, seed=2000):
    rng = np.random.default_rng(seed)
    z = f32(rng.normal(0.0, 3.0, (n_rows, n_classes)) * rng.choice([0.1, 1.0, 10.0], (n_rows, 1)))
    labels = rng.integers(0, n_classes, n_rows)
    labels[rng.random(n_rows) < 0.05] = IGNORE
    soft = f32(rng.dirichlet(np.ones(n_classes), n_rows))
    return rng, z, labels, soft


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_over_2000_rows_is_accurate(backend, dtype):
    rng, z, labels, _ = random_batch()
    check_contract(backend, dtype, z, labels, outputs=("loss", "gradient"), reduction="mean",
                   ignore_index=IGNORE, sample_weight=f32(rng.uniform(0.0, 2.0, len(z))),
                   class_weight=f32(rng.uniform(0.5, 2.0, z.shape[1])), label_smoothing=0.1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_over_2000_rows_is_accurate(backend, dtype):
    rng, z, labels, soft = random_batch()
    check_contract(backend, dtype, z, soft, outputs=("loss",), reduction="sum")
    labels = np.where(labels == IGNORE, 0, labels)
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


@pytest.mark.parametrize("dtype", DTYPES)
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


@pytest.mark.parametrize("dtype", DTYPES)
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


# ----------------------------------------------------------------------------------
# The oracle itself


def test_exact_conditions_agree_with_numerical_derivatives(monkeypatch):
    """exact.py's analytic condition terms equal sum |df/dx| |x| from mpmath.diff of the naive formulas."""
    monkeypatch.setattr(exact, "DENSE_GRADIENT_TERMS", False)
    ctx = exact.ctx
    z = np.array([[1.5, -0.25, 3.0]])
    soft = np.array([[0.25, -0.5, 1.0]])
    v = np.array([[1.0, -2.0, 0.5]])
    w, cw, eps = 0.75, np.array([2.0, -0.5, 1.25]), 0.3
    options = {"sample_weight": np.array([w]), "class_weight": cw, "label_smoothing": eps, "reduction": "mean"}
    results = exact.evaluate(z, soft, v, outputs=("loss", "gradient", "hessian", "hessian_vector_product"),
                             **options)

    def outputs(zz, tt, vv, ww, cc, beta, gamma, denominator):
        m = max(zz)
        e = [ctx.exp(x - m) for x in zz]
        total = ctx.fsum(e)
        s = [x / total for x in e]
        a = [ww * cc[k] * (beta * tt[k] + gamma) for k in range(3)]
        c = ctx.fsum(a)
        lse = m + ctx.log(total)
        sv = ctx.fsum(s[k] * vv[k] for k in range(3))
        values = [ctx.fsum(a[k] * (lse - zz[k]) for k in range(3))]
        values += [c * s[k] - a[k] for k in range(3)]
        values += [c * ((s[i] if i == j else 0) - s[i] * s[j]) for i in range(3) for j in range(3)]
        values += [c * s[k] * (vv[k] - sv) for k in range(3)]
        return [x / denominator for x in values]

    point = {"z": [exact.mpf(x) for x in z[0]], "t": [exact.mpf(x) for x in soft[0]],
             "v": [exact.mpf(x) for x in v[0]], "w": [exact.mpf(w)], "cw": [exact.mpf(x) for x in cw],
             "beta": [1 - exact.mpf(eps)], "gamma": [exact.mpf(eps) / 3], "D": [exact.mpf(w)]}

    def evaluate_at(p):
        return outputs(p["z"], p["t"], p["v"], p["w"][0], p["cw"], p["beta"][0], p["gamma"][0], p["D"][0])

    values = evaluate_at(point)
    conditions = [exact.ZERO] * len(values)
    step = exact.mpf(10) ** -30  # central difference at 80 digits: O(step**2) and O(1e-80 / step) errors
    for name, xs in point.items():
        for k, x in enumerate(xs):
            moved_up = {n: list(vals) for n, vals in point.items()}
            moved_down = {n: list(vals) for n, vals in point.items()}
            moved_up[name][k] = x + step
            moved_down[name][k] = x - step
            for index, (up, down) in enumerate(zip(evaluate_at(moved_up), evaluate_at(moved_down))):
                conditions[index] += abs((up - down) / (2 * step)) * abs(x)
    ours = [results["loss"]] + [results["gradient"]] + [results["hessian"]] + [results["hessian_vector_product"]]
    our_values = np.concatenate([r.value.ravel() for r in ours])
    our_conditions = np.concatenate([r.condition.ravel() for r in ours])
    for mine, theirs in zip(our_values, values):
        assert abs(mine - theirs) <= 1e-40 * (1 + abs(theirs))
    for mine, theirs in zip(our_conditions, conditions):
        assert abs(mine - theirs) <= 1e-20 * (1 + abs(theirs))
