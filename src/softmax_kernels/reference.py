"""The NumPy reference: same names, signatures and formulas as the compiled kernels.

It is the oracle of the tests and the fallback when the extension is missing
(or ``SOFTMAX_KERNELS_BACKEND=numpy``). It follows the per-row recipe of
``include/softmax_kernels/row_kernels_impl.h`` step by step, with whole-batch NumPy
operations in float64 (float32 inputs are rounded once at the end; float64 batches
with an extreme row compute in long double, see ``_work_dtype``):

1. m = max_k z_k, p = first arg-max; the row is invalid (all NaN) if m is NaN or +-inf.
2. e_k = exp(z_k - m) (so e_p = 1), T = sum_{k != p} e_k, S = 1 + T.
   log S is computed as log1p(T): accurate when T is tiny (confident rows).
3. Targets a_k, c_excl = sum_{k != p} a_k, c = c_excl + a_p,
   dot = sum_{a_k != 0} a_k (m - z_k)       (a zero weight on a -inf logit adds 0).
4. loss = dot + c log1p(T)                  (a sum of non-negative terms for a >= 0).
5. s_k = e_k / S;  1 - s_p = T / S;  1 - s_k = (S - e_k) / S  (k != p, S - e_k >= S/2).
6. g_k = c s_k - a_k (k != p);  g_p = c_excl / S - a_p T / S  (no cancellation in c s_p - a_p).
7. H_ij = -(c s_max(i,j)) s_min(i,j) (bitwise symmetric),  H_ii = (c s_i)(1 - s_i).
8. sigma = (v_p + sum_{j != p} e_j v_j) / S;  (Hv)_k = c (s_k (v_k - sigma)) (k != p),
   (Hv)_p = c s_p sum_{j != p} e_j (v_p - v_j) / S  (v_p - sigma without cancellation).
9. "mean" divides the row weights by the denominator D first, so no product of a tiny
   weight underflows before the division.

Sums over classes and rows accumulate in extended precision where the platform
has it (``np.longdouble`` wider than float64), otherwise NumPy's pairwise sum.
"""

from __future__ import annotations

import numpy as np

from . import _api
from ._api import pack, unpack
from ._layout import packed_rows_cols, packed_upper_positions
from ._operations import PUBLIC_NAMES
from ._reduction import mean_denominator_terms, reduced_loss
from ._validate import TARGET_LABELS, TARGET_NONE, TARGET_SOFT, Plan

__all__ = list(PUBLIC_NAMES) + ["pack", "unpack"]

_WIDE = np.longdouble if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps else np.float64


def _accurate_sum(x: np.ndarray, axis=-1) -> np.ndarray:
    return np.sum(x, axis=axis, dtype=_WIDE).astype(x.dtype)


def _ignored_rows(plan: Plan) -> np.ndarray:
    if plan.target_kind == TARGET_LABELS and plan.ignore_index is not None:
        return plan.labels == plan.ignore_index
    return np.zeros(plan.n_rows, dtype=bool)


def _work_dtype(plan: Plan, ignored: np.ndarray) -> type:
    """float64, or the wider long double for float64 data with an extreme row.

    A row whose finite logits span more than 600 has e_k = exp(z_k - m) near double's
    subnormal range, where products such as c s_k (v_k - sigma) would lose the digits
    the contract promises; the kernels compute such rows in long double, and so do we.
    (float32 data computes in float64, which has the range to spare.)
    """
    if plan.dtype != np.float64 or _WIDE is np.float64 or plan.z.size == 0:
        return np.float64
    # Invalid rows, masked classes and ignored rows (which are not read) do not count.
    finite = np.where(np.isfinite(plan.z) & ~ignored[:, None], plan.z, np.nan)
    span = np.fmax.reduce(finite, axis=1) - np.fmin.reduce(finite, axis=1)
    return np.longdouble if np.any(span > 600.0) else np.float64


