"""Finite differences: the gradient is the derivative of the loss, the Hessian that of the gradient.

Central differences in float64 with step h = 1e-5 (truncation ~h**2 |f'''| ~ 1e-10,
rounding ~u |f| / h ~ 1e-11), compared with rtol 1e-7 and an absolute tolerance
1e-8 times the size of the target weights. For reduction="none" each row's loss
is its own function, so one perturbation of a column gives the derivative of
every row at once; "sum" and "mean" reduce to a scalar, perturbed element by
element. "mean" divides by a denominator that does not depend on z, so the
per-row derivatives of a reduced loss are still per-row functions of z.
"""

from __future__ import annotations

import numpy as np
import pytest

import softmax_kernels as sk
from helpers import IGNORE_INDEX
from softmax_kernels._layout import LAYOUTS
from softmax_kernels._reduction import REDUCTIONS

STEP = 1e-5
RTOL = 1e-7

Z = np.array([[0.5, -1.0, 2.0, 0.25, -0.5],
              [3.0, 3.0, -2.0, 0.0, 1.0],     # a tie at the max
              [-4.0, 1.5, 0.0, 6.0, -1.25],
              [1.0, 0.75, -3.0, 2.5, 2.25]])
V = np.array([[1.0, -2.0, 0.5, 0.0, 3.0],
              [0.25, 1.0, -1.0, 2.0, -0.5],
              [-1.5, 0.5, 2.5, 1.0, 0.0],
              [2.0, 2.0, -2.0, 1.0, 0.5]])
TARGETS = {
    "labels": np.array([2, 0, 3, 1]),
    "labels_with_ignored_row": np.array([2, IGNORE_INDEX, 3, 1]),
    "soft_probabilities": np.array([[0.2, 0.2, 0.2, 0.2, 0.2], [1.0, 0.0, 0.0, 0.0, 0.0],
                                    [0.0, 0.5, 0.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4, 0.0]]),
    "soft_signed": np.array([[1.0, -0.5, 0.0, 2.0, -1.0], [0.5, 0.5, -1.0, 0.0, 0.25],
                             [-0.2, 0.4, 0.6, 0.0, 0.2], [2.0, 0.0, 0.0, -1.0, 0.5]]),
}
WEIGHTS = {
    "no_options": {},
    "positive_weights_and_smoothing": {"sample_weight": np.array([0.5, 2.0, 1.0, 1.5]),
                                       "class_weight": np.array([1.0, 2.0, 0.5, 0.25, 3.0]),
                                       "label_smoothing": 0.2},
    "signed_weights_and_smoothing": {"sample_weight": np.array([1.0, -0.5, 2.0, 0.75]),
                                     "class_weight": np.array([1.0, -1.0, 0.0, 2.0, 0.5]),
                                     "label_smoothing": 0.1},
}


def options_for(targets, weights, reduction):
    options = dict(WEIGHTS[weights], reduction=reduction)
    if targets == "labels_with_ignored_row":
        options["ignore_index"] = IGNORE_INDEX
    return options


def tolerance_scale(options):
    """Absolute tolerance unit: the size of the derivatives scales with the weights (and 1/D for "mean")."""
    scale = 1.0
    for key in ("sample_weight", "class_weight"):
        if key in options:
            scale *= np.abs(options[key]).max()
    return scale * 1e-8


def central_difference(function, z, direction):
    return (function(z + STEP * direction) - function(z - STEP * direction)) / (2 * STEP)


def unit(k, shape=Z.shape):
    """The direction that moves column k of every row."""
    d = np.zeros(shape)
    d[..., k] = 1.0
    return d


def all_cases():
    for targets in TARGETS:
        for weights in WEIGHTS:
            for reduction in REDUCTIONS:
                yield pytest.param(targets, weights, reduction, id=f"{targets}-{weights}-{reduction}")


CASES = list(all_cases())


@pytest.mark.parametrize("targets,weights,reduction", CASES)
def test_gradient_is_the_derivative_of_the_loss(backend, targets, weights, reduction):
    y, options = TARGETS[targets], options_for(targets, weights, reduction)
    gradient = backend.gradient(Z, y, **options)
    fused_loss, fused_gradient = backend.loss_gradient(Z, y, **options)
    np.testing.assert_array_equal(fused_gradient, gradient)

    def loss(z):
        return backend.loss(z, y, **options)

    numeric = np.empty_like(Z)
    if reduction == "none":  # row i's loss depends on row i only: one column move serves all rows
        for k in range(Z.shape[1]):
            numeric[:, k] = central_difference(loss, Z, unit(k))
    else:
        for i in range(Z.shape[0]):
            for k in range(Z.shape[1]):
                direction = np.zeros_like(Z)
                direction[i, k] = 1.0
                numeric[i, k] = central_difference(loss, Z, direction)
    np.testing.assert_allclose(gradient, numeric, rtol=RTOL, atol=tolerance_scale(options))


