"""softmax_kernels.linear: the linear softmax model's loss, gradient, parameter Hessian and
Hessian-vector products equal scikit-learn's, are accurate where its h = p (1 - p) is 0, and
take dense or sparse X of either float dtype; bad input raises and names the argument."""

import numpy as np
import pytest

import softmax_kernels as sk
import softmax_kernels.linear as linear

pytest.importorskip("sklearn")
from sklearn._loss.loss import HalfMultinomialLoss  # noqa: E402
from sklearn.linear_model._linear_loss import LinearModelLoss  # noqa: E402


def _problem(rng, n_rows=300, n_features=6, n_classes=4, scale=1.0):
    X = rng.standard_normal((n_rows, n_features))
    y = rng.integers(0, n_classes, n_rows)
    coef = scale * rng.standard_normal((n_classes, n_features + 1))
    return X, y, coef


def _sklearn(coef, X, y, fit_intercept, sample_weight, l2):
    model = LinearModelLoss(HalfMultinomialLoss(n_classes=coef.shape[0]), fit_intercept)
    coef = coef if fit_intercept else coef[:, :-1]
    loss = model.loss(coef, X, y.astype(float), sample_weight, l2_reg_strength=l2)
    gradient, hessian, _ = model.gradient_hessian(coef, X, y.astype(float), sample_weight, l2_reg_strength=l2)
    return loss, gradient, hessian


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_loss_gradient_and_hessian_equal_scikit_learns(fit_intercept, weighted, n_classes, rng):
    X, y, coef = _problem(rng, n_classes=n_classes)
    coef = coef if fit_intercept else coef[:, :-1]
    sample_weight = rng.random(len(y)) + 0.5 if weighted else None
    loss, gradient, hessian = linear.loss_gradient_hessian(coef, X, y, fit_intercept=fit_intercept,
                                                           sample_weight=sample_weight, l2=0.3)
    expected = _sklearn(np.column_stack([coef, np.zeros(n_classes)]) if not fit_intercept else coef, X, y,
                        fit_intercept, sample_weight, 0.3)
    np.testing.assert_allclose(loss, expected[0], rtol=1e-13)
    np.testing.assert_allclose(gradient, expected[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hessian, expected[2], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(hessian, hessian.T)
    loss_only, gradient_only = linear.loss_gradient(coef, X, y, fit_intercept=fit_intercept,
                                                    sample_weight=sample_weight, l2=0.3)
    assert loss_only == loss
    np.testing.assert_array_equal(gradient_only, gradient)


@pytest.mark.parametrize("layout", ["packed_upper", "packed_lower"])
def test_packed_hessian_is_lapack_packed_storage_of_the_full_one(layout, rng):
    X, y, coef = _problem(rng)
    full = linear.hessian(coef, X, y, l2=0.1)
    np.testing.assert_array_equal(linear.hessian(coef, X, y, l2=0.1, layout=layout), sk.pack(full, layout))


def test_hessian_vector_product_is_the_hessian_times_vec_v(rng):
    X, y, coef = _problem(rng, n_rows=700)  # more than one block of rows
    V = rng.standard_normal(coef.shape)
    sample_weight = rng.random(700)
    full = linear.hessian(coef, X, y, l2=0.2, sample_weight=sample_weight)
    product = linear.hessian_vector_product(coef, X, V, y, l2=0.2, sample_weight=sample_weight)
    assert product.shape == coef.shape
    np.testing.assert_allclose(product.ravel(order="F"), full @ V.ravel(order="F"), rtol=1e-10, atol=1e-13)


def test_hessian_without_targets_is_that_of_labels_without_options(rng):
    X, y, coef = _problem(rng)
    np.testing.assert_allclose(linear.hessian(coef, X), linear.hessian(coef, X, y), rtol=1e-14, atol=1e-16)


def test_confident_rows_keep_the_hessian_where_probabilities_round_to_one(rng):
    """Every row 40 logits in favour of class 0: scikit-learn's h = p (1 - p) of that class is 0
    (p rounds to 1), the exact one about 2 exp(-40). Against an mpmath assembly: within
    (rows + 4) u sum |terms| (the BLAS bound for one block)."""
    exact = pytest.importorskip("exact")
    X, y, coef = _problem(rng, n_rows=40, n_features=3, n_classes=3)
    coef *= 0.0
    coef[0, -1] = 40.0  # the intercept of class 0
    hessian = linear.hessian(coef, X, y)
    _, sklearn_hessian, _ = LinearModelLoss(HalfMultinomialLoss(n_classes=3), True).gradient_hessian(
        coef, X, y.astype(float), None)
    x1 = np.column_stack([X, np.ones(len(y))])
    per_row = exact.hessian(x1 @ coef.T, y, sample_weight=np.full(len(y), 1.0 / len(y)))
    n_classes, size = 3, 12
    expected = np.empty((size, size), dtype=object)
    scale = np.empty_like(expected)
    for i in range(size):
        for j in range(size):
            (a, k), (b, l) = divmod(i, n_classes), divmod(j, n_classes)
            terms = [per_row.value[r, k, l] * exact.mpf(x1[r, a]) * exact.mpf(x1[r, b]) for r in range(len(y))]
            expected[i, j] = sum(terms, exact.ZERO)
            scale[i, j] = sum((abs(t) for t in terms), exact.ZERO)
    exact.assert_within_contract(hessian, expected, scale, factor=len(y) + 4, what="linear Hessian")
    class_0 = np.arange(0, size, n_classes)
    assert (sklearn_hessian[np.ix_(class_0, class_0)] == 0).all()
    assert (np.abs(hessian[np.ix_(class_0, class_0)]).max() > 0)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_x_equals_dense_x(fmt, rng):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    X, y, coef = _problem(rng, n_rows=600)
    X[rng.random(X.shape) < 0.6] = 0.0
    sparse = scipy_sparse.csr_matrix(X) if fmt == "csr" else scipy_sparse.csc_matrix(X)
    V = rng.standard_normal(coef.shape)
    for dense_result, sparse_result in zip(
        linear.loss_gradient_hessian(coef, X, y, l2=0.1), linear.loss_gradient_hessian(coef, sparse, y, l2=0.1)
    ):
        np.testing.assert_allclose(sparse_result, dense_result, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(linear.hessian_vector_product(coef, sparse, V, y),
                               linear.hessian_vector_product(coef, X, V, y), rtol=1e-14, atol=1e-16)


def test_float32_x_computes_in_float32_within_its_bound(rng):
    X, y, coef = _problem(rng, n_rows=2000)
    loss32, gradient32, hessian32 = linear.loss_gradient_hessian(coef.astype(np.float32), X.astype(np.float32), y)
    assert loss32.dtype == gradient32.dtype == hessian32.dtype == np.float32
    _, _, hessian64 = linear.loss_gradient_hessian(coef.astype(np.float32).astype(np.float64),
                                                   X.astype(np.float32).astype(np.float64), y)
    u = 2.0**-24
    scale = linear.hessian(np.abs(coef.astype(np.float32)), np.abs(X.astype(np.float32)).astype(np.float64), y)
    bound = (linear.BLOCK_ROWS + 2000 / linear.BLOCK_ROWS + 4) * u * np.abs(scale)
    assert (np.abs(hessian32 - hessian64) <= bound + 1e-30).all()


def test_the_reference_backend_gives_the_same_results(monkeypatch, rng):
    X, y, coef = _problem(rng, n_rows=600)
    compiled = linear.loss_gradient_hessian(coef, X, y, l2=0.1)
    for name in ("loss_gradient", "loss_gradient_hessian", "hessian", "hessian_vector_product"):
        monkeypatch.setattr(sk, name, getattr(sk.reference, name))
    monkeypatch.setattr(sk, "BACKEND", "numpy")
    for reference_result, compiled_result in zip(linear.loss_gradient_hessian(coef, X, y, l2=0.1), compiled):
        np.testing.assert_allclose(reference_result, compiled_result, rtol=1e-13, atol=1e-16)


BAD_CALLS = [
    (lambda X, y, c: linear.loss_gradient(c[:, :-2], X, y), ValueError, "coef: expected shape (n_classes, 7)"),
    (lambda X, y, c: linear.loss_gradient(c, X[:, :-1], y), ValueError, "coef: expected shape (n_classes, 6)"),
    (lambda X, y, c: linear.loss_gradient(c, X, y, fit_intercept=False), ValueError, "coef: expected shape"),
    (lambda X, y, c: linear.loss_gradient(c, X[0], y), ValueError, "X: expected a 2-D array"),
    (lambda X, y, c: linear.loss_gradient(c, np.where(X > 2, np.nan, X), y), ValueError, "X: expected finite"),
    (lambda X, y, c: linear.loss_gradient(np.full_like(c, np.inf), X, y), ValueError, "coef: expected finite"),
    (lambda X, y, c: linear.loss_gradient(c, X, y, l2=-1.0), ValueError, "l2: expected a float >= 0"),
    (lambda X, y, c: linear.loss_gradient(c, X, y, l2="big"), TypeError, "l2: expected a float >= 0"),
    (lambda X, y, c: linear.loss_gradient(c, X, y[:-1]), ValueError, "y: expected labels of shape (300,)"),
    (lambda X, y, c: linear.loss_gradient(c, X, y + 4), ValueError, "y: expected labels in [0, 4)"),
    (lambda X, y, c: linear.loss_gradient(c, X, y.astype(float)), TypeError, "y: labels must have an integer"),
    (lambda X, y, c: linear.loss_gradient(c, X, None), ValueError, "y: expected labels"),
    (lambda X, y, c: linear.loss_gradient(c, X, y, sample_weight=np.ones(5)), ValueError, "sample_weight: expected shape"),
    (lambda X, y, c: linear.loss_gradient(c, X, y, fit_intercept=1), TypeError, "fit_intercept: expected a bool"),
    (lambda X, y, c: linear.hessian(c, X, y, layout="diagonal"), ValueError, "layout: expected one of"),
    (lambda X, y, c: linear.hessian(c, X, class_weight=np.ones(4)), ValueError, "class_weight: only meaningful"),
    (lambda X, y, c: linear.hessian_vector_product(c, X, c[:, :-1], y), ValueError, "V: expected coef's shape"),
    (lambda X, y, c: linear.hessian_vector_product(c, X, c.astype(complex), y), TypeError, "V: expected real"),
]


@pytest.mark.parametrize("call, error, fragment", BAD_CALLS)
def test_bad_input_raises_and_names_the_argument(call, error, fragment, rng):
    X, y, coef = _problem(rng)
    with pytest.raises(error) as raised:
        call(X, y, coef)
    assert fragment in str(raised.value)
