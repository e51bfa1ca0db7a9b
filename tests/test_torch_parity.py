"""Parity with ``torch.nn.functional.cross_entropy`` for every option combination.

The spec defines class_weight / label_smoothing / ignore_index / reduction as
exactly torch's semantics (sample_weight w scales each row's loss; "mean" then
divides by sum of w cw_y over the kept rows, or sum of w for soft targets). So
for every case we build the same objective in torch and compare:

* ``loss`` (every reduction) with torch's loss;
* ``gradient`` with autograd of the reduced loss (for "none": of the sum of the
  per-row losses, whose derivative per row is that row's own gradient);
* ``hessian`` (full and both packed layouts), ``hessian_vector_product`` and
  ``hessian_diagonal`` with double-backward of the reduced loss. The loss is a
  sum of per-row terms, so its Hessian is block diagonal: one backward pass of
  ``sum_r g[r, k]`` yields column k of every row's block at once.

Where our documented semantics deliberately differ from torch (a -inf logit
with zero target weight contributes 0 instead of 0 * inf = NaN; ignored rows
do not depend on their logits, so a NaN there does not leak into the gradient),
the tests assert our documented behaviour.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from helpers import (FLOATS, IGNORE_INDEX, TARGET_OPERATIONS, Output, assert_allclose_typed,  # noqa: E402
                     dtype_id, every_output)
from softmax_kernels._layout import LAYOUTS, packed_lower_index, packed_size, packed_upper_index  # noqa: E402
from softmax_kernels._operations import output_shape  # noqa: E402
from softmax_kernels._reduction import REDUCTIONS  # noqa: E402

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
# Well-conditioned logits of moderate size: both sides are accurate to a few
# ulps of these tolerances' dtype, so the bounds leave ample room.
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}

# Batch layouts: ("NK", batch (7,), K=5) and torch's (N, K, d1) layout,
# (3, 4, 2), which is ours (3, 2, 4) with the class axis moved last.
BATCH_LAYOUTS = {"NK": ((7,), 5), "NKd": ((3, 2), 4)}


@dataclass(frozen=True)
class Case:
    target: str  # "labels", "soft" (probabilities), "soft-raw" (any reals) or "none" (y=None: Hessians only)
    class_weight: bool
    label_smoothing: float
    ignore_index: int | None
    sample_weight: bool
    reduction: str

    def __str__(self):
        parts = [self.target, self.reduction]
        if self.class_weight:
            parts.append("cw")
        if self.label_smoothing:
            parts.append(f"eps{self.label_smoothing}")
        if self.ignore_index is not None:
            parts.append(f"ignore{self.ignore_index}")
        if self.sample_weight:
            parts.append("sw")
        return "-".join(parts)


def _cases():
    cases = []
    # The full grid of torch's own options.
    for cw, eps, reduction in itertools.product((False, True), (0.0, 0.2), REDUCTIONS):
        for ignore_index in (None, IGNORE_INDEX, 2):  # torch's default value, and an in-range class
            cases.append(Case("labels", cw, eps, ignore_index, False, reduction))
        cases.append(Case("soft", cw, eps, None, False, reduction))
    # sample_weight (not a torch option: torch's per-row loss times w, reduced by hand).
    for reduction in REDUCTIONS:
        cases.append(Case("labels", False, 0.0, None, True, reduction))
        cases.append(Case("labels", True, 0.1, 2, True, reduction))
        cases.append(Case("soft", True, 0.1, None, True, reduction))
        cases.append(Case("none", False, 0.0, None, False, reduction))
        cases.append(Case("none", False, 0.0, None, True, reduction))
        # full smoothing, and soft targets that are any reals (rows need not sum to 1, c may be < 0)
        cases.append(Case("labels", True, 1.0, 2, False, reduction))
        cases.append(Case("soft-raw", False, 0.0, None, False, reduction))
        cases.append(Case("soft-raw", True, 0.3, None, True, reduction))
    return cases


CASES = _cases()


@dataclass
class Problem:
    """One random problem in our layout (numpy) plus what torch needs."""

    case: Case
    dtype: type
    z: np.ndarray  # batch + (K,)
    y: np.ndarray | None  # labels (batch) or soft targets (batch + (K,)) or None
    v: np.ndarray
    class_weight: np.ndarray | None
    sample_weight: np.ndarray | None

    @property
    def options(self) -> dict:
        return dict(
            sample_weight=self.sample_weight,
            class_weight=self.class_weight,
            label_smoothing=self.case.label_smoothing,
            ignore_index=self.case.ignore_index,
            reduction=self.case.reduction,
        )


def make_problem(case: Case, dtype, layout: str, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    batch, n_classes = BATCH_LAYOUTS[layout]
    z = rng.normal(scale=2.0, size=batch + (n_classes,)).astype(dtype)
    v = rng.normal(size=z.shape).astype(dtype)
    y = None
    if case.target == "labels":
        y = rng.integers(0, n_classes, size=batch)
        flat = y.reshape(-1)
        flat[0] = 0  # a kept row for sure
        if case.ignore_index is not None:
            flat[1] = case.ignore_index  # an ignored row for sure
            flat[-1] = case.ignore_index
    elif case.target == "soft":
        y = rng.dirichlet(np.ones(n_classes), size=batch).astype(dtype)
    elif case.target == "soft-raw":
        y = rng.normal(scale=1.5, size=batch + (n_classes,)).astype(dtype)
    class_weight = rng.uniform(0.3, 2.0, size=n_classes).astype(dtype) if case.class_weight else None
    sample_weight = rng.uniform(0.2, 3.0, size=batch).astype(dtype) if case.sample_weight else None
    return Problem(case, dtype, z, y, v, class_weight, sample_weight)


# --- the torch side ---------------------------------------------------------------


def _t(x, dtype=None):
    """A torch tensor of a numpy array (None stays None), optionally converted."""
    if x is None:
        return None
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    return tensor if dtype is None else tensor.to(dtype)


def torch_loss(problem: Problem, z_t, reduction: str):
    """torch's loss for our-layout logits ``z_t`` (batch + (K,)): per-row for "none", else 0-d."""
    case, tdtype = problem.case, TORCH_DTYPE[problem.dtype]
    to_torch_layout = (lambda x: x) if z_t.ndim == 2 else (lambda x: x.movedim(-1, 1))
    sample_weight = _t(problem.sample_weight, tdtype)
    if case.target == "none":
        per_row = torch.logsumexp(z_t, dim=-1)
        denominator = per_row.new_tensor(per_row.numel()) if sample_weight is None else sample_weight.sum()
    else:
        if case.target == "labels":
            target = _t(problem.y, torch.int64)
        else:
            target = to_torch_layout(_t(problem.y, tdtype))
        kwargs = dict(weight=_t(problem.class_weight, tdtype), label_smoothing=case.label_smoothing)
        if case.ignore_index is not None:
            kwargs["ignore_index"] = case.ignore_index
        if sample_weight is None and reduction != "none":
            return F.cross_entropy(to_torch_layout(z_t), target, reduction=reduction, **kwargs)
        per_row = F.cross_entropy(to_torch_layout(z_t), target, reduction="none", **kwargs)
        w = torch.ones_like(per_row) if sample_weight is None else sample_weight
        if case.target == "labels":
            kept = target != kwargs.get("ignore_index", IGNORE_INDEX)
            cw = torch.ones(z_t.shape[-1], dtype=tdtype) if problem.class_weight is None else kwargs["weight"]
            denominator = (w * cw[torch.where(kept, target, 0)] * kept).sum()
        else:
            denominator = w.sum()
    if sample_weight is not None:
        per_row = per_row * sample_weight
    if reduction == "none":
        return per_row
    total = per_row.sum()
    return total / denominator if reduction == "mean" else total