@pytest.mark.parametrize("targets,weights,reduction", CASES)
def test_hessian_is_the_derivative_of_the_gradient_in_every_layout(backend, targets, weights, reduction):
    y, options = TARGETS[targets], options_for(targets, weights, reduction)

    def gradient(z):
        return backend.gradient(z, y, **options)

    numeric = np.stack([central_difference(gradient, Z, unit(k)) for k in range(Z.shape[1])], axis=-1)
    for layout in LAYOUTS:
        hessian = backend.hessian(Z, y, layout=layout, **options)
        fused = backend.loss_gradient_hessian(Z, y, layout=layout, **options)[2]
        np.testing.assert_array_equal(fused, hessian)
        full = hessian if layout == "full" else sk.unpack(hessian, layout)
        np.testing.assert_allclose(full, numeric, rtol=RTOL, atol=tolerance_scale(options), err_msg=layout)


@pytest.mark.parametrize("targets,weights,reduction", CASES)
def test_hessian_vector_product_is_the_directional_derivative_of_the_gradient(backend, targets, weights,
                                                                             reduction):
    y, options = TARGETS[targets], options_for(targets, weights, reduction)

    def gradient(z):
        return backend.gradient(z, y, **options)

    numeric = central_difference(gradient, Z, V)
    product = backend.hessian_vector_product(Z, V, y, **options)
    np.testing.assert_allclose(product, numeric, rtol=RTOL, atol=tolerance_scale(options) * np.abs(V).max())
    # ... and it is the Hessian applied to v
    full = sk.unpack(backend.hessian(Z, y, **options))
    np.testing.assert_allclose(product, np.einsum("nij,nj->ni", full, V), rtol=1e-12,
                               atol=1e-15 * np.abs(full).max() * np.abs(V).max())


@pytest.mark.parametrize("targets,weights,reduction", CASES)
def test_hessian_diagonal_is_the_derivative_of_each_gradient_component(backend, targets, weights, reduction):
    y, options = TARGETS[targets], options_for(targets, weights, reduction)
    numeric = np.empty_like(Z)
    for k in range(Z.shape[1]):
        numeric[:, k] = central_difference(lambda z: backend.gradient(z, y, **options)[:, k], Z, unit(k))
    diagonal = backend.hessian_diagonal(Z, y, **options)
    np.testing.assert_allclose(diagonal, numeric, rtol=RTOL, atol=tolerance_scale(options))
    full = sk.unpack(backend.hessian(Z, y, **options))
    np.testing.assert_array_equal(diagonal, np.diagonal(full, axis1=-2, axis2=-1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("sample_weight", [None, np.array([0.5, 2.0, -1.0, 1.5])], ids=["unweighted", "weighted"])
def test_hessian_without_targets_is_the_derivative_of_weighted_softmax(backend, reduction, sample_weight):
    """y=None: H = w (diag(s) - s s^T) = d(w s)/dz, the Hessian of w logsumexp(z); "mean" divides by sum w or N."""
    weights = np.ones(len(Z)) if sample_weight is None else sample_weight
    denominator = weights.sum() if reduction == "mean" else 1.0
    options = {"reduction": reduction}
    if sample_weight is not None:
        options["sample_weight"] = sample_weight

    def weighted_softmax(z):
        return backend.softmax(z) * (weights / denominator)[:, None]

    numeric = np.stack([central_difference(weighted_softmax, Z, unit(k)) for k in range(Z.shape[1])], axis=-1)
    for layout in LAYOUTS:
        hessian = backend.hessian(Z, layout=layout, **options)
        full = hessian if layout == "full" else sk.unpack(hessian, layout)
        np.testing.assert_allclose(full, numeric, rtol=RTOL, atol=1e-8 * np.abs(weights).max(), err_msg=layout)
    np.testing.assert_allclose(backend.hessian_vector_product(Z, V, **options), central_difference(
        weighted_softmax, Z, V), rtol=RTOL, atol=1e-8 * np.abs(weights).max() * np.abs(V).max())
    np.testing.assert_allclose(backend.hessian_diagonal(Z, **options), np.diagonal(numeric, axis1=-2, axis2=-1),
                               rtol=RTOL, atol=1e-8 * np.abs(weights).max())


@pytest.mark.parametrize("targets", ["labels", "soft_probabilities"])
def test_gradient_of_a_loss_over_a_batch_shape_is_per_row(backend, targets):
    """Batch axes (2, 2) behave like 4 rows: derivatives are taken per (i, j) row."""
    y = TARGETS[targets]
    z4 = Z.reshape(2, 2, 5)
    y4 = y.reshape(2, 2) if y.ndim == 1 else y.reshape(2, 2, 5)
    numeric = np.stack([central_difference(lambda z: backend.loss(z, y4, reduction="sum"), z4, np.eye(1, 20, i)
                                           .reshape(2, 2, 5)) for i in range(20)]).reshape(2, 2, 5)
    np.testing.assert_allclose(backend.gradient(z4, y4, reduction="sum"), numeric, rtol=RTOL, atol=1e-8)
