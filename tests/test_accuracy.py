"""The accuracy contract against exact mpmath results (tests/exact.py), on hard rows.

For every output element f: |computed - exact| <= 4 u (|exact| + sum_x |df/dx| |x| + tiny),
u = 2**-53 (float64) or 2**-24 (float32), on rows designed to break careless kernels:
confident rows ([50, 0, -3]), ties, -inf masks, huge and tiny logits, underflowing
exponentials lifted by weights, K = 1, 2 and 1000, and every option and reduction. Every
output is checked through every operation that returns it and every Hessian layout
(helpers.check_contract). Long sums (K = 100 000, up to a million rows) are
test_accuracy_of_sums.py's.

Most inputs are exactly representable in float32, so one exact evaluation serves both
dtypes; exact results are cached per input.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mpmath")

import exact  # noqa: E402
from helpers import FLOATS, IGNORE_INDEX, cast_inputs, check_contract, every_output, f32  # noqa: E402
from softmax_kernels._reduction import REDUCTIONS  # noqa: E402

INF = np.inf


# ----------------------------------------------------------------------------------
# A confident row, and proof that the check has teeth


CONFIDENT_ROW = np.array([[50.0, 0.0, -3.0]])


@pytest.mark.parametrize("dtype", FLOATS)
def test_confident_row_loss_is_2e_22_not_zero(backend, dtype):
    reference = check_contract(backend, dtype, CONFIDENT_ROW, np.array([0]), v=np.array([[1.0, -2.0, 0.5]]))
    true_loss = float(reference["loss"].value[0])
    assert true_loss == pytest.approx(2.0216880e-22, rel=1e-6)
    computed = backend.loss(CONFIDENT_ROW.astype(dtype), np.array([0]))
    assert computed[0] == pytest.approx(true_loss, rel=8 * exact.unit_roundoff(dtype))
    gradient = backend.gradient(CONFIDENT_ROW.astype(dtype), np.array([0]))
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
    reference = exact.evaluate(CONFIDENT_ROW, np.array([0]), outputs=("loss", "gradient"))
    naive_loss, naive_grad = naive_loss_gradient(CONFIDENT_ROW, np.array([0]))
    assert naive_loss[0] == 0.0 and naive_grad[0, 0] == 0.0
    for computed, name in ((naive_loss, "loss"), (naive_grad, "gradient")):
        with pytest.raises(AssertionError, match="accuracy contract violated"):
            exact.assert_within_contract(computed, reference[name], dtype=np.float64)
    # ... and so is a result that is merely one percent off.
    with pytest.raises(AssertionError, match="ratio"):
        exact.assert_within_contract(reference["loss"].hi * 1.01, reference["loss"], dtype=np.float64)


def test_torch_cross_entropy_violates_the_contract_on_the_confident_row():
    torch = pytest.importorskip("torch")
    z = torch.tensor(CONFIDENT_ROW, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(z, torch.tensor([0]), reduction="sum")
    loss.backward()
    reference = exact.evaluate(CONFIDENT_ROW, np.array([0]), outputs=("loss", "gradient"))
    with pytest.raises(AssertionError):
        exact.assert_within_contract(np.array([loss.item()]), reference["loss"], dtype=np.float64)
    with pytest.raises(AssertionError):
        exact.assert_within_contract(z.grad.numpy(), reference["gradient"], dtype=np.float64)


def test_scikit_learn_multinomial_loss_violates_the_contract_on_the_confident_row():
    loss_module = pytest.importorskip("sklearn._loss.loss")
    half_multinomial = loss_module.HalfMultinomialLoss(n_classes=3)
    reference = exact.evaluate(CONFIDENT_ROW, np.array([0]), outputs=("loss", "gradient"))
    loss = half_multinomial.loss(y_true=np.array([0.0]), raw_prediction=CONFIDENT_ROW)
    gradient = half_multinomial.gradient(y_true=np.array([0.0]), raw_prediction=CONFIDENT_ROW)
    with pytest.raises(AssertionError):
        exact.assert_within_contract(loss, reference["loss"], dtype=np.float64)
    with pytest.raises(AssertionError):
        exact.assert_within_contract(gradient, reference["gradient"], dtype=np.float64)


# ----------------------------------------------------------------------------------
# Hard rows


GAPS = (10, 20, 37, 50, 100, 300, 700, 740, 745, 760, 1000)
CONFIDENT = f32([[g, 0.0, -3.0] for g in GAPS] + [[-1000.0, -1050.0, -1053.0], [0.0, -40.0, -40.0]])
CONFIDENT_V = np.tile(f32([1.0, -2.0, 0.5]), (len(CONFIDENT), 1))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("label", [0, 1], ids=["label_on_the_winner", "label_on_a_loser"])
def test_loss_of_confident_row_keeps_all_digits(backend, dtype, label):
    labels = np.full(len(CONFIDENT), label)
    check_contract(backend, dtype, CONFIDENT, labels, CONFIDENT_V)


@pytest.mark.parametrize("dtype", FLOATS)
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


@pytest.mark.parametrize("dtype", FLOATS)
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


@pytest.mark.parametrize("n_classes", [10, 20], ids=["short_rows", "long_rows"])
def test_float32_gradient_scale_past_float_range_keeps_the_contract(backend, n_classes):
    """float32 gradients multiply e_k by c / S rounded to float, except where c / S overflows
    float: w cw_y = 1e39 with the label on the maximum keeps every g_k finite (e_k <= e^-3),
    and rows with w = 1 share the blocks, so each row decides for itself."""
    rng = np.random.default_rng(11)
    n_rows = 48
    z = f32(np.concatenate([np.zeros((n_rows, 1)), rng.uniform(-12.0, -3.0, (n_rows, n_classes - 1))], axis=1))
    weights = f32(np.where(np.arange(n_rows) % 3 == 0, 1.0, 1e20))
    class_weight = f32(np.full(n_classes, 1e19))
    check_contract(backend, np.float32, z, np.zeros(n_rows, dtype=np.int64), sample_weight=weights,
                   class_weight=class_weight, outputs=("loss", "gradient"))


@pytest.mark.parametrize("n_classes", [10, 20, 300])
def test_float32_labels_gradient_has_the_same_bits_through_every_operation(backend, n_classes):
    """The labels path (gradient, loss_gradient) and the paths of the Hessian calls multiply
    e_k by c / S alike: in float where c / S fits float, in double where it does not (w = 1e20)
    and for extreme rows (logits 200 apart), next to ignored and invalid rows."""
    rng = np.random.default_rng(12)
    n_rows = 96
    z = rng.normal(0.0, 2.0, (n_rows, n_classes)).astype(np.float32)
    z[5, 1] = z[6, 0] = -200.0
    z[7, 2] = np.nan
    y = rng.integers(0, n_classes, n_rows)
    y[8] = IGNORE_INDEX
    z[[9, 10, 11], y[9:12]] = 20.0  # label on the maximum: c / S past float's range leaves g finite
    weights = np.where(np.isin(np.arange(n_rows), [9, 10, 11]), 1e20, rng.uniform(0.5, 2.0, n_rows)).astype(np.float32)
    options = dict(sample_weight=weights, class_weight=np.full(n_classes, 1e19, np.float32), ignore_index=IGNORE_INDEX)
    gradients = {key: value for key, value in every_output(backend, z, y, **options).items() if key.kind == "gradient"}
    assert len({key.operation for key in gradients}) == 4  # gradient, loss_gradient and the two Hessian calls
    first = next(iter(gradients.values()))
    assert first.dtype == np.float32
    assert np.isfinite(first[9:12]).all() and np.isnan(first[7]).all() and not first[8].any()
    for key, value in gradients.items():
        np.testing.assert_array_equal(value, first, err_msg=str(key))


# Tiny sample weights push c s_k (and the per-row loss) below the normal range although the
# results are normal numbers: "mean" divides by D = w again, and v - sigma scales c s_k up.
TINY_WEIGHT_ROWS = {
    np.float64: [([0.0, -300.0], 1e-200), ([0.0, -30.0], 1e-300), ([0.0, -500.0], 1e-95), ([3.0, 0.0], 1e-310)],
    np.float32: [([0.0, -80.0], 1e-38), ([0.0, -30.0], 1e-30), ([3.0, 0.0], 1e-44)],
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
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


@pytest.mark.parametrize("dtype", FLOATS)
def test_tied_logits_meet_the_contract(backend, dtype):
    check_contract(backend, dtype, TIES, np.array([0, 1, 2, 3, 0, 3]), TIES_V)
    check_contract(backend, dtype, TIES, np.array([3, 2, 0, 1, 3, 0]), TIES_V, label_smoothing=0.25,
                   class_weight=f32([1.0, 2.0, 3.0, 4.0]))


MASKED = np.array([[-INF, 0.0, 1.0, 2.0], [0.0, -INF, -INF, 5.0], [-INF, -INF, 3.0, -INF],
                   [-INF, 50.0, 0.0, -3.0], [-INF, -INF, -1e4, 1e4]])
MASKED_V = f32([[1.0, 2.0, -1.0, 0.5]] * 5)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masked_classes_meet_the_contract(backend, dtype, reduction):
    labels = np.array([2, 3, 2, 1, 3])
    check_contract(backend, dtype, MASKED, labels, MASKED_V, reduction=reduction)
    check_contract(backend, dtype, MASKED, labels, MASKED_V, reduction=reduction,
                   sample_weight=f32([1.0, 0.5, 2.0, 3.0, 0.0]), class_weight=f32([0.0, 0.0, 1.0, 2.0]))
    # soft targets with zero weight on every masked class: finite losses
    soft = f32([[0.0, 0.25, 0.25, 0.5], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, -0.5, 0.5],
                [0.0, 0.0, 0.5, 0.5]])
    check_contract(backend, dtype, MASKED, soft, MASKED_V, reduction=reduction)


@pytest.mark.parametrize("dtype", FLOATS)
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


@pytest.mark.parametrize("dtype", FLOATS)
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


@pytest.mark.parametrize("dtype", FLOATS)
def test_tiny_logits_meet_the_contract(backend, dtype):
    z = TINY_FLOAT64 if dtype == np.float64 else TINY_FLOAT32
    v = f32([[1.0, -1.0, 2.0, 0.5], [1e-30, 3.0, -2.0, 0.0]])
    check_contract(backend, dtype, z, np.array([0, 3]), v)
    check_contract(backend, dtype, z, np.array([1, 2]), v, label_smoothing=0.3, sample_weight=f32([2.0, 0.5]),
                   reduction="mean")
    check_contract(backend, dtype, z, f32([[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0]]), v, reduction="sum")


SINGLE_CLASS = f32([[3.0], [-1e4], [0.0], [1e30]])


@pytest.mark.parametrize("dtype", FLOATS)
def test_single_class_outputs_are_exactly_zero(backend, dtype):
    z, v = SINGLE_CLASS, f32([[1.0], [2.0], [-3.0], [0.5]])
    for y, options in ((np.zeros(4, dtype=np.int64), {}),
                       (np.zeros(4, dtype=np.int64), {"label_smoothing": 0.5, "class_weight": f32([2.0])}),
                       (f32([[0.7], [2.0], [-1.0], [0.0]]), {"sample_weight": f32([1.0, 2.0, 3.0, 4.0])})):
        check_contract(backend, dtype, z, y, v, **options)
        z_cast = z.astype(dtype)
        loss, grad, hess = backend.loss_gradient_hessian(z_cast, cast_inputs(y, dtype), **options)
        assert not loss.any() and not grad.any() and not hess.any()
    assert (backend.softmax(z.astype(dtype)) == 1).all()
    assert not backend.log_softmax(z.astype(dtype)).any()


TWO_CLASSES = f32([[0.0, 40.0], [40.0, 0.0], [0.0, 1e-8], [-1e4, 1e4], [0.0, 0.0], [-INF, 3.0], [7.0, 7.5]])


@pytest.mark.parametrize("dtype", FLOATS)
def test_two_classes_meet_the_contract(backend, dtype):
    v = f32([[1.0, -1.0]] * 7)
    check_contract(backend, dtype, TWO_CLASSES, np.array([0, 0, 1, 0, 1, 1, 0]), v)
    check_contract(backend, dtype, TWO_CLASSES, np.array([1, 0, 0, 1, 0, 1, 1]), v, class_weight=f32([3.0, 0.5]),
                   reduction="mean")


def thousand_classes():
    rng = np.random.default_rng(1000)
    z = f32(rng.normal(0.0, 4.0, (3, 1000)))
    z[1, 17] = np.float32(z[1].max() + 60.0)  # confident
    z[2, rng.permutation(1000)[:500]] = -INF  # half masked
    z[2, 3] = 2.0
    v = f32(rng.normal(0.0, 1.0, (3, 1000)))
    return z, np.array([5, 17, 3]), v


@pytest.mark.parametrize("dtype", FLOATS)
def test_thousand_classes_meet_the_contract(backend, dtype):
    z, labels, v = thousand_classes()
    check_contract(backend, dtype, z, labels, v)
    rng = np.random.default_rng(1001)
    soft = f32(rng.dirichlet(np.full(1000, 0.1), 3))
    soft[2][z[2] == -INF] = 0.0  # no weight on masked classes: finite losses
    check_contract(backend, dtype, z, soft, v, class_weight=f32(rng.uniform(0.5, 2.0, 1000)),
                   sample_weight=f32([1.0, 2.5, 0.5]), label_smoothing=0.0, reduction="mean")


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
    "labels_with_ignored_row": np.array([0, 1, 3, 2, IGNORE_INDEX, 4]),
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


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weights", list(COMBO_WEIGHTS))
@pytest.mark.parametrize("targets", list(COMBO_TARGETS))
def test_every_option_combination_meets_the_contract(backend, dtype, targets, weights, reduction):
    options = dict(COMBO_WEIGHTS[weights], reduction=reduction)
    if targets == "labels_with_ignored_row":
        options["ignore_index"] = IGNORE_INDEX
    check_contract(backend, dtype, COMBO_Z, COMBO_TARGETS[targets], COMBO_V, **options)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("sample_weight", [None, "positive", "signed"])
def test_hessian_without_targets_meets_the_contract(backend, dtype, reduction, sample_weight):
    weights = {None: None, "positive": f32([0.5, 2.0, 1.0, 0.25, 3.0, 1.5]),
               "signed": f32([1.0, -0.5, 0.0, 2.0, -1.0, 0.75])}[sample_weight]
    options = {"reduction": reduction}
    if weights is not None:
        options["sample_weight"] = weights
    check_contract(backend, dtype, COMBO_Z, None, COMBO_V,
                   outputs=("hessian", "hessian_diagonal", "hessian_vector_product"), **options)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("rows", ["confident", "ties", "masked", "huge", "tiny", "two_classes", "combo",
                                  "thousand_classes"])
def test_softmax_and_log_softmax_meet_the_contract(backend, dtype, rows):
    z = {"confident": CONFIDENT, "ties": TIES, "masked": MASKED, "two_classes": TWO_CLASSES, "combo": COMBO_Z,
         "huge": HUGE_BOTH if dtype == np.float32 else np.concatenate([HUGE_BOTH, HUGE_FLOAT64]),
         "tiny": TINY_FLOAT64 if dtype == np.float64 else TINY_FLOAT32,
         "thousand_classes": thousand_classes()[0]}[rows]
    check_contract(backend, dtype, z, outputs=("softmax", "log_softmax"))


# Rows with a logit just beyond where the kernels' cheaper exp flushes its result to 0 (z - m
# below -87 in float32, -708 in float64): those rows (short rows: their whole block) take the
# exp that keeps subnormal results; rows within the bound, and rows masked by -inf or by a
# finite logit so low that exp is 0 either way, keep the cheaper one.
FLUSH_GAPS = {np.float32: [-86.875, -87.0, -87.125, -90.0, -100.0, -103.875, -104.5],
              np.float64: [-707.875, -708.0, -708.125, -720.0, -745.0, -745.25, -746.0]}


def flush_boundary_rows(dtype, n_classes):
    base = (np.arange(n_classes) % 7 - 5.0)  # integers in [-5, 1]
    base[0] = 3.0
    gaps = FLUSH_GAPS[np.float32] + (FLUSH_GAPS[np.float64] if dtype == np.float64 else [])
    rows = []
    for gap in gaps:
        row = base.copy()
        row[n_classes // 2] = 3.0 + gap
        rows.append(row)
    masked, finite_mask = base.copy(), base.copy()
    masked[1] = -INF
    finite_mask[1] = -1e30
    return np.array(rows + [base, masked, finite_mask])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n_classes", [5, 40], ids=["short_rows", "long_rows"])
def test_rows_past_the_flush_bound_keep_their_small_probabilities(backend, dtype, n_classes):
    z = flush_boundary_rows(dtype, n_classes)
    check_contract(backend, dtype, z, outputs=("softmax", "log_softmax"))
    if dtype == np.float32:  # the row at -100: its probability exp(-103) is a float32 subnormal
        s = backend.softmax(z.astype(dtype))
        assert 0.0 < s[4, n_classes // 2] < np.finfo(np.float32).tiny


@pytest.mark.parametrize("dtype", FLOATS)
def test_full_mantissa_inputs_meet_the_contract(backend, dtype):
    """Random float64 inputs that float32 cannot hold (float32 gets its own exact values)."""
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 10.0, (12, 7))
    v = rng.normal(0.0, 1.0, (12, 7))
    check_contract(backend, dtype, z, rng.integers(0, 7, 12), v, sample_weight=rng.uniform(0, 2, 12),
                   class_weight=rng.uniform(0, 2, 7), label_smoothing=1.0 / 3.0, reduction="mean")
    check_contract(backend, dtype, z, rng.dirichlet(np.ones(7), 12), v, label_smoothing=0.07, reduction="sum")


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