def torch_derivatives(problem: Problem) -> dict:
    """Loss, gradient, per-row Hessian blocks, HVP and diagonal of torch's reduced objective."""
    reduction = problem.case.reduction
    z_t = _t(problem.z).clone().requires_grad_(True)
    loss = torch_loss(problem, z_t, reduction)
    objective = loss.sum()  # "none": the per-row losses are independent, so this is their joint objective
    (grad,) = torch.autograd.grad(objective, z_t, create_graph=True)
    n_classes = z_t.shape[-1]
    rows = grad.reshape(-1, n_classes)
    hessian = torch.zeros(rows.shape[0], n_classes, n_classes, dtype=z_t.dtype)
    for k in range(n_classes):
        (column,) = torch.autograd.grad(rows[:, k].sum(), z_t, retain_graph=True, allow_unused=True)
        if column is not None:
            hessian[:, k, :] = column.reshape(-1, n_classes)
    (hvp,) = torch.autograd.grad((grad * _t(problem.v)).sum(), z_t, retain_graph=True, allow_unused=True)
    batch = problem.z.shape[:-1]
    full = hessian.detach().numpy().reshape(batch + (n_classes, n_classes))
    return {
        "loss": loss.detach().numpy(),
        "gradient": grad.detach().numpy(),
        "hessian_full": full,
        "hessian_vector_product": np.zeros_like(problem.z) if hvp is None else hvp.detach().numpy(),
        "hessian_diagonal": np.diagonal(full, axis1=-2, axis2=-1),
    }


