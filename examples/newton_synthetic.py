"""Newton's method for multinomial logistic regression on a larger generated problem.

The comparison of examples/newton_digits.py (the same solver on ``softmax_kernels.linear``,
against ``LogisticRegression(solver="newton-cholesky")``) on N rows of d standard normal
features and K classes drawn from a random linear softmax model, generated in the script
(default 100,000 x 50, K = 10). Both run on one thread (threadpoolctl, which comes with
scikit-learn, limits BLAS and OpenMP).

Run:  python examples/newton_synthetic.py [--rows N] [--features D] [--classes K] [--C C] [--tol TOL]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import newton_digits  # noqa: E402  (the solver and the comparison)


def make_problem(n_rows=100_000, n_features=50, n_classes=10, seed=0):
    """Features ~ N(0, 1); labels drawn from softmax(W x + b) with W ~ N(0, 1/d), b ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features))
    logits = X @ (rng.standard_normal((n_classes, n_features)) / np.sqrt(n_features)).T
    logits += rng.standard_normal(n_classes)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    y = (probabilities.cumsum(axis=1) < rng.random((n_rows, 1))).sum(axis=1)
    return X, np.minimum(y, n_classes - 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength, as sklearn's C (default 1)")
    parser.add_argument("--tol", type=float, default=1e-10, help="gradient tolerance of both solvers")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    X, y = make_problem(args.rows, args.features, args.classes)
    print(f"synthetic: {X.shape[0]} rows x {X.shape[1]} features, {args.classes} classes; "
          f"C = {args.C:g}, tol = {args.tol:g}; one thread")
    with threadpool_limits(limits=1):
        result = newton_digits.compare(X, y, C=args.C, tol=args.tol, repeat=1)
    print(f"\n{'':26s}{'iterations':>12s}{'time (s)':>12s}{'objective':>26s}")
    print(f"{'softmax_kernels Newton':26s}{result['n_iter']:12d}{result['seconds']:12.3f}"
          f"{result['objective']:26.17g}")
    print(f"{'sklearn newton-cholesky':26s}{result['sklearn_n_iter']:12d}{result['sklearn_seconds']:12.3f}"
          f"{result['sklearn_objective']:26.17g}")
    print(f"\nspeed-up: {result['sklearn_seconds'] / result['seconds']:.1f}x; "
          f"relative objective gap {result['objective_rel_gap']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
