"""The examples/ scripts run and do what they claim (skipped without scikit-learn)."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import softmax_kernels as sk  # noqa: E402
from helpers import example_module  # noqa: E402


def one_thread():
    """BLAS and OpenMP on one thread: on a small shared machine two fits' thread pools
    contending with other work cost far more than they gain (threadpoolctl comes with scikit-learn)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


@pytest.fixture(scope="module")
def newton_digits():
    """examples/newton_digits.py imported as a module, by path."""
    with example_module("newton_digits") as module:
        yield module


@pytest.fixture(scope="module")
def digits_fit(newton_digits):
    """Both fits on 400 standardised digits rows, C = 1 (no warning of either solver allowed)."""
    X, y = newton_digits.load_standardised_digits(subsample=400)
    with warnings.catch_warnings(), one_thread():
        warnings.simplefilter("error")  # a ConvergenceWarning or a fallback to lbfgs fails the test
        result = newton_digits.compare(X, y, C=1.0, tol=1e-10)
    return X, y, result


def test_newton_step_keeps_the_intercepts_summing_to_zero(newton_digits, rng):
    """The pinned Cholesky solve of newton_step solves H step = -g with sum of the intercept steps 0."""
    import softmax_kernels.linear as linear

    X, y = rng.standard_normal((50, 3)), rng.integers(0, 4, 50)
    coef = rng.standard_normal((4, 4))
    _, gradient, hessian = linear.loss_gradient_hessian(coef, X, y, l2=0.1)
    step = newton_digits.newton_step(gradient, hessian.copy())
    np.testing.assert_allclose(hessian @ step.ravel(order="F"), -gradient.ravel(order="F"), atol=1e-10)
    assert abs(step[:, -1].sum()) <= 1e-12


def test_newton_reaches_the_sklearn_optimum(digits_fit):
    _, _, result = digits_fit
    assert result["objective_rel_gap"] <= 1e-8
    assert result["proba_max_diff"] <= 1e-6
    assert result["coef_max_diff"] <= 1e-5


def test_newton_takes_no_more_iterations_than_sklearn(digits_fit):
    _, _, result = digits_fit
    assert 1 <= result["n_iter"] <= result["sklearn_n_iter"]


def test_gradient_vanishes_at_the_newton_solution(digits_fit, newton_digits):
    """The gradient of f, recomputed from scratch at the returned (W, b), is at roundoff level."""
    X, y, result = digits_fit
    W, b = result["W"], result["b"]
    l2 = 1.0 / (1.0 * X.shape[0])
    grad_z = sk.gradient(X @ W.T + b, y, reduction="mean")
    grad_W = grad_z.T @ X + l2 * W
    grad_b = grad_z.sum(axis=0)
    assert max(np.max(np.abs(grad_W)), np.max(np.abs(grad_b))) <= 1e-9
    assert result["history"][-1]["grad_max"] <= 1e-10
    # The intercepts keep scikit-learn's symmetric parametrisation.
    assert abs(b.sum()) <= 1e-12


def test_main_prints_the_comparison(newton_digits, capsys):
    with one_thread():
        assert newton_digits.main(["--subsample", "200", "--C", "0.5", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "sklearn newton-cholesky" in out and "relative objective gap" in out


def test_synthetic_newton_reaches_the_sklearn_optimum():
    with example_module("newton_synthetic") as synthetic:
        X, y = synthetic.make_problem(n_rows=3000, n_features=8, n_classes=4)
        with warnings.catch_warnings(), one_thread():
            warnings.simplefilter("error")
            result = synthetic.newton_digits.compare(X, y, C=1.0, tol=1e-10)
    assert result["objective_rel_gap"] <= 1e-12
    assert result["n_iter"] <= result["sklearn_n_iter"]


def test_exact_leaf_newton_steps_beat_the_diagonal_ones():
    pytest.importorskip("scipy")
    with example_module("boosting_newton_leaves") as boosting:
        results = boosting.main(["--rows", "20000", "--classes", "5", "--bins", "3"])
    exact_iterations, exact_start, exact_after = results["exact Hessian (hessian_sum + dppsv)"]
    diagonal_iterations, diagonal_start, diagonal_after = results["diagonal Hessian"]
    assert exact_iterations < diagonal_iterations
    assert abs(exact_start - diagonal_start) <= 1e-12  # the same base score, reached faster
    assert exact_after < diagonal_after < exact_start

