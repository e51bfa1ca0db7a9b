"""Multinomial logistic regression on the digits data by Newton's method.

Fits the 10-class logistic regression of scikit-learn's bundled digits data
(1797 images x 64 pixels, shipped with scikit-learn, no download) with a plain
damped Newton method built on ``softmax_kernels.linear``, and checks that it
reaches the optimum that
``sklearn.linear_model.LogisticRegression(solver="newton-cholesky")`` reaches,
in no more Newton iterations.

The objective is scikit-learn's, divided by C*n so that a gradient tolerance
means the same thing for both solvers:

    f(W, b) = (1/n) sum_i loss(W x_i + b, y_i) + (lambda/2) ||W||^2,
    lambda = 1/(C n)                (the intercept b is not penalised)

i.e. (C sum_i loss + 1/2 ||W||^2) / (C n). ``softmax_kernels.linear`` gives f,
its gradient and its Hessian with respect to coef = [W, b] (K x (d+1)), the
Hessian in scikit-learn's parameter order (that of ``coef.ravel(order="F")``),
assembled from the kernels' accurate per-row Hessians with BLAS.

Run:  python examples/newton_digits.py [--subsample N] [--C C] [--tol TOL] [--repeat R]

On a small or busy machine, OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 gives
steadier timings. examples/newton_synthetic.py runs the same comparison on a
larger generated problem.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import scipy.linalg

import softmax_kernels as sk
import softmax_kernels.linear as linear

# Armijo backtracking as in scikit-learn's NewtonSolver, so that the iteration
# counts of the two solvers measure the same thing.
ARMIJO_SIGMA = 2.0**-11
BACKTRACK_FACTOR = 0.5
MAX_BACKTRACKS = 21


def objective(coef: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float) -> float:
    """f(coef): mean softmax cross-entropy plus (l2/2) ||W||^2 (intercept column excluded)."""
    return float(linear.loss_gradient(coef, X, y, l2=l2)[0])


def newton_step(gradient: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """Solve H step = -g by Cholesky, in the subspace where the intercepts sum to zero.

    The softmax is over-parametrised: adding the same vector to every class's
    parameters leaves every probability unchanged, so each H_i has H_i 1 = 0
    and the data term's Hessian is singular along those directions. The L2
    penalty adds lambda > 0 along every weight direction, but the intercepts
    are not penalised, so H stays singular along e = "all intercepts + 1".
    Since also e^T g = 0 (every row's gradient sums to zero over the classes),
    the Newton system is solvable and its solutions differ by multiples of e;
    adding mu e e^T to H picks the one with e^T step = 0 (take e^T of
    (H + mu e e^T) step = -g: 0 + mu K e^T step = 0), and makes the matrix
    positive definite, so Cholesky works. This keeps the intercepts summing
    to zero, scikit-learn's symmetric parametrisation, without changing f.
    """
    n_classes, n_params = gradient.shape
    # In the order of coef.ravel(order="F"), the intercepts are the last K parameters.
    intercepts = np.arange(n_classes) + n_classes * (n_params - 1)
    # mu = 1/K gives the pinned direction e/|e| the eigenvalue 1 (hessian is ours to change).
    hessian[np.ix_(intercepts, intercepts)] += 1.0 / n_classes
    factor = scipy.linalg.cho_factor(hessian, overwrite_a=True, check_finite=False)
    step = scipy.linalg.cho_solve(factor, gradient.ravel(order="F"), check_finite=False)
    return -step.reshape(gradient.shape, order="F")


def backtracking_line_search(theta, step, value, slope, X, y, l2):
    """Largest t in 1, 1/2, 1/4, ... with Armijo decrease; (new theta, new value, t).

    Near the optimum the decrease falls below the rounding of f itself; a
    step whose change of f is within that rounding is accepted as it is.
    """
    rounding = 16 * np.finfo(np.float64).eps * abs(value)
    t = 1.0
    for _ in range(MAX_BACKTRACKS):
        candidate = theta + t * step
        candidate_value = objective(candidate, X, y, l2)
        change = candidate_value - value
        if change <= ARMIJO_SIGMA * t * slope or abs(change) <= rounding:
            return candidate, candidate_value, t
        t *= BACKTRACK_FACTOR
    raise RuntimeError(f"line search failed: no decrease along the Newton step (slope {slope:.3e})")


def fit_newton(X, y, C=1.0, tol=1e-10, max_iter=100):
    """Fit multinomial logistic regression with intercept by Newton's method.

    Parameters
    ----------
    X : ndarray (n, d)
    y : ndarray (n,) of integer labels 0..K-1, each class present (an absent
        class's unpenalised intercept would run off to -inf)
    C : float
        Inverse L2 strength, as scikit-learn's ``C``.
    tol : float
        Stop when max |gradient of f| <= tol and half the squared Newton
        decrement g^T H^-1 g / 2 <= tol (scikit-learn's two criteria, checked
        at the current point).
    max_iter : int

    Returns
    -------
    W : ndarray (K, d), b : ndarray (K,), n_iter : int (Newton steps taken),
    history : list of dicts with ``objective``, ``grad_max``, ``decrement``, ``step_size``
    per evaluated point.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n_samples, n_features = X.shape
    class_counts = np.bincount(y)
    if np.any(class_counts == 0):
        raise ValueError(f"y: every class in 0..{len(class_counts) - 1} needs a row; "
                         f"missing {np.flatnonzero(class_counts == 0).tolist()}")
    n_classes = len(class_counts)
    l2 = 1.0 / (C * n_samples)

    theta = np.zeros((n_classes, n_features + 1))
    history = []
    step_size = None
    for n_iter in range(max_iter + 1):
        value, gradient, hessian = linear.loss_gradient_hessian(theta, X, y, l2=l2)
        value = float(value)
        step = newton_step(gradient, hessian)
        slope = float(np.vdot(gradient, step))  # = -g^T H^-1 g, the squared Newton decrement
        grad_max = float(np.max(np.abs(gradient)))
        history.append({"objective": value, "grad_max": grad_max, "decrement": -slope, "step_size": step_size})
        if grad_max <= tol and -0.5 * slope <= tol:
            break
        if n_iter == max_iter:
            warnings.warn(f"Newton's method did not converge in {max_iter} iterations", RuntimeWarning,
                          stacklevel=2)
            break
        theta, _, step_size = backtracking_line_search(theta, step, value, slope, X, y, l2)
    # Rounding lets the intercepts drift from summing to zero; re-centre them (f is unchanged).
    intercept = theta[:, -1] - theta[:, -1].mean()
    return theta[:, :-1].copy(), intercept, n_iter, history


def sklearn_objective(W, b, X, y, C):
    """f at (W, b), computed the same way for both solvers' answers."""
    X = np.asarray(X, dtype=np.float64)
    return objective(np.column_stack([W, b]), X, np.asarray(y), 1.0 / (C * X.shape[0]))


def predict_proba(W, b, X):
    return sk.softmax(X @ W.T + b)


def load_standardised_digits(subsample=None, seed=0):
    """Digits features standardised (zero mean, unit variance; constant pixels stay 0), labels."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    if subsample is not None and subsample < X.shape[0]:
        rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], subsample, replace=False))
        X, y = X[rows], y[rows]
    return StandardScaler().fit_transform(X), y


def fit_sklearn(X, y, C, tol, max_iter=100):
    from sklearn.linear_model import LogisticRegression

    # Multinomial is the only multiclass mode for >2 classes since scikit-learn 1.8
    # (multi_class was removed), and the default penalty is L2.
    return LogisticRegression(solver="newton-cholesky", C=C, tol=tol, max_iter=max_iter).fit(X, y)


def best_time(fit, repeat):
    """(result of the last run, fastest wall time of ``repeat`` runs of fit())."""
    seconds = []
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        result = fit()
        seconds.append(time.perf_counter() - start)
    return result, min(seconds)


def compare(X, y, C=1.0, tol=1e-10, repeat=1):
    """Fit both ways; a dict of the two answers, their best-of-``repeat`` timings and their differences."""
    (W, b, n_iter, history), ours_seconds = best_time(lambda: fit_newton(X, y, C=C, tol=tol), repeat)
    model, sklearn_seconds = best_time(lambda: fit_sklearn(X, y, C=C, tol=tol), repeat)

    ours_f = sklearn_objective(W, b, X, y, C)
    sklearn_f = sklearn_objective(model.coef_, model.intercept_, X, y, C)
    ours_p, sklearn_p = predict_proba(W, b, X), model.predict_proba(X)
    return {
        "W": W, "b": b, "n_iter": n_iter, "history": history, "seconds": ours_seconds,
        "model": model, "sklearn_n_iter": int(model.n_iter_[0]), "sklearn_seconds": sklearn_seconds,
        "objective": ours_f, "sklearn_objective": sklearn_f,
        "objective_rel_gap": abs(ours_f - sklearn_f) / abs(sklearn_f),
        "coef_max_diff": float(max(np.max(np.abs(W - model.coef_)), np.max(np.abs(b - model.intercept_)))),
        "proba_max_diff": float(np.max(np.abs(ours_p - sklearn_p))),
        "accuracy": float(np.mean(np.argmax(ours_p, axis=1) == y)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsample", type=int, default=None, help="use N random rows (default: all 1797)")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength, as sklearn's C (default 1)")
    parser.add_argument("--tol", type=float, default=1e-10, help="gradient tolerance of both solvers")
    parser.add_argument("--repeat", type=int, default=3, help="time the best of R fits of each (default 3)")
    args = parser.parse_args(argv)

    X, y = load_standardised_digits(args.subsample)
    print(f"digits: {X.shape[0]} rows x {X.shape[1]} features, {len(np.unique(y))} classes; "
          f"C = {args.C:g}, tol = {args.tol:g}; softmax_kernels backend: {sk.show_config()['backend']}")
    result = compare(X, y, C=args.C, tol=args.tol, repeat=args.repeat)

    print("\nsoftmax_kernels Newton:")
    print(" iter   objective               max|grad|   decrement   step")
    for it, h in enumerate(result["history"]):
        t = "" if h["step_size"] is None else f"{h['step_size']:g}"
        print(f" {it:4d}   {h['objective']:.17g}   {h['grad_max']:.3e}   {h['decrement']:.3e}   {t}")

    print(f"\n{'':26s}{'iterations':>12s}{'best time (s)':>15s}{'objective':>26s}")
    print(f"{'softmax_kernels Newton':26s}{result['n_iter']:12d}{result['seconds']:15.3f}"
          f"{result['objective']:26.17g}")
    print(f"{'sklearn newton-cholesky':26s}{result['sklearn_n_iter']:12d}{result['sklearn_seconds']:15.3f}"
          f"{result['sklearn_objective']:26.17g}")
    print(f"\nrelative objective gap:        {result['objective_rel_gap']:.2e}")
    print(f"max |coefficient difference|:  {result['coef_max_diff']:.2e}")
    print(f"max |probability difference|:  {result['proba_max_diff']:.2e}")
    print(f"training accuracy:             {result['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
