"""Exact multiclass Newton steps for gradient boosting, from summed Hessians.

A boosting round for K classes fits, in each leaf, the K values that lower the summed loss of
the leaf's rows; a Newton step solves (sum_i H_i) delta = -sum_i g_i there. XGBoost and
LightGBM use only the diagonal of H_i (scaled), so their leaf values and the starting
intercepts ("base score") converge slowly where the classes interact.
``softmax_kernels.hessian_sum(z, y, groups=leaf)`` gives every leaf's exact K x K Hessian in
LAPACK packed storage in one pass, without forming the per-row Hessians, and
``scipy.linalg.lapack.dppsv`` solves each leaf's system from it.

1. The base score: the K intercepts b minimising the mean loss of the constant model z = b,
   by Newton's method with the exact Hessian, then with the diagonal one (the same
   line-search-free iteration), counting iterations to the same gradient tolerance.
2. One round of leaf values on a fixed partition of the rows into leaves (bins of two
   features), with the exact and the diagonal Hessian: the loss after each.

The softmax Hessian is singular along (1, ..., 1) (adding a constant to every logit changes
nothing), so each system gets a small ridge lambda (as the boosting libraries' L2 on leaf
values) and the base-score iteration keeps the intercepts summing to zero.

Run:  python examples/boosting_newton_leaves.py [--rows N] [--classes K] [--leaves L]
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.linalg.lapack

import softmax_kernels as sk


def packed_identity(n_classes: int) -> np.ndarray:
    """The identity in packed upper storage."""
    return sk.pack(np.eye(n_classes))


def solve_packed(packed_hessian: np.ndarray, gradient: np.ndarray, ridge: float) -> np.ndarray:
    """-(H + ridge I)^-1 g by dppsv (Cholesky of the packed matrix)."""
    n_classes = gradient.shape[-1]
    step, info = scipy.linalg.lapack.dppsv(n_classes, packed_hessian + ridge * packed_identity(n_classes),
                                           -gradient.reshape(n_classes, 1))
    if info != 0:
        raise np.linalg.LinAlgError(f"dppsv: the leaf's Hessian is not positive definite (info {info})")
    return step[:, 0]


def base_score(y, n_classes, exact=True, tol=1e-12, max_iter=1000):
    """Intercepts b minimising mean loss(b, y_i), by Newton steps; (b, iterations)."""
    n_rows = len(y)
    b = np.zeros(n_classes)
    for iteration in range(1, max_iter + 1):
        z = np.broadcast_to(b, (n_rows, n_classes))
        gradient = sk.gradient(z, y, reduction="mean").sum(axis=0)
        if np.max(np.abs(gradient)) <= tol:
            return b, iteration - 1
        if exact:
            # H + (1/K) 1 1^T: the step keeps sum(b) = 0 (see examples/newton_digits.py).
            pinned = sk.hessian_sum(z, y, reduction="mean") + 1.0 / n_classes
            b = b + solve_packed(pinned, gradient, 0.0)
        else:
            b = b - gradient / sk.hessian_diagonal(z, y, reduction="mean").sum(axis=0)
            b -= b.mean()
    return b, max_iter


def leaf_round(z, y, leaves, n_leaves, exact, ridge=1e-3):
    """One round of leaf values: every row's logits moved by its leaf's Newton step."""
    n_classes = z.shape[1]
    gradient_sums = np.zeros((n_leaves, n_classes))
    np.add.at(gradient_sums, leaves, sk.gradient(z, y, reduction="mean"))
    if exact:
        hessians = sk.hessian_sum(z, y, groups=leaves, n_groups=n_leaves, reduction="mean")
    else:  # the diagonal only, as a packed diagonal matrix
        diagonals = np.zeros((n_leaves, n_classes))
        np.add.at(diagonals, leaves, sk.hessian_diagonal(z, y, reduction="mean"))
        hessians = np.zeros((n_leaves, n_classes * (n_classes + 1) // 2))
        hessians[:, packed_identity(n_classes) == 1] = diagonals
    values = np.array([solve_packed(hessians[leaf], gradient_sums[leaf], ridge) for leaf in range(n_leaves)])
    return z + values[leaves]


def make_problem(n_rows, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, 2))
    true_logits = np.column_stack([np.sin(3 * X[:, 0] + k) + X[:, 1] * (k % 3 - 1) for k in range(n_classes)])
    true_logits += rng.standard_normal(n_classes) * 2  # unbalanced classes
    p = np.exp(true_logits - true_logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.minimum((p.cumsum(axis=1) < rng.random((n_rows, 1))).sum(axis=1), n_classes - 1)
    return X, y


def leaves_of(X, n_bins):
    """Leaves: the cells of an n_bins x n_bins grid of the two features' quantiles."""
    edges = [np.quantile(X[:, j], np.linspace(0, 1, n_bins + 1)[1:-1]) for j in range(2)]
    return np.searchsorted(edges[0], X[:, 0]) * n_bins + np.searchsorted(edges[1], X[:, 1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--bins", type=int, default=6, help="leaves: a bins x bins grid of two features")
    args = parser.parse_args(argv)

    X, y = make_problem(args.rows, args.classes)
    print(f"{args.rows} rows, {args.classes} classes, {args.bins ** 2} leaves")
    results = {}
    for name, exact in (("exact Hessian (hessian_sum + dppsv)", True), ("diagonal Hessian", False)):
        b, iterations = base_score(y, args.classes, exact=exact)
        z = np.broadcast_to(b, (args.rows, args.classes)).copy()
        start = float(sk.loss(z, y, reduction="mean"))
        leaves = leaves_of(X, args.bins)
        after = float(sk.loss(leaf_round(z, y, leaves, args.bins ** 2, exact), y, reduction="mean"))
        results[name] = (iterations, start, after)
        print(f"{name:38s} base score in {iterations:4d} Newton iterations (loss {start:.12f}); "
              f"after one round of leaves: {after:.12f}")
    return results


if __name__ == "__main__":
    main()
