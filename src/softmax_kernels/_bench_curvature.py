"""Benchmark implementations of the curvature cases: ``hessian_sum`` and the linear model
(``softmax_kernels.linear``), for ``benchmarks.implementations``.

Besides softmax_kernels and its peers, each case has a "GEMM floor": one square matrix
product doing as many multiply-adds as the case's symmetric work (K(K+1)/2 per row for the
summed Hessian; K(K+1)/2 (d+1)(d+2)/2 per row for the parameter Hessian), so that its time
over softmax_kernels' is the fraction of NumPy's GEMM rate reached.
"""

from __future__ import annotations

import numpy as np

import softmax_kernels as sk

LINEAR_OPERATIONS = ("linear.loss_gradient_hessian", "linear.hessian_vector_product")


def symmetric_work(case) -> float:
    """The multiply-adds of the case's symmetric assembly."""
    pairs = case.n_classes * (case.n_classes + 1) / 2
    if case.operation in LINEAR_OPERATIONS:
        dof = case.n_features + 1
        return pairs * dof * (dof + 1) / 2 * case.n_rows
    return pairs * case.n_rows


def gemm_floor(case) -> callable:
    """A square product of about symmetric_work(case) multiply-adds, in the case's dtype."""
    side = max(16, round(symmetric_work(case) ** (1 / 3)))
    rng = np.random.default_rng(0)
    a, b = (rng.random((side, side)).astype(case.dtype) for _ in range(2))
    out = np.empty((side, side), dtype=case.dtype)
    return lambda: np.matmul(a, b, out=out)


def summed_hessian_implementations(case, inputs: dict) -> dict:
    z = inputs["z"]
    out = np.empty(case.n_classes * (case.n_classes + 1) // 2, dtype=z.dtype)
    loss, gradient = np.empty(case.n_rows, z.dtype), np.empty_like(z)

    def numpy_formula():
        """The usual NumPy: softmax, then diag(sum s) - S^T S (cancels on confident rows)."""
        s = np.exp(z - z.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
        total = -(s.T @ s)
        total[np.diag_indices(case.n_classes)] += s.sum(axis=0)
        return total

    return {
        "softmax_kernels": lambda: sk.hessian_sum(z, out=out, num_threads=1),
        "reference": lambda: sk.reference.hessian_sum(z),
        "softmax_kernels loss_gradient": lambda: sk.loss_gradient(z, inputs["y"], loss_out=loss, grad_out=gradient,
                                                                  num_threads=1),
        "numpy S^T S": numpy_formula,
        "GEMM floor": gemm_floor(case),
    }


def linear_inputs(case, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((case.n_rows, case.n_features)).astype(case.dtype)
    return {
        "X": X,
        "y": rng.integers(0, case.n_classes, case.n_rows),
        "sample_weight": rng.random(case.n_rows) + 0.5,
        "coef": (0.1 * rng.standard_normal((case.n_classes, case.n_features + 1))).astype(case.dtype),
        "V": rng.standard_normal((case.n_classes, case.n_features + 1)).astype(case.dtype),
    }


def linear_implementations(case) -> dict:
    import softmax_kernels.linear as linear

    inputs = linear_inputs(case)
    X, y, sample_weight, coef, V = (inputs[k] for k in ("X", "y", "sample_weight", "coef", "V"))
    if case.operation == "linear.loss_gradient_hessian":
        found = {"softmax_kernels": lambda: linear.loss_gradient_hessian(coef, X, y, sample_weight=sample_weight,
                                                                         l2=0.1, num_threads=1),
                 "GEMM floor": gemm_floor(case)}
    else:
        found = {"softmax_kernels": lambda: linear.hessian_vector_product(coef, X, V, y, sample_weight=sample_weight,
                                                                          l2=0.1, num_threads=1)}
    copy = np.empty_like(X)
    found["memory floor"] = lambda: np.copyto(copy, X)  # X read once
    found.update(_sklearn_linear(case, inputs))
    return found


def _sklearn_linear(case, inputs: dict) -> dict:
    try:
        from sklearn._loss.loss import HalfMultinomialLoss
        from sklearn.linear_model._linear_loss import LinearModelLoss
    except ImportError:
        return {}
    model = LinearModelLoss(HalfMultinomialLoss(n_classes=case.n_classes), fit_intercept=True)
    X, coef, sample_weight = inputs["X"], inputs["coef"], inputs["sample_weight"]
    y = inputs["y"].astype(X.dtype)
    if case.operation == "linear.loss_gradient_hessian":
        return {"scikit-learn gradient_hessian": lambda: model.gradient_hessian(
            coef, X, y, sample_weight, l2_reg_strength=0.1, n_threads=1)}
    _, hessp = model.gradient_hessian_product(coef, X, y, sample_weight, l2_reg_strength=0.1, n_threads=1)
    direction = inputs["V"].ravel(order="F")
    return {"scikit-learn hessp": lambda: hessp(direction)}