class _Row:
    """Per-row statistics of the logits (steps 1-2), for a batch at once."""

    def __init__(self, z: np.ndarray, skip: np.ndarray, work: type = np.float64):
        z = np.where(skip[:, None], 0.0, z.astype(work))  # ignored rows are not read
        n_classes = z.shape[1]
        self.invalid = ~np.isfinite(z.max(axis=1)) & ~skip  # NaN, +inf, or all -inf
        z = np.where(self.invalid[:, None], 0.0, z)  # keeps the arithmetic quiet; rows become NaN
        self.z = z
        self.m = z.max(axis=1)
        self.p = np.argmax(z, axis=1)
        self.is_p = np.arange(n_classes) == self.p[:, None]
        self.e = np.exp(z - self.m[:, None])
        self.sum_excl_argmax = _accurate_sum(np.where(self.is_p, 0.0, self.e))
        self.S = 1.0 + self.sum_excl_argmax
        self.s = self.e / self.S[:, None]

    def at_p(self, x: np.ndarray) -> np.ndarray:
        return np.take_along_axis(x, self.p[:, None], axis=1)[:, 0]

    def excl_p_sum(self, x: np.ndarray) -> np.ndarray:
        return _accurate_sum(np.where(self.is_p, 0.0, x))

    def one_minus_s(self) -> np.ndarray:
        other = (self.S[:, None] - self.e) / self.S[:, None]
        return np.where(self.is_p, (self.sum_excl_argmax / self.S)[:, None], other)


def _row_weights(plan: Plan, work: type, denominator: float) -> np.ndarray:
    """w / D: "mean" folds its denominator into the row weights (step 9)."""
    w = np.ones(plan.n_rows, work) if plan.sample_weight is None else plan.sample_weight.astype(work)
    return w / denominator if plan.reduction == "mean" else w


def _target_weights(plan: Plan, work: type, w: np.ndarray, ignored: np.ndarray) -> np.ndarray:
    """The dense target vectors a (N, K) in the work dtype, for row weights w."""
    n_rows, n_classes = plan.n_rows, plan.n_classes
    eps = plan.label_smoothing
    cw = np.ones(n_classes, work) if plan.class_weight is None else plan.class_weight.astype(work)
    if plan.target_kind == TARGET_SOFT:
        t = plan.soft_targets.astype(work)
        if eps != 0.0:
            t = t * (1.0 - eps) + eps / n_classes
        if plan.class_weight is not None:
            t = t * cw
        return t * w[:, None]
    # Labels: a = w cw_y (1 - eps) onehot(y) + w (eps/K) cw.
    labels = plan.labels
    safe_labels = np.where(ignored, 0, labels)
    a = np.zeros((n_rows, n_classes), work)
    if eps != 0.0:
        a += (w * (eps / n_classes))[:, None] * cw
    alpha = w * cw[safe_labels] * (1.0 - eps)
    np.put_along_axis(a, safe_labels[:, None], (np.take_along_axis(a, safe_labels[:, None], 1)[:, 0] + alpha)[:, None], 1)
    a[ignored] = 0.0
    return a


def _mean_denominator(plan: Plan) -> float:
    labels = plan.labels if plan.target_kind == TARGET_LABELS else None
    terms = mean_denominator_terms(plan.n_rows, plan.sample_weight, plan.class_weight, labels, plan.ignore_index)
    return float(_accurate_sum(terms, axis=None))


def _packed_or_full_hessian(row: _Row, coef: np.ndarray, layout: str) -> np.ndarray:
    """H_ij = -(c s_max(i,j)) s_min(i,j) off the diagonal (bitwise symmetric), (c s_i)(1 - s_i) on it."""
    n_classes = row.s.shape[1]
    if layout == "full":
        cols, rows = np.divmod(np.arange(n_classes * n_classes), n_classes)  # row-major (i=cols, j=rows)
    else:
        rows, cols = packed_rows_cols(n_classes, layout)
    high, low = np.maximum(rows, cols), np.minimum(rows, cols)
    minus_cs = -(coef[:, None] * row.s)
    hess = minus_cs[:, high] * row.s[:, low]
    on_diag = rows == cols
    diag = coef[:, None] * row.s * row.one_minus_s()
    hess[:, on_diag] = diag[:, rows[on_diag]]
    return hess


def _hessian_vector_product(row: _Row, coef: np.ndarray, v: np.ndarray) -> np.ndarray:
    v = np.where(row.invalid[:, None], 0.0, v.astype(row.z.dtype))
    v_p = row.at_p(v)
    sigma = (v_p + row.excl_p_sum(row.e * v)) / row.S
    at_p = row.excl_p_sum(row.e * (v_p[:, None] - v)) / row.S
    centred = np.where(row.is_p, at_p[:, None], v - sigma[:, None])
    # A NaN or infinity in v makes the row NaN (inf - inf has no meaning here).
    non_finite = ~np.isfinite(v).all(axis=1)
    return np.where(non_finite[:, None], np.nan, coef[:, None] * (row.s * centred))