def pack_by_spec(full: np.ndarray, layout: str) -> np.ndarray:
    """Pack (..., K, K) element by element with the LAPACK index formulas (independent of sk.pack)."""
    n_classes = full.shape[-1]
    packed = np.empty(full.shape[:-2] + (packed_size(n_classes),), dtype=full.dtype)
    for i in range(n_classes):
        for j in range(n_classes):
            if layout == "packed_upper" and i <= j:
                packed[..., packed_upper_index(i, j)] = full[..., i, j]
            elif layout == "packed_lower" and i >= j:
                packed[..., packed_lower_index(i, j, n_classes)] = full[..., i, j]
    return packed


# --- the comparison ---------------------------------------------------------------


def assert_close(ours, expected, dtype, what):
    assert_allclose_typed(ours, expected, dtype, what=what, **TOLERANCE[dtype])


@pytest.mark.parametrize("layout", BATCH_LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_output_matches_torch_autograd(backend, case, dtype, layout):
    problem = make_problem(case, dtype, layout)
    expected = torch_derivatives(problem)
    z, y, v, options = problem.z, problem.y, problem.v, problem.options

    if case.target != "none":
        assert_close(backend.loss(z, y, **options), expected["loss"], dtype, "loss")
        assert_close(backend.gradient(z, y, **options), expected["gradient"], dtype, "gradient")
        loss, grad = backend.loss_gradient(z, y, **options)
        assert_close(loss, expected["loss"], dtype, "loss_gradient[0]")
        assert_close(grad, expected["gradient"], dtype, "loss_gradient[1]")
        for layout_name in LAYOUTS:
            hess_expected = expected["hessian_full"] if layout_name == "full" else pack_by_spec(
                expected["hessian_full"], layout_name
            )
            loss, grad, hess = backend.loss_gradient_hessian(z, y, layout=layout_name, **options)
            assert_close(loss, expected["loss"], dtype, f"loss_gradient_hessian[0] {layout_name}")
            assert_close(grad, expected["gradient"], dtype, f"loss_gradient_hessian[1] {layout_name}")
            assert_close(hess, hess_expected, dtype, f"loss_gradient_hessian[2] {layout_name}")
    else:  # y=None: c = 1, the derivatives of (weighted, reduced) log-sum-exp
        options = {key: options[key] for key in ("sample_weight", "reduction")}

    for layout_name in LAYOUTS:
        hess_expected = expected["hessian_full"] if layout_name == "full" else pack_by_spec(
            expected["hessian_full"], layout_name
        )
        hess = backend.hessian(z, y, layout=layout_name, **options)
        assert_close(hess, hess_expected, dtype, f"hessian {layout_name}")
    assert_close(
        backend.hessian_vector_product(z, v, y, **options),
        expected["hessian_vector_product"],
        dtype,
        "hessian_vector_product",
    )
    assert_close(backend.hessian_diagonal(z, y, **options), expected["hessian_diagonal"], dtype, "hessian_diagonal")


# --- torch's corner cases -------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("class_weight", [False, True], ids=["unweighted", "cw"])
@pytest.mark.parametrize("ignore_index", [IGNORE_INDEX, 1])
def test_mean_over_all_ignored_rows_is_nan_with_zero_derivatives(backend, dtype, class_weight, ignore_index):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 3)).astype(dtype)
    y = np.full(4, ignore_index)
    cw = np.array([0.5, 2.0, 1.5], dtype=dtype) if class_weight else None
    options = dict(class_weight=cw, ignore_index=ignore_index, label_smoothing=0.1, reduction="mean")
    expected_loss = F.cross_entropy(
        _t(z), _t(y, torch.int64), weight=_t(cw), ignore_index=ignore_index, label_smoothing=0.1, reduction="mean"
    )
    assert torch.isnan(expected_loss)
    outputs = every_output(backend, z, y, rng.normal(size=z.shape), operations=TARGET_OPERATIONS, **options)
    for key, value in outputs.items():
        assert value.dtype == dtype, key
        if key.kind == "loss":
            assert value.shape == () and np.isnan(value), key
        else:
            assert np.all(value == 0), f"{key}: {value}"


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target", ["labels", "soft"])
@pytest.mark.parametrize("batch", [(0,), (0, 2)], ids=["N0", "N0d2"])
def test_empty_batch_matches_torch(backend, reduction, target, batch):
    n_classes = 3
    z = np.zeros(batch + (n_classes,))
    y = np.zeros(batch, dtype=np.int64) if target == "labels" else np.zeros(batch + (n_classes,))
    z_torch = _t(z) if len(batch) == 1 else _t(z).movedim(-1, 1)
    y_torch = _t(y) if target == "labels" or len(batch) == 1 else _t(y).movedim(-1, 1)
    expected = F.cross_entropy(z_torch, y_torch, reduction=reduction).numpy()
    loss = backend.loss(z, y, reduction=reduction)
    assert loss.shape == expected.shape == (batch if reduction == "none" else ())
    np.testing.assert_array_equal(loss, expected)  # empty / 0.0 / NaN, equal_nan
    outputs = every_output(backend, z, y, np.zeros_like(z), operations=TARGET_OPERATIONS, reduction=reduction)
    for key, value in outputs.items():
        if key.kind == "loss":
            np.testing.assert_array_equal(value, expected, err_msg=str(key))
        else:
            assert value.shape == output_shape(key.kind, batch, n_classes, reduction, key.layout), key


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "+inf", "-inf"])
def test_nan_in_an_ignored_row_changes_nothing(backend, reduction, dtype, bad):
    """Unlike torch (whose log_softmax backward spreads the NaN), ignored rows ignore their logits."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5, 4)).astype(dtype)
    y = np.array([0, 3, IGNORE_INDEX, 1, 2])
    v = rng.normal(size=z.shape).astype(dtype)
    options = dict(ignore_index=IGNORE_INDEX, reduction=reduction, class_weight=np.array([1.0, 0.5, 2.0, 1.5]))
    clean = every_output(backend, z, y, v, operations=TARGET_OPERATIONS, **options)
    dirty_z = z.copy()
    dirty_z[2, 1] = bad
    dirty = every_output(backend, dirty_z, y, v, operations=TARGET_OPERATIONS, **options)
    for key in clean:
        np.testing.assert_array_equal(dirty[key], clean[key], err_msg=str(key))
    # And the loss itself is torch's loss on the same problem.
    expected = F.cross_entropy(
        _t(dirty_z), _t(y), weight=_t(options["class_weight"], TORCH_DTYPE[dtype]), ignore_index=IGNORE_INDEX,
        reduction=reduction,
    ).numpy()
    np.testing.assert_allclose(dirty[Output("loss", "loss")], expected, **TOLERANCE[dtype])


def _masked_cases():
    """(name, z row, y, options): a -inf logit whose target weight is exactly zero."""
    z = [[1.0, -np.inf, 0.5, -2.0], [0.3, -np.inf, -np.inf, 2.0]]
    soft = [[0.2, 0.0, 0.5, 0.3], [0.6, 0.0, 0.0, 0.4]]
    return [
        ("soft-zero-prob", z, soft, {}),
        ("soft-zero-prob-cw", z, soft, dict(class_weight=[1.0, 2.0, 0.5, 1.0])),
        # label smoothing would put eps/K on the masked classes; class_weight 0 there cancels it
        ("labels-eps-cw0", z, [2, 3], dict(label_smoothing=0.3, class_weight=[1.0, 0.0, 0.0, 2.0])),
        ("soft-eps-cw0", z, soft, dict(label_smoothing=0.3, class_weight=[1.0, 0.0, 0.0, 2.0])),
    ]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
@pytest.mark.parametrize("name, z, y, options", _masked_cases(), ids=[c[0] for c in _masked_cases()])
def test_masked_class_with_zero_target_weight_contributes_zero_not_nan(backend, reduction, dtype, name, z, y, options):
    """Documented difference from torch (which computes 0 * -inf = NaN): the masked class is
    simply absent, so every output equals torch's on the logits with -inf replaced by a
    finite value so negative that exp underflows to exactly 0."""
    z = np.array(z, dtype=dtype)
    y = np.array(y, dtype=dtype if np.ndim(y) == 2 else np.int64)
    options = {key: np.array(val, dtype=dtype) if isinstance(val, list) else val for key, val in options.items()}
    case = Case(
        "soft" if y.ndim == 2 else "labels",
        "class_weight" in options,
        options.get("label_smoothing", 0.0),
        None,
        False,
        reduction,
    )
    finite_z = np.where(np.isinf(z), np.asarray(-1e4, dtype=dtype), z)
    problem = Problem(case, dtype, finite_z, y, np.ones_like(z), options.get("class_weight"), None)
    expected = torch_derivatives(problem)
    masked = np.isinf(z)
    assert np.all(expected["gradient"][masked] == 0)  # the finite stand-in really is exact
    loss = backend.loss(z, y, reduction=reduction, **options)
    assert np.all(np.isfinite(loss)), loss
    assert_close(loss, expected["loss"], dtype, "loss")
    grad = backend.gradient(z, y, reduction=reduction, **options)
    assert_close(grad, expected["gradient"], dtype, "gradient")
    assert np.all(grad[masked] == 0)
    hess = backend.hessian(z, y, reduction=reduction, layout="full", **options)
    assert_close(hess, expected["hessian_full"], dtype, "hessian")
    assert_close(
        backend.hessian_vector_product(z, np.ones_like(z), y, reduction=reduction, **options),
        expected["hessian_vector_product"],
        dtype,
        "hessian_vector_product",
    )
    diagonal = backend.hessian_diagonal(z, y, reduction=reduction, **options)
    assert_close(diagonal, expected["hessian_diagonal"], dtype, "hessian_diagonal")


@pytest.mark.parametrize("dtype", FLOATS, ids=dtype_id)
def test_label_on_a_masked_class_gives_infinite_loss_like_torch(backend, dtype):
    z = np.array([[1.0, -np.inf, 0.5], [0.0, 1.0, 2.0]], dtype=dtype)
    y = np.array([1, 0])
    expected = F.cross_entropy(_t(z), _t(y), reduction="none").numpy()
    loss = backend.loss(z, y)
    assert loss[0] == np.inf and expected[0] == np.inf
    np.testing.assert_allclose(loss[1], expected[1], **TOLERANCE[dtype])
