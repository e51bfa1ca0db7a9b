#!/usr/bin/env python
"""How fast could any Hessian-vector product of the linear softmax model be, next to
scikit-learn's prepared ``hessp``? Both do two products with X per call (X V^T and R^T X);
this times those two products alone beside ``hessp`` and ``linear.hessian_vector_product``.

    python bench/linear_hvp_bound.py [--repeats 7]

One thread (threadpoolctl), float64, fit_intercept=True, sample weights, l2 = 1; medians.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn._loss.loss import HalfMultinomialLoss
from sklearn.linear_model._linear_loss import LinearModelLoss
from threadpoolctl import threadpool_limits

import softmax_kernels.linear as linear
from softmax_kernels.benchmarks import median_time

SHAPES = [(100_000, 50, 10), (50_000, 30, 50), (20_000, 200, 10)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| N x d, K | scikit-learn hessp ms | ours ms | two products alone ms | hessp / two products |")
    print("|---|---|---|---|---|")
    for n_rows, n_features, n_classes in SHAPES:
        X = rng.standard_normal((n_rows, n_features))
        y = rng.integers(0, n_classes, n_rows)
        w = rng.random(n_rows) + 0.5
        coef = 0.1 * rng.standard_normal((n_classes, n_features + 1))
        V = rng.standard_normal(coef.shape)
        R = rng.standard_normal((n_rows, n_classes))
        with threadpool_limits(1):
            model = LinearModelLoss(HalfMultinomialLoss(n_classes=n_classes), fit_intercept=True)
            _, hessp = model.gradient_hessian_product(coef, X, y.astype(float), w, l2_reg_strength=1.0)
            theirs = median_time(lambda: hessp(V), repeats=args.repeats, min_time=0)
            ours = median_time(lambda: linear.hessian_vector_product(coef, X, V, y, sample_weight=w, l2=1.0, num_threads=1),
                               repeats=args.repeats, min_time=0)
            products = median_time(lambda: (X @ V[:, :-1].T, R.T @ X), repeats=args.repeats, min_time=0)
        print(f"| {n_rows} x {n_features}, {n_classes} | {theirs * 1e3:.1f} | {ours * 1e3:.1f} "
              f"| {products * 1e3:.1f} | {theirs / products:.2f} |")


if __name__ == "__main__":
    main()