def _hessian_sum(plan: Plan, row: _Row, coef: np.ndarray, finish) -> np.ndarray:
    """The summed Hessian in the plan's layout. As the kernels: short rows, and every row with
    groups, add their per-row Hessians (here in _WIDE); longer rows take the diagonal from the
    rows' accurate terms and the rest from the product -(c S)^T S (in float64)."""
    n_classes = plan.n_classes
    if n_classes <= 16 or plan.groups is not None:
        per_row = finish(_packed_or_full_hessian(row, coef, "packed_upper"))
        groups = np.zeros(plan.n_rows, np.intp) if plan.groups is None else plan.groups
        sums = np.zeros((plan.group_count, per_row.shape[1]), _WIDE)
        np.add.at(sums, groups, per_row.astype(_WIDE))
    else:
        s, c = finish(row.s).astype(np.float64), finish(coef).astype(np.float64)
        full = -((s * c[:, None]).T @ s)
        full[np.diag_indices(n_classes)] = _accurate_sum(finish(coef[:, None] * row.s * row.one_minus_s()), axis=0)
        rows, cols = packed_rows_cols(n_classes, "packed_upper")
        sums = full[rows, cols][None, :]
    return sums[:, packed_upper_positions(n_classes, plan.layout)]


def _run(plan: Plan) -> None:
    """Compute every output the plan asks for and write it into the plan's output views."""
    out = plan.outputs
    with np.errstate(all="ignore"):
        if plan.target_kind == TARGET_NONE and plan.operation in ("softmax", "log_softmax"):
            row = _Row(plan.z, np.zeros(plan.n_rows, dtype=bool))
            if "softmax" in out:
                result = row.s
            else:
                result = (row.z - row.m[:, None]) - np.log1p(row.sum_excl_argmax)[:, None]
            _store(out[plan.operation], np.where(row.invalid[:, None], np.nan, result))
            return
        _run_target(plan)


def _run_target(plan: Plan) -> None:
    out = plan.outputs
    ignored = _ignored_rows(plan)
    work = _work_dtype(plan, ignored)
    denominator = _mean_denominator(plan) if plan.reduction == "mean" else 1.0
    with np.errstate(divide="ignore"):
        w = _row_weights(plan, work, denominator)
    if plan.target_kind == TARGET_NONE:
        a, coef = None, w
    else:
        a = _target_weights(plan, work, w, ignored)
    row = _Row(plan.z, ignored, work)
    if a is not None:
        a_p = row.at_p(a)
        c_excl = row.excl_p_sum(a)
        coef = c_excl + a_p

    def finish(values: np.ndarray) -> np.ndarray:
        """Zero the ignored rows and fill the invalid ones with NaN."""
        rows = (slice(None), None) if values.ndim == 2 else slice(None)
        return np.where(row.invalid[rows], np.nan, np.where(ignored[rows], 0.0, values))

    if "loss" in out:
        dot = _accurate_sum(np.where(a == 0.0, 0.0, a * (row.m[:, None] - row.z)))
        per_row = finish(dot + coef * np.log1p(row.sum_excl_argmax))
        if plan.reduction == "none":
            _store(out["loss"], per_row)
        else:  # "mean": the rows carry their 1/D
            _store(out["loss"], reduced_loss(_accurate_sum(per_row, axis=None), denominator, plan.reduction))
    if "gradient" in out:
        grad = coef[:, None] * row.s - a
        grad_p = c_excl / row.S - a_p * row.sum_excl_argmax / row.S
        _store(out["gradient"], finish(np.where(row.is_p, grad_p[:, None], grad)))
    if "hessian" in out:
        _store(out["hessian"], finish(_packed_or_full_hessian(row, coef, plan.layout)))
    if "hessian_diagonal" in out:
        _store(out["hessian_diagonal"], finish(coef[:, None] * row.s * row.one_minus_s()))
    if "hessian_vector_product" in out:
        _store(out["hessian_vector_product"], finish(_hessian_vector_product(row, coef, plan.v)))
    if "hessian_sum" in out:
        _store(out["hessian_sum"], _hessian_sum(plan, row, coef, finish))


def _store(dest: np.ndarray, values) -> None:
    dest[...] = np.asarray(values).astype(dest.dtype, copy=False).reshape(dest.shape)


globals().update(_api.build_public_api(_run, __name__))
